"""Helpers for the text tests: synthetic reviews, a word-level tokenizer over them, tiny configs."""

from __future__ import annotations

import random
from typing import Any

import pandas as pd

GOOD = ["lovely", "great", "perfect", "soft", "beautiful", "comfortable"]
BAD = ["awful", "cheap", "torn", "ugly", "scratchy", "returned"]
FILLER = ["the", "dress", "was", "fabric", "and", "i", "it", "fit", "color", "top"]


def make_reviews(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Reviews of 4 to 40 words whose label ('pos'/'neg') is said by two sentiment words among filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        words = rng.choices(FILLER, k=rng.randint(2, 38)) + rng.choices(GOOD if pos else BAD, k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), "pos" if pos else "neg", 4.5 if pos else 1.5))
    return pd.DataFrame(rows, columns=["text", "label", "score"])


def word_tokenizer(
    special: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), bert: bool = True
) -> Any:
    """A word-level fast tokenizer over the synthetic vocabulary (BERT-style [CLS] x [SEP] when `bert`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate([*special, *sorted(set(GOOD + BAD + FILLER))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(special))
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return tok


def tiny_bert(vocab_size: int = 64) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def tiny_gpt2(vocab_size: int = 64) -> Any:
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=128)
