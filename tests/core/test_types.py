"""Semantic types: each shows itself on a matplotlib Axes; retain_type/strip_type; titles."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from lamina.core import (
    Category,
    MultiCategory,
    TensorBase,
    TensorBBox,
    TensorCategory,
    TensorImage,
    TensorImageBW,
    TensorMask,
    TensorMultiCategory,
    TensorPoint,
    TensorText,
    retain_type,
    strip_type,
    value_title,
)

SHOWABLE = [
    torch.randint(0, 255, (3, 6, 5), dtype=torch.uint8).as_subclass(TensorImage),
    torch.rand(3, 6, 5).as_subclass(TensorImage),
    torch.rand(1, 6, 5).as_subclass(TensorImageBW),
    torch.randint(0, 3, (6, 5)).as_subclass(TensorMask),
    torch.tensor([[1.0, 2.0], [3.0, 4.0]]).as_subclass(TensorPoint),
    torch.tensor([[0.0, 0.0, 2.0, 3.0]]).as_subclass(TensorBBox),
    torch.tensor(2).as_subclass(TensorCategory),
    torch.tensor([0.0, 1.0, 1.0]).as_subclass(TensorMultiCategory),
    torch.tensor([3, 1, 4]).as_subclass(TensorText),
    Category("cat"),
    MultiCategory(["cat", "dog"]),
]


@pytest.mark.parametrize("x", SHOWABLE, ids=lambda x: type(x).__name__)
def test_types_show_themselves(x: object) -> None:
    fig, ax = plt.subplots()
    try:
        assert x.show(ctx=ax) is ax  # type: ignore[attr-defined]
        assert x.show(ctx=ax, title="pred") is ax  # type: ignore[attr-defined]
    finally:
        plt.close(fig)


def test_show_without_axes_makes_one() -> None:
    ax = Category("cat").show()
    try:
        assert ax.get_title() == "cat"
    finally:
        plt.close(ax.figure)


def test_titles_join_label_and_prediction() -> None:
    fig, ax = plt.subplots()
    try:
        Category("cat").show(ctx=ax)
        Category("dog").show(ctx=ax)
        assert ax.get_title() == "cat\ndog"
        fig2, ax2 = plt.subplots()
        MultiCategory(["a", "b"]).show(ctx=ax2)
        assert ax2.get_title() == "a;b"
        plt.close(fig2)
    finally:
        plt.close(fig)


def test_value_title() -> None:
    assert value_title(torch.tensor(3.14159)) == "3.142"
    assert value_title(torch.tensor([1.0, 2.5])) == "[1, 2.5]"
    assert value_title(torch.tensor(7).as_subclass(TensorCategory)) == "7"
    assert value_title(torch.zeros(3, 8, 8)) == "Tensor(3, 8, 8)"
    assert value_title(0.123456) == "0.1235" and value_title("x") == "x"


def test_retain_and_strip_type() -> None:
    img = torch.zeros(1, 2, 2).as_subclass(TensorImage)
    plain = torch.ones(1, 2, 2)
    assert type(retain_type(plain, img)) is TensorImage
    assert type(retain_type(plain, torch.zeros(1))) is torch.Tensor  # nothing to retain
    mask = torch.zeros(2, 2).as_subclass(TensorMask)
    assert type(retain_type(mask, img)) is TensorMask  # already typed: kept
    assert retain_type("x", img) == "x"
    s = strip_type(img)
    assert type(s) is torch.Tensor and s.data_ptr() == img.data_ptr()  # a view, no copy
    assert strip_type(3) == 3
    assert issubclass(TensorImageBW, TensorImage) and issubclass(TensorImage, TensorBase)


def test_targets_drawn_over_their_input_say_so() -> None:
    """show_results reads this flag instead of naming vision's types: a new application's type sets it."""
    from lamina.core import TensorBase, TensorBBox, TensorCategory, TensorMask, TensorPoint

    assert all(t.draws_over_input for t in (TensorMask, TensorPoint, TensorBBox))
    assert not TensorCategory.draws_over_input and not TensorBase.draws_over_input

    class TensorHeatmap(TensorBase):
        draws_over_input = True

    assert TensorHeatmap.draws_over_input
