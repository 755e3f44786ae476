"""Texts written as shards of token ids (issue 18): tokenized once when written, read back by
`TextDataLoaders.from_shards` without tokenizing or caching anything, in the same batches as the in-memory
path, and trained to a real accuracy; shards of another tokenizer and ids outside the vocabulary refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from _text_kit import tiny_bert, word_tokenizer

from lamina.data import CategoryBlock, DataBlock, RandomSplitter, Shards, parent_label, write_shards
from lamina.text import TextBlock, TextDataLoaders, Tokenize, text_classifier_learner, tokenizer_of
from lamina.train import accuracy

pytest.importorskip("datasets")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _block(max_len: int = 64) -> tuple[DataBlock, Any]:
    """Text files in class folders, read one by one when written (a corpus need not fit in memory)."""
    text = TextBlock(tokenizer=Tokenize(word_tokenizer(), max_len=max_len))
    dblock = DataBlock(
        blocks=[text, CategoryBlock],
        get_items=lambda root: sorted(Path(root).rglob("*.txt")),
        get_x=_read,
        get_y=parent_label,
        splitter=RandomSplitter(0.2, seed=0),
    )
    return dblock, text


@pytest.fixture(scope="module")
def written(reviews: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("texts")
    for i, row in reviews.iterrows():
        (root / row["label"]).mkdir(exist_ok=True)
        (root / row["label"] / f"{i:04d}.txt").write_text(row["text"], encoding="utf-8")
    out = write_shards(_block()[0], root, root.parent / "text-shards", shard_bytes=8 << 10)
    return root, out


def test_token_ids_in_shards_give_the_in_memory_batches_untokenized(written: tuple[Path, Path]) -> None:
    root, out = written
    manifest = json.loads((out / "lamina-shards.json").read_text())
    assert len(manifest["shards"]) > 1
    assert manifest["elements"][0]["kind"] == "list[int32]"  # token ids: 4 bytes each
    assert manifest["elements"][0]["stored"].startswith("Tokenize-")

    dls = TextDataLoaders.from_shards(out, tokenizer=Tokenize(word_tokenizer(), max_len=64), bs=16, seed=0)
    shard_batches = [(x.clone(), y.clone()) for x, y in dls.train]
    dblock, text = _block()
    memory = TextDataLoaders.from_datasets(dblock.datasets(root), [text, CategoryBlock()], bs=16, seed=0)
    memory_batches = list(memory.train)
    assert len(shard_batches) == len(memory_batches) > 5
    for (xs, ys), (xm, ym) in zip(shard_batches, memory_batches, strict=True):
        assert torch.equal(xs, xm) and torch.equal(ys, ym)
    tok = tokenizer_of(dls)
    assert tok._cache == {}, "texts in shards were tokenized again"
    assert len(tokenizer_of(memory)._cache) > 0
    sizes = Shards(out).sizes(0)
    assert sizes.tolist() == [len(v) for v in (Shards(out).value(i, 0) for i in range(len(sizes)))]


def test_a_classifier_trains_on_text_shards(written: tuple[Path, Path]) -> None:
    _, out = written
    dls = TextDataLoaders.from_shards(out, tokenizer=Tokenize(word_tokenizer(), max_len=64), bs=16, seed=0)
    learn = text_classifier_learner(dls, tiny_bert(), metrics=accuracy)
    learn.fit_one_cycle(4, 3e-3)
    acc = learn.validate()["accuracy"]
    assert acc >= 0.9, f"{acc:.3f} (chance: 0.5)"
    label, _, _ = learn.predict("a lovely soft top")
    assert label == "pos"


def test_shards_of_another_tokenizer_or_max_len_are_refused(written: tuple[Path, Path]) -> None:
    _, out = written
    with pytest.raises(ValueError, match=r"(?s)written as Tokenize-.*help: read shards with the same blocks"):
        TextDataLoaders.from_shards(out, tokenizer=Tokenize(word_tokenizer(), max_len=32))
    other = word_tokenizer(special=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[X]"))
    with pytest.raises(ValueError, match="written as Tokenize-"):
        TextDataLoaders.from_shards(out, tokenizer=Tokenize(other, max_len=64))


def test_token_ids_outside_the_vocabulary_are_named() -> None:
    tok = Tokenize(word_tokenizer(), max_len=8)
    assert tok([2, 7, 3]).tolist() == [2, 7, 3]
    assert tok(list(range(1, 20))).shape == (8,)  # cut at max_len, as a text is
    for bad in ([5, 10_000], [-1], [[1, 2]], ["a"]):
        with pytest.raises(ValueError, match="not ids of this tokenizer"):
            tok(bad)
