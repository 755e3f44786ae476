"""Blocks: category, multi-label and regression targets, their setup on training items and their errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lamina.core import Category, MultiCategory, TensorCategory, TensorMultiCategory
from lamina.data import (
    BCEWithLogitsLossFlat,
    Categorize,
    CategoryBlock,
    ColReader,
    ColSplitter,
    CrossEntropyLossFlat,
    DataBlock,
    Datasets,
    EncodedMultiCategorize,
    ItemError,
    MSELossFlat,
    MultiCategorize,
    MultiCategoryBlock,
    RegressionBlock,
    TransformBlock,
)


def labels_dsets(labels: list[object], valid: list[int], tfm: object) -> Datasets:
    train = [i for i in range(len(labels)) if i not in valid]
    return Datasets(labels, [[tfm]], splits=(train, valid), n_inp=1)


def test_categorize_vocab_comes_from_training_only() -> None:
    cat = Categorize()
    labels_dsets(["b", "a", "b", "c", "a"], valid=[4], tfm=cat)
    assert cat.vocab == ["a", "b", "c"] and cat.c == 3
    x = cat("c")
    assert type(x) is TensorCategory and int(x) == 2
    assert cat.decode(x) == Category("c") and isinstance(cat.decode(x), Category)


def test_categorize_unseen_validation_label_is_named() -> None:
    with pytest.raises(ValueError) as e:
        labels_dsets(["a", "b", "a", "zebra", "okapi"], valid=[3, 4], tfm=Categorize())
    msg = str(e.value)
    assert "['okapi', 'zebra']" in msg and "['a', 'b']" in msg and "help:" in msg


def test_categorize_options() -> None:
    unsorted = Categorize(sort=False)
    labels_dsets(["b", "a", "b"], valid=[], tfm=unsorted)
    assert unsorted.vocab == ["b", "a"]
    numbers = Categorize()
    labels_dsets([10, 2, 1], valid=[], tfm=numbers)
    assert numbers.vocab == [1, 2, 10]  # numerically sorted
    fixed = Categorize(vocab=["x", "y", "z"])
    labels_dsets(["y"], valid=[], tfm=fixed)
    assert fixed.vocab == ["x", "y", "z"]
    with pytest.raises(ValueError, match="duplicates"):
        Categorize(vocab=["a", "a"])
    with pytest.raises(KeyError, match=r"(?s)'w' is not in the vocabulary.*help:"):
        fixed("w")


@given(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=8))
def test_categorize_round_trip(labels: list[str]) -> None:
    cat = Categorize()
    cat.setup(labels)
    for lbl in labels:
        assert cat.decode(cat(lbl)) == lbl


def test_multicategorize() -> None:
    mc = MultiCategorize()
    labels_dsets([["b", "a"], ["c"], [], "a"], valid=[], tfm=mc)
    assert mc.vocab == ["a", "b", "c"]
    x = mc(["c", "a"])
    assert type(x) is TensorMultiCategory and x.tolist() == [1.0, 0.0, 1.0]
    assert mc.decode(x) == MultiCategory(["a", "c"])
    assert mc(None).tolist() == [0.0, 0.0, 0.0]  # no label at all is a valid multi-label target
    with pytest.raises(ValueError, match=r"(?s)never seen in training: \['d'\]"):
        labels_dsets([["a"], ["a", "d"]], valid=[1], tfm=MultiCategorize())


@given(st.lists(st.sets(st.sampled_from("abcdef")), min_size=1, max_size=6))
def test_multicategorize_round_trip(label_sets: list[set[str]]) -> None:
    mc = MultiCategorize()
    mc.setup([sorted(s) for s in label_sets])
    for s in label_sets:
        assert mc.decode(mc(sorted(s))) == sorted(s)


def test_encoded_multicategorize() -> None:
    emc = EncodedMultiCategorize(["cat", "dog", "bird"])
    x = emc([1, 0, 1])
    assert type(x) is TensorMultiCategory and emc.decode(x) == ["cat", "bird"]
    with pytest.raises(ValueError, match="got 2 values for a vocab of 3"):
        emc([1, 0])


def test_multicategory_block_encoded_and_not(table: pd.DataFrame) -> None:
    dblock = DataBlock(
        blocks=(TransformBlock, MultiCategoryBlock),
        get_x=ColReader("a"),
        get_y=ColReader("tags", label_delim=" "),
        splitter=ColSplitter(),
    )
    dsets = dblock.datasets(table)
    assert dsets.train[0][1].tolist() == [1.0, 1.0, 0.0]  # 'x y' over vocab x, y, z
    assert MultiCategoryBlock().loss is BCEWithLogitsLossFlat
    onehot = pd.DataFrame({"f": [0.0, 1.0, 2.0], "cat": [1, 0, 1], "dog": [0, 1, 1]})
    dblock = DataBlock(
        blocks=(TransformBlock, MultiCategoryBlock(encoded=True, vocab=["cat", "dog"])),
        get_x=ColReader("f"),
        get_y=ColReader(["cat", "dog"]),
    )
    dsets = dblock.datasets(onehot)
    assert [dsets[i][1].tolist() for i in range(3)] == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="needs vocab"):
        MultiCategoryBlock(encoded=True)


def test_regression_block_n_out() -> None:
    block = RegressionBlock()
    assert block.loss is MSELossFlat
    reg = block.type_tfms[0]
    labels_dsets([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], valid=[], tfm=reg)
    assert reg.c == 3  # type: ignore[union-attr]  # learned from the training targets
    scalar = RegressionBlock().type_tfms[0]
    labels_dsets([1.5, 2.5], valid=[], tfm=scalar)
    assert scalar.c == 1  # type: ignore[union-attr]
    assert RegressionBlock(n_out=4).type_tfms[0].c == 4  # type: ignore[union-attr]
    x = scalar(2.5)
    assert x.dtype == torch.float32 and float(x) == 2.5


def test_regression_none_target_fails_at_construction() -> None:
    with pytest.raises(ItemError, match=r"(?s)None.*help:"):
        labels_dsets([1.0, None, 2.0], valid=[], tfm=RegressionBlock().type_tfms[0])


def test_category_block_brings_its_loss() -> None:
    b = CategoryBlock(vocab=["a", "b"])
    assert b.loss is CrossEntropyLossFlat and isinstance(b.type_tfms[0], Categorize)
