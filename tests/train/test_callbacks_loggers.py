"""CSVLogger writes the Recorder's rows; TensorBoardCallback writes events, or explains how to install."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner, accuracy
from lamina.train.callbacks.loggers import CSVLogger, TensorBoardCallback


def _learner(cbs: list[Callback], path: Path) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = (x[:, 0] > 0).long()
    items = [(x[i], y[i]) for i in range(32)]
    dls = DataLoaders.from_dsets(items[:24], items[24:], bs=8, num_workers=0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, cbs=cbs, path=path)


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_writes_a_header_and_one_row_per_epoch(tmp_path: Path) -> None:
    logger = CSVLogger(fname="logs/history.csv")
    learn = _learner([logger], tmp_path)
    learn.fit(2)
    rows = _rows(tmp_path / "logs" / "history.csv")
    assert rows[0] == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    for row, values in zip(rows[1:], learn.recorder.values, strict=True):
        assert [float(v) for v in row[1:4]] == pytest.approx(values, rel=1e-5)
    df = logger.read_log()
    assert list(df.columns) == rows[0] and len(df) == 2


def test_csv_logger_appends_or_starts_again(tmp_path: Path) -> None:
    learn = _learner([CSVLogger(append=True)], tmp_path)
    learn.fit(2)
    learn.fit(1)
    rows = _rows(tmp_path / "history.csv")
    assert len(rows) == 4 and rows[0][0] == "epoch" and [r[0] for r in rows[1:]] == ["0", "1", "0"]
    learn = _learner([CSVLogger()], tmp_path)
    learn.fit(1)
    assert len(_rows(tmp_path / "history.csv")) == 2  # header and the new fit's epoch


def test_tensorboard_without_the_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "tensorboard" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardCallback()


def test_tensorboard_writes_events(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    tb = TensorBoardCallback(log_dir="runs/test")
    learn = _learner([tb], tmp_path)
    learn.fit(2)
    events = list((tmp_path / "runs" / "test").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert tb.writer is None  # closed after the fit


def test_tensorboard_scalars_per_batch_and_per_epoch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What is written, through a stand-in writer (runs without the tensorboard package)."""

    class Writer:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, float, int]] = []
            self.closed = False

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.scalars.append((tag, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, package=None: object() if name == "tensorboard" else real(name),
    )
    tb = TensorBoardCallback()
    writer = Writer()
    tb.writer = writer
    learn = _learner([tb], tmp_path)
    learn.fit(2)  # 3 training batches per epoch
    tags = [t for t, _, _ in writer.scalars]
    assert [s for t, _, s in writer.scalars if t == "train_loss"] == list(range(6))
    assert [v for t, v, _ in writer.scalars if t == "train_loss"] == pytest.approx(learn.recorder.losses)
    assert tags.count("lr") == 6
    assert [s for t, _, s in writer.scalars if t == "valid_loss"] == [0, 1]
    assert [v for t, v, _ in writer.scalars if t == "accuracy"] == [row[2] for row in learn.recorder.values]
    assert writer.closed and tb.writer is None


def test_recorder_history_has_every_epoch_with_its_seconds() -> None:
    from lamina.train.callbacks import Recorder

    items = [(torch.randn(3), torch.tensor(i % 2)) for i in range(12)]
    dls = DataLoaders.from_dsets(items, items, bs=4, num_workers=0, device="cpu")
    learn = Learner(dls, nn.Linear(3, 2), loss_func=nn.CrossEntropyLoss())
    learn.fit(2)
    rec = learn.recorder
    hist = rec.history()
    assert [row[0] for row in hist] == [0, 1] and all(len(r) == len(rec.metric_names) for r in hist)
    assert all(r[-1] > 0 for r in hist) and hist[-1] == rec.log
    again = Recorder()
    again.load_resume_state(rec.resume_state())
    assert again.history() == hist
