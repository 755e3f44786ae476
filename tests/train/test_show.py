"""What a user sees: show_results draws a random (seeded) sample, and multi-label sets are written one way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch
from _export_fixture import ToFloatTensor, get_x, get_y, items
from torch import nn

from lamina.core import MultiCategory
from lamina.data import (
    CategoryBlock,
    DataBlock,
    IndexSplitter,
    MultiCategoryBlock,
    TransformBlock,
)
from lamina.train import Interpretation, Learner

matplotlib.use("Agg")


def _titles(fig: Any) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


@pytest.fixture
def sorted_learner(tmp_path: Path) -> Learner:
    """A classifier whose 30 validation items are sorted by class (as a folder-per-class dataset is)."""
    rows = sorted(items(90), key=lambda r: r["y"])
    dblock = DataBlock(
        blocks=(TransformBlock(type_tfms=[ToFloatTensor()]), CategoryBlock),
        get_x=get_x,
        get_y=get_y,
        splitter=IndexSplitter([i for i in range(90) if i % 3 == 0]),  # each class in a run, in order
    )
    dls = dblock.dataloaders(rows, bs=16, num_workers=0, device="cpu", seed=0)
    return Learner(dls, nn.Linear(4, 3), path=tmp_path)


def test_show_results_draws_a_seeded_random_sample(sorted_learner: Learner) -> None:
    learn = sorted_learner
    first = learn.dls.valid.decode_batch(learn.dls.valid.one_batch(), max_n=9)
    assert len({str(it[1]) for it in first}) == 1  # the first batch's nine items: one class

    titles = _titles(learn.show_results(max_n=9))
    assert len(titles) == 9
    targets = [t.splitlines()[-2] for t in titles]  # input, target, "pred: ..."
    assert len(set(targets)) >= 2 and all(t.splitlines()[-1].startswith("pred: ") for t in titles)
    assert _titles(learn.show_results(max_n=9)) == titles  # the same seed, the same items
    assert _titles(learn.show_results(max_n=9, seed=1)) != titles
    assert len({t.splitlines()[-2] for t in _titles(learn.show_results(max_n=9, seed=None))}) == 1


ODD_PRIME = ["odd", "prime", "loop"]


class _Echo(nn.Module):
    """Logits +-6 from the input's first three values: the predicted set is the input's own."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :3] * 12 - 6) * self.w


def _tags_x(row: tuple[list[float], list[str]]) -> list[float]:
    return row[0]


def _tags_y(row: tuple[list[float], list[str]]) -> list[str]:
    return row[1]


@pytest.fixture
def multi_learner(tmp_path: Path) -> Learner:
    rows = []
    for i in range(24):
        on = [(i >> b) & 1 for b in range(3)]
        x = [float(v) for v in on] + [0.0]
        rows.append((x, [t for t, v in zip(ODD_PRIME, on, strict=True) if v]))
    dblock = DataBlock(
        blocks=(TransformBlock(type_tfms=[ToFloatTensor()]), MultiCategoryBlock),
        get_x=_tags_x,
        get_y=_tags_y,
        splitter=IndexSplitter(range(8, 24)),
    )
    dls = dblock.dataloaders(rows, bs=8, num_workers=0, device="cpu", seed=0)
    return Learner(dls, _Echo(), path=tmp_path)


def _has_list_spelling(text: str) -> bool:
    return "[" in text.replace("[0", "").replace("[1", "") or "'" in text  # inputs are [0., 1., ...] lists


def test_multi_label_sets_are_written_joined_by_semicolons(multi_learner: Learner) -> None:
    learn = multi_learner
    assert str(MultiCategory(["odd", "prime"])) == "odd;prime" and f"{MultiCategory(['a'])}" == "a"

    label, _, _ = learn.predict([1.0, 1.0, 0.0, 0.0])
    assert isinstance(label, MultiCategory) and str(label) == "loop;odd" == f"{label}"

    shown = _titles(learn.show_results(max_n=16, seed=None))
    sets = [t.splitlines()[-1].removeprefix("pred: ") for t in shown]
    assert "loop;odd;prime" in sets and all(not _has_list_spelling(s) for s in sets)
    batch = _titles(learn.dls.valid.show_batch(max_n=16))
    assert any(t.splitlines()[-1] == "loop;odd;prime" for t in batch)

    fig = Interpretation.from_learner(learn).plot_top_losses(4)
    for title in _titles(fig):
        pred, actual, _loss = title.splitlines()[-1].split(" / ")
        assert not _has_list_spelling(pred) and not _has_list_spelling(actual)
        assert set(pred.split(";")) <= {"", *ODD_PRIME}


def test_top_losses_header_names_the_fields_shown(multi_learner: Learner, sorted_learner: Learner) -> None:
    fig = Interpretation.from_learner(multi_learner).plot_top_losses(4)
    header = fig._suptitle.get_text()  # type: ignore[union-attr]
    assert header == "prediction / actual / loss"  # no probability for a set of labels
    assert all(len(t.splitlines()[-1].split(" / ")) == 3 for t in _titles(fig))

    fig = Interpretation.from_learner(sorted_learner).plot_top_losses(4)
    assert fig._suptitle.get_text() == "prediction / actual / loss / probability"  # type: ignore[union-attr]
    assert all(len(t.splitlines()[-1].split(" / ")) == 4 for t in _titles(fig))
