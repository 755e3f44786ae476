"""Tests for ResumeCallback: an interrupted fit, resumed, ends with the uninterrupted run's weights and
history; interruptions never damage the last checkpoint; mismatched or foreign files are refused."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from _callbacks import CrashAt
from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import Callback, Learner, accuracy
from lamina.train.callbacks.resume import ResumeCallback


def _items(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return [(x[i], y[i]) for i in range(n)]


def make_learner(path: Path, seed_model: int = 0) -> Learner:
    """Shuffled seeded data, dropout (uses the RNG) and AdamW: everything a resume must restore."""
    dls = DataLoaders.from_dsets(_items(48, 0), _items(16, 1), bs=8, num_workers=0, device="cpu", seed=7)
    torch.manual_seed(seed_model)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, path=path)


class Crash(Callback):
    """Raises `exc` in the middle of the training phase of `epoch`."""

    def __init__(self, epoch: int, exc: type[BaseException] = RuntimeError) -> None:
        self.epoch, self.exc = epoch, exc

    def after_batch(self) -> None:
        if self.learn.training and self.learn.epoch == self.epoch and self.learn.iter == 2:
            raise self.exc("interrupted")


class Draws(Callback):
    """Draws from Python's and NumPy's RNGs every batch: their state must be restored too."""

    def __init__(self) -> None:
        self.draws: list[float] = []

    def after_batch(self) -> None:
        self.draws.append(random.random() + float(np.random.rand()))


def _params(learn: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learn.model.parameters()]


def _reference(tmp_path: Path) -> tuple[list[torch.Tensor], Any, list[float]]:
    random.seed(0)
    np.random.seed(0)
    learn = make_learner(tmp_path / "ref")
    draws = Draws()
    learn.fit_one_cycle(3, 1e-2, cbs=[draws])
    return _params(learn), learn.recorder, draws.draws


def _assert_same_run(
    learn: Learner, ref: tuple[list[torch.Tensor], Any, list[float]], draws: list[float]
) -> None:
    params, rec, ref_draws = ref
    for a, b in zip(_params(learn), params, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(learn.recorder.values, rec.values, rtol=1e-6)
    assert learn.recorder.losses == pytest.approx(rec.losses)
    assert learn.recorder.lrs == pytest.approx(rec.lrs)
    assert draws == pytest.approx(ref_draws[-len(draws) :])


@pytest.mark.parametrize("same_learner", [False, True])
def test_resume_after_a_crash_gives_the_uninterrupted_weights(tmp_path: Path, same_learner: bool) -> None:
    ref = _reference(tmp_path)
    random.seed(0)
    np.random.seed(0)
    learn = make_learner(tmp_path / "run")
    with pytest.raises(RuntimeError, match="interrupted"):
        learn.fit_one_cycle(3, 1e-2, cbs=[ResumeCallback(), Draws(), Crash(epoch=1)])
    ckpt = tmp_path / "run" / "models" / "resume.safetensors"
    assert ckpt.exists()

    random.seed(123)  # a fresh process would start from other random states: the checkpoint's must win
    np.random.seed(123)
    if not same_learner:
        learn = make_learner(
            tmp_path / "run", seed_model=1
        )  # other initial weights: replaced by the checkpoint
    resume, draws = ResumeCallback(), Draws()
    learn.fit_one_cycle(3, 1e-2, cbs=[resume, draws])
    assert resume.resumed_from == 0
    _assert_same_run(learn, ref, draws.draws)
    assert not ckpt.exists()  # the fit finished: nothing left to resume


def test_keyboard_interrupt_leaves_the_last_checkpoint(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        learn.fit(3, cbs=[ResumeCallback("run"), Crash(epoch=2, exc=KeyboardInterrupt)])
    ckpt = tmp_path / "models" / "run.safetensors"
    with safe_open(str(ckpt), framework="pt") as f:
        meta = json.loads(f.metadata()["lamina"])
        keys = set(f.keys())
    assert meta["extra"]["resume"]["epoch"] == 1  # epochs 0 and 1 done
    assert {"extra.rng.torch", "extra.rng.python", "extra.rng.numpy"} <= keys
    assert meta["extra"]["resume"]["callbacks"]["recorder"]["values"]
    assert [p.name for p in ckpt.parent.iterdir()] == ["run.safetensors"]  # no temporary file left


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    learn = make_learner(tmp_path)
    learn.fit(1, cbs=ResumeCallback("run", keep=True))
    ckpt = tmp_path / "models" / "run.safetensors"
    before = ckpt.read_bytes()

    def half_written(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    import lamina.train.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "save_file", half_written)
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, cbs=ResumeCallback("run", resume=False))
    assert ckpt.read_bytes() == before
    assert [p.name for p in ckpt.parent.iterdir()] == ["run.safetensors"]


def test_resume_refuses_another_fit(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    with pytest.raises(RuntimeError):
        learn.fit(3, cbs=[ResumeCallback(), Crash(epoch=1)])
    with pytest.raises(ValueError, match=r"(?s)fit of 3 epochs of 6 batches.*help:"):
        learn.fit(5, cbs=ResumeCallback())
    learn.fit(5, cbs=ResumeCallback(resume=False))  # starting over on purpose works


def test_a_plain_checkpoint_is_not_a_resume_point(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    learn.save("resume")
    with pytest.raises(ValueError, match="not a resume checkpoint"):
        learn.fit(1, cbs=ResumeCallback())


def test_every_and_keep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    import lamina.train.callbacks.resume as resume

    real = resume.save_checkpoint

    def spy(learn: Learner, name: Any, **kw: Any) -> Path:
        saved.append(learn.epoch)
        return real(learn, name, **kw)

    monkeypatch.setattr(resume, "save_checkpoint", spy)
    learn = make_learner(tmp_path)
    learn.fit(5, cbs=ResumeCallback(every=2, keep=True))
    assert saved == [1, 3, 4]  # every 2 epochs, and the last
    assert (tmp_path / "models" / "resume.safetensors").exists()
    with pytest.raises(ValueError, match="every"):
        ResumeCallback(every=0)


def test_a_finished_run_resumes_to_nothing(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    learn.fit(2, cbs=ResumeCallback(keep=True))
    before = _params(learn)
    again = make_learner(tmp_path, seed_model=3)
    cb = ResumeCallback()
    again.fit(2, cbs=cb)
    assert cb.resumed_from == 1
    assert all(torch.equal(a, b) for a, b in zip(before, _params(again), strict=True))


def test_each_process_gets_its_own_random_state_row() -> None:
    from lamina.train.callbacks.resume import _process_rng, _set_rng

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        states.append(_process_rng())
    saved = {f"extra.rng.{k}": torch.stack([s[k] for s in states]) for k in states[0]}
    expected = (torch.rand(3), random.random(), np.random.rand())  # what seed 2 draws next
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    _set_rng(saved, rank=1)  # rank 1 reads the second row (torch segfaults on a row view: it is copied)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_resume_from_the_middle_of_an_epoch_gives_the_uninterrupted_run(tmp_path: Path) -> None:
    ref = _reference(tmp_path)
    random.seed(0)
    np.random.seed(0)
    learn = make_learner(tmp_path / "run")
    # 6 batches an epoch, a checkpoint every 2: a crash after batch 4 of epoch 1 leaves the one after batch 3
    with pytest.raises(RuntimeError, match="interrupted"):
        learn.fit_one_cycle(
            3, 1e-2, cbs=[ResumeCallback(every_batches=2), Draws(), CrashAt(epoch=1, batch=4)]
        )
    random.seed(123)
    np.random.seed(123)
    learn = make_learner(tmp_path / "run", seed_model=1)
    resume, draws, seen = ResumeCallback(every_batches=2), Draws(), Batches()
    learn.fit_one_cycle(3, 1e-2, cbs=[resume, draws, seen])
    assert (resume.resumed_from, resume.resumed_at_batch) == (1, 4)
    assert seen.train[0] == (1, 4)  # the first batch trained is the fifth of epoch 1: none is done twice
    assert len(seen.train) == 2 + 6  # the rest of epoch 1, then epoch 2
    _assert_same_run(learn, ref, draws.draws)


class Batches(Callback):
    """(epoch, batch) of every training batch."""

    def __init__(self) -> None:
        self.train: list[tuple[int, int]] = []

    def before_batch(self) -> None:
        if self.learn.training:
            self.train.append((self.learn.epoch, self.learn.iter))


def test_mid_epoch_resume_keeps_half_accumulated_gradients(tmp_path: Path) -> None:
    from lamina.train import GradientAccumulation

    def run(cbs: list[Callback]) -> Learner:
        learn = make_learner(tmp_path / "acc")
        learn.fit(2, 1e-2, cbs=[GradientAccumulation(24), *cbs])  # a step every 3 batches of 8
        return learn

    random.seed(0)
    ref = _params(run([]))
    random.seed(0)
    with pytest.raises(RuntimeError, match="interrupted"):
        run([ResumeCallback(every_batches=2), CrashAt(epoch=0, batch=2)])  # saved after batch 1: mid-step
    learn = run([ResumeCallback(every_batches=2)])
    for a, b in zip(_params(learn), ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_mid_epoch_checkpoints_need_a_seeded_loader(tmp_path: Path) -> None:
    dls = DataLoaders.from_dsets(_items(48, 0), _items(16, 1), bs=8, num_workers=0, device="cpu")
    learn = Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat(), path=tmp_path)
    with pytest.raises(
        ValueError, match=r"(?s)every_batches needs a seeded.*help: build the DataLoaders with seed"
    ):
        learn.fit(1, cbs=[ResumeCallback(every_batches=2)])
    with pytest.raises(ValueError, match="every_batches must be >= 1"):
        ResumeCallback(every_batches=0)
    with pytest.raises(ValueError, match="help:"):
        dls.train.skip_batches(1)
