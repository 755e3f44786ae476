"""TextDataLoaders: batches padded to their longest text with -1, bucketed by length, tables, bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from lamina.core import TensorText
from lamina.data import CategoryBlock, ColReader, DataBlock, RandomSplitter, RegressionBlock
from lamina.text import TextBlock, TextDataLoaders, Tokenize, padding_waste, tokenizer_of


def test_collate_pads_with_minus_one() -> None:
    a, b = torch.tensor([5, 6, 7]).as_subclass(TensorText), torch.tensor([8]).as_subclass(TensorText)
    batch = TensorText.collate([a, b])
    assert batch.tolist() == [[5, 6, 7], [8, -1, -1]] and type(batch) is torch.Tensor


def test_from_df_batches(reviews: pd.DataFrame, tokenizer: Any) -> None:
    dls = TextDataLoaders.from_df(reviews, "text", "label", tokenizer=tokenizer, seed=0, bs=16)
    x, y = dls.one_batch()
    assert x.dtype == torch.int64 and x.ndim == 2 and y.shape == (16,)
    lengths = (x >= 0).sum(1)
    assert int(lengths.max()) == x.shape[1]  # padded to the longest text of the batch, no further
    assert dls.vocab == ["neg", "pos"] and dls.c == 2
    # validation goes by length, longest first
    valid_lengths = [n for b in dls.valid for n in (b[0] >= 0).sum(1).tolist()]
    assert valid_lengths == sorted(valid_lengths, reverse=True)


def test_bucketing_cuts_padding(tokenizer: Any) -> None:
    from _text_kit import make_reviews

    df = make_reviews(1200)
    dls = TextDataLoaders.from_df(df, "text", "label", tokenizer=tokenizer, seed=0, bs=16)
    bucketed = padding_waste(dls.train)
    plain = padding_waste(dls.train.new(sizes=[1] * len(dls.train.dataset)))
    assert bucketed <= 0.10 < plain, (bucketed, plain)
    # still shuffled: two epochs differ
    first = [b[0].sum().item() for b in dls.train]
    second = [b[0].sum().item() for b in dls.train]
    assert first != second


def test_show_batch_is_a_table(reviews: pd.DataFrame, tokenizer: Any) -> None:
    dls = TextDataLoaders.from_df(reviews, "text", "label", tokenizer=tokenizer, seed=0, bs=8)
    table = dls.show_batch(max_n=4)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["text", "target"] and len(table) == 4
    assert set(table.target) <= {"pos", "neg"} and all(isinstance(t, str) and t for t in table.text)
    texts = set(reviews.text)
    assert all(t in texts for t in table.text)  # decoded back to the very texts


def test_datablock_path(reviews: pd.DataFrame, tokenizer: Any) -> None:
    dblock = DataBlock(
        blocks=(TextBlock(tokenizer=tokenizer), CategoryBlock),
        get_x=ColReader("text"),
        get_y=ColReader("label"),
        splitter=RandomSplitter(0.2, seed=0),
    )
    dsets = dblock.datasets(reviews)
    tok = tokenizer_of(dsets)
    assert isinstance(tok, Tokenize) and len(tok._cache) == len(set(reviews.text))  # train + valid, once
    dls = TextDataLoaders.from_datasets(dsets, dblock._blocks(), bs=8, seed=0)
    assert dls.one_batch()[0].ndim == 2


def test_multilabel_and_regression(reviews: pd.DataFrame, tokenizer: Any) -> None:
    df = reviews.assign(
        tags=[
            f"{lbl};{'long' if len(t) > 60 else 'short'}"
            for t, lbl in zip(reviews.text, reviews.label, strict=True)
        ]
    )
    dls = TextDataLoaders.from_df(df, "text", "tags", label_delim=";", tokenizer=tokenizer, seed=0, bs=8)
    assert dls.vocab == ["long", "neg", "pos", "short"] and dls.one_batch()[1].shape == (8, 4)
    reg = TextDataLoaders.from_df(
        reviews, "text", "score", y_block=RegressionBlock, tokenizer=tokenizer, seed=0
    )
    assert reg.one_batch()[1].dtype == torch.float32


def test_missing_texts_are_left_out(reviews: pd.DataFrame, tokenizer: Any) -> None:
    df = reviews.copy()
    df.loc[[3, 7], "text"] = None
    df.loc[5, "text"] = float("nan")
    df.loc[9, "text"] = ""  # an empty text is a text: kept ([CLS] [SEP])
    with pytest.warns(UserWarning, match=r"3 of 300 rows have no text in column 'text'"):
        dls = TextDataLoaders.from_df(df, "text", "label", tokenizer=tokenizer, seed=0)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 297
    with pytest.raises(ValueError, match="drop_missing=True"):
        TextDataLoaders.from_df(df, "text", "label", tokenizer=tokenizer, drop_missing=False)


def test_numbers_are_not_text(reviews: pd.DataFrame, tokenizer: Any) -> None:
    with pytest.raises(TypeError, match=r"(?s)holds numbers .* swapped"):
        TextDataLoaders.from_df(reviews, "score", "label", tokenizer=tokenizer)


def test_one_class_is_refused(reviews: pd.DataFrame, tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="single class"):
        TextDataLoaders.from_df(reviews.assign(label="pos"), "text", "label", tokenizer=tokenizer)


def test_missing_column_is_named(reviews: pd.DataFrame, tokenizer: Any) -> None:
    with pytest.raises(KeyError, match="no column 'Review'"):
        TextDataLoaders.from_df(reviews, "Review", "label", tokenizer=tokenizer)


def _write_folder(root: Path, reviews: pd.DataFrame) -> None:
    for i, (text, label) in enumerate(zip(reviews.text, reviews.label, strict=True)):
        split = "test" if i % 5 == 0 else "train"
        d = root / split / label
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.txt").write_text(text, encoding="utf-8")


def test_from_folder_imdb_layout(tmp_path: Path, reviews: pd.DataFrame, tokenizer: Any) -> None:
    _write_folder(tmp_path, reviews)
    (tmp_path / "train" / "pos" / "latin1.txt").write_bytes("a lovely caf\xe9 dress".encode("latin-1"))
    (tmp_path / "train" / "unsup").mkdir()  # IMDb has one more folder; here it is just another class
    with pytest.warns(UserWarning, match=r"1 of \d+ files are not valid UTF-8 .*latin1.txt"):
        dls = TextDataLoaders.from_folder(tmp_path, valid="test", tokenizer=tokenizer, seed=0, bs=8)
    assert len(dls.valid.dataset) == 60 and dls.vocab == ["neg", "pos"]
    with pytest.raises(UnicodeDecodeError, match=r"latin1\.txt"):
        TextDataLoaders.from_folder(tmp_path, valid="test", tokenizer=tokenizer, encoding_errors="strict")


def test_from_folder_without_split(tmp_path: Path, reviews: pd.DataFrame, tokenizer: Any) -> None:
    for i, (text, label) in enumerate(zip(reviews.text[:40], reviews.label[:40], strict=True)):
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / f"{i}.txt").write_text(text)
    dls = TextDataLoaders.from_folder(tmp_path, tokenizer=tokenizer, valid_pct=0.25, seed=0, bs=4)
    assert len(dls.valid.dataset) == 10
    with pytest.raises(ValueError, match=r"no \.txt files"):
        TextDataLoaders.from_folder(tmp_path / "pos", tokenizer=tokenizer)


def test_from_csv(tmp_path: Path, reviews: pd.DataFrame, tokenizer: Any) -> None:
    reviews.to_csv(tmp_path / "r.csv", index=False)
    dls = TextDataLoaders.from_csv(
        tmp_path / "r.csv", text_col="text", label_col="label", tokenizer=tokenizer
    )
    assert dls.c == 2


def test_language_model_batches(reviews: pd.DataFrame, tokenizer: Any) -> None:
    torch.manual_seed(0)
    dls = TextDataLoaders.from_df(reviews, "text", is_lm=True, tokenizer=tokenizer, seed=0, bs=16)
    x, y = dls.one_batch()
    masked = y >= 0
    assert 0.05 < masked.float().sum() / (x >= 0).sum() < 0.3  # about 15% of the real tokens
    mask_id = tokenizer.token_to_id("[MASK]")
    assert (x[masked] == mask_id).float().mean() > 0.6
    assert not bool((y == tokenizer.token_to_id("[CLS]")).any())  # special tokens are never picked
    causal = TextDataLoaders.from_df(reviews, "text", is_lm=True, causal=True, tokenizer=tokenizer, seed=0)
    cx, cy = causal.one_batch()
    assert torch.equal(cx, cy)
