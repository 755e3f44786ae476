"""Fixtures for the text tests (helpers in _text_kit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _text_kit import make_reviews, tiny_bert, word_tokenizer


@pytest.fixture(scope="session")
def reviews() -> pd.DataFrame:
    return make_reviews()


@pytest.fixture
def tokenizer() -> Any:
    return word_tokenizer()


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """A saved tiny BERT with its tokenizer.json, as save_pretrained lays a model out."""
    from transformers import BertModel

    folder = tmp_path / "tiny-bert"
    BertModel(tiny_bert()).save_pretrained(folder)
    word_tokenizer().save(str(folder / "tokenizer.json"))
    return folder
