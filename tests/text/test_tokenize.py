"""Tokenize: batched and cached tokenization, decoding, truncation, bad texts, the export config."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from _text_kit import word_tokenizer

from lamina.core import TensorText
from lamina.text import Tokenize, load_tokenizer, model_path
from lamina.text.data import TextBlock


def test_encode_decode_round_trip(tokenizer: Any) -> None:
    tok = Tokenize(tokenizer, max_len=32)
    ids = tok("lovely soft dress")
    assert isinstance(ids, TensorText) and ids.dtype == torch.int64
    assert ids.tolist()[0] == tokenizer.token_to_id("[CLS]") and ids.tolist()[-1] == tokenizer.token_to_id(
        "[SEP]"
    )
    assert str(tok.decode(ids)) == "lovely soft dress"
    # padding (-1) is left out when decoding a row of a batch
    padded = torch.cat([ids, torch.full((5,), -1)]).as_subclass(TensorText)
    assert str(tok.decode(padded)) == "lovely soft dress"


def test_setup_tokenizes_in_batches_once(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = Tokenize(tokenizer, max_len=32)
    calls: list[int] = []
    real = tok.tokenizer.encode_batch

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(tokenizer, name)

        def encode_batch(self, texts: list[str]) -> Any:
            calls.append(len(texts))
            return real(texts)

    tok.tokenizer = Spy()  # type: ignore[assignment]
    texts = [f"dress {i % 7} fit" for i in range(50)]
    tok.setup(texts)
    assert calls == [7]  # the distinct texts, in one batch
    for t in texts:
        tok(t)
    assert calls == [7]  # items read the cache


def test_truncation_warns_with_the_count(tokenizer: Any) -> None:
    tok = Tokenize(tokenizer, max_len=16)
    long_text = "dress " * 100_000  # 600k characters
    with pytest.warns(UserWarning, match=r"2 of 3 training texts are longer than max_len=16"):
        tok.setup([long_text, "short fit", long_text + "top"])
    ids = tok(long_text)
    assert len(ids) == 16 and ids[-1] == tokenizer.token_to_id("[SEP]")


@pytest.mark.parametrize("bad", [None, float("nan"), 3, 4.5])
def test_not_a_text_is_refused(tokenizer: Any, bad: Any) -> None:
    tok = Tokenize(tokenizer, max_len=16)
    with pytest.raises(TypeError, match="where a text"):
        tok(bad)
    with pytest.raises(TypeError, match="help:"):
        tok.setup([bad])


def test_empty_text_gets_one_token() -> None:
    tok = Tokenize(word_tokenizer(bert=False), max_len=16)
    ids = tok("")
    assert len(ids) == 1  # never a zero-length item (a batch of them would have no column)


def test_export_config_round_trip(tokenizer: Any) -> None:
    tok = Tokenize(tokenizer, max_len=24)
    cfg = tok.to_config()
    json.dumps(cfg)
    again = Tokenize.from_config(json.loads(json.dumps(cfg)))
    assert again.max_len == 24
    assert torch.equal(again("great fit top"), tok("great fit top"))


def test_shipped_model_tokenizer() -> None:
    folder = model_path()
    assert (folder / "config.json").is_file()
    tok = Tokenize.from_pretrained()
    assert tok.max_len == 512 and tok.vocab_size == 30522
    # the file's own padding/truncation to 128 is turned off: lamina pads per batch
    assert len(tok("word " * 300)) == 302


def test_folder_without_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        TextBlock(tmp_path)


def test_unknown_name_is_not_downloaded() -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        model_path("no-such-user/no-such-model-xyz")


def test_vocab_only_folder_is_converted(tmp_path: Path) -> None:
    """A folder with vocab.txt and no tokenizer.json (older BERT checkpoints) still gets a fast tokenizer."""
    src = model_path()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = load_tokenizer(tmp_path)
    ref = load_tokenizer(src)
    assert tok.encode("A lovely dress!").ids == ref.encode("A lovely dress!").ids
