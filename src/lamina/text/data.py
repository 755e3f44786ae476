"""Text data: TextBlock, TextDataLoaders (from a DataFrame, a CSV, a folder per class or shards), batches by
length.

Texts are tokenized once per dataset, in batches through the fast tokenizer, and cached as token ids (or,
for a corpus past memory, written once as token ids in shards: `write_shards`, `from_shards`).
Training batches are drawn from buckets of similar length (shuffled) and validation batches go by length,
so dynamic padding (each batch padded to its longest text, with -1) wastes little.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lamina.core import ItemTransform, TensorText, register_transform
from lamina.data import (
    CategoryBlock,
    DataBlock,
    DataLoader,
    DataLoaders,
    Datasets,
    MultiCategoryBlock,
    RandomSplitter,
    TransformBlock,
)
from lamina.data.blocks import block_tfms
from lamina.data.datasets import Getter, get_item
from lamina.data.shards import Shards
from lamina.text.losses import TextLMLoss
from lamina.text.tokenize import Tokenize

if TYPE_CHECKING:
    import pandas as pd
    from tokenizers import Tokenizer

__all__ = [
    "MaskTokens",
    "TextBlock",
    "TextDataLoaders",
    "padding_waste",
    "read_text_files",
    "tokenizer_of",
]


def TextBlock(
    model: str | Path | None = None,
    tokenizer: Tokenizer | Tokenize | None = None,
    max_len: int | None = None,
) -> TransformBlock:
    """Texts as token ids, through the fast tokenizer of `model` (a local folder or cached Hugging Face
    name; default all-MiniLM-L6-v2) or of a given `tokenizers.Tokenizer`."""
    if isinstance(tokenizer, Tokenize):
        tfm = tokenizer
    elif tokenizer is not None:
        tfm = Tokenize(tokenizer, max_len=max_len or 512)
    else:
        tfm = Tokenize.from_pretrained(model, max_len=max_len)
    return TransformBlock(type_tfms=[tfm])


def tokenizer_of(dls: DataLoaders | Datasets) -> Tokenize:
    """The `Tokenize` transform of the data's first input."""
    dsets = dls if isinstance(dls, Datasets) else dls.dsets
    if dsets is not None:
        for t in dsets.pipelines[0].tfms:
            if isinstance(t, Tokenize):
                return t
    raise ValueError(
        "text: the data has no Tokenize transform on its first input.\n"
        "help: build it with TextDataLoaders or a DataBlock whose first block is TextBlock(...)"
    )


@register_transform("text.MaskTokens")
class MaskTokens(ItemTransform):
    """Masked-language-model batches: picks `p` of the real tokens (not special ones) of (ids, target);
    the target keeps the picked tokens and is -1 (ignored) elsewhere; the input gets the mask token in
    80% of the picked places, a random token in 10%, and keeps the token in the last 10% (BERT's recipe)."""

    order = 10

    def __init__(
        self, mask_id: int, vocab_size: int, special_ids: Sequence[int] = (), p: float = 0.15
    ) -> None:
        super().__init__()
        self.mask_id, self.vocab_size, self.special_ids, self.p = mask_id, vocab_size, list(special_ids), p

    def encodes(self, b: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(b) < 2 or not isinstance(b[0], TensorText):
            return b
        x = b[0].as_subclass(Tensor)
        real = x >= 0
        if self.special_ids:
            real &= ~torch.isin(x, torch.tensor(self.special_ids, device=x.device))
        picked = (torch.rand(x.shape, device=x.device) < self.p) & real
        targ = torch.where(picked, x, torch.full_like(x, TensorText.PAD))
        roll = torch.rand(x.shape, device=x.device)
        inp = torch.where(picked & (roll < 0.8), torch.full_like(x, self.mask_id), x)
        rand_ids = torch.randint(0, self.vocab_size, x.shape, device=x.device)
        inp = torch.where(picked & (roll >= 0.8) & (roll < 0.9), rand_ids, inp)
        return (inp.as_subclass(TensorText), targ.as_subclass(TensorText), *b[2:])

    def to_config(self) -> dict[str, Any]:
        return {
            "mask_id": self.mask_id,
            "vocab_size": self.vocab_size,
            "special_ids": self.special_ids,
            "p": self.p,
        }


def padding_waste(dl: DataLoader, n_batches: int | None = None) -> float:
    """The share of pad tokens in the first input of `dl`'s batches (one epoch, or `n_batches`)."""
    pads = total = 0
    for i, b in enumerate(dl):
        if n_batches is not None and i >= n_batches:
            break
        x = b[0]
        pads += int((x < 0).sum())
        total += x.numel()
    return pads / max(1, total)


def read_text_files(files: Sequence[Path], errors: str = "replace") -> list[str]:
    """The contents of text files as UTF-8. A file that is not valid UTF-8 is read with U+FFFD in place of
    its bad bytes (`errors="replace"`, with a warning naming the files) or refused (`errors="strict"`)."""
    out, bad = [], []
    for f in files:
        raw = Path(f).read_bytes()
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            if errors == "strict":
                raise UnicodeDecodeError(
                    e.encoding,
                    e.object,
                    e.start,
                    e.end,
                    f"{e.reason} in {str(f)!r} (not UTF-8). "
                    "help: convert it to UTF-8, or pass errors='replace'",
                ) from None
            bad.append(str(f))
            out.append(raw.decode("utf-8", errors="replace"))
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(
            f"text: {len(bad)} of {len(files)} files are not valid UTF-8 ({shown}); their bad bytes were "
            "replaced by U+FFFD.\nhelp: convert them to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            stacklevel=3,
        )
    return out


def _check_texts(texts: Sequence[Any], col: str, drop_missing: bool) -> list[int]:
    """Positions of the usable texts; refuses a column of numbers; drops or refuses missing ones."""
    missing = [i for i, t in enumerate(texts) if t is None or (isinstance(t, float) and math.isnan(t))]
    numbers = [
        i for i, t in enumerate(texts) if isinstance(t, int | float | np.number) and i not in set(missing)
    ]
    present = len(texts) - len(missing)
    if present and len(numbers) == present:
        raise TypeError(
            f"TextDataLoaders: the text column {col!r} holds numbers (e.g. {texts[numbers[0]]!r}), "
            "not texts.\n"
            "help: check text_col / --text-col (and that it is not swapped with the label column); to "
            "classify numbers as words, convert them first: df[col] = df[col].astype(str)"
        )
    if numbers:
        raise TypeError(
            f"TextDataLoaders: the text column {col!r} mixes texts and {len(numbers)} numbers, e.g. row "
            f"{numbers[0]} = {texts[numbers[0]]!r}.\nhelp: convert the column with df[col].astype(str)"
        )
    if missing and not drop_missing:
        raise ValueError(
            f"TextDataLoaders: {len(missing)} of {len(texts)} rows have no text in column {col!r} "
            f"(e.g. rows {missing[:5]}).\nhelp: drop them (df.dropna(subset=[col])), fill them "
            "(df[col].fillna('')), or pass drop_missing=True"
        )
    if missing:
        warnings.warn(
            f"TextDataLoaders: {len(missing)} of {len(texts)} rows have no text in column {col!r} (e.g. rows "
            f"{missing[:5]}) and were left out.",
            stacklevel=3,
        )
    if present == 0:
        raise ValueError(
            f"TextDataLoaders: the text column {col!r} has no text at all.\nhelp: check text_col"
        )
    drop = set(missing)
    return [i for i in range(len(texts)) if i not in drop]


class TextDataLoaders(DataLoaders):
    """DataLoaders of texts: `from_df`, `from_csv`, `from_folder`. Training batches come from buckets of
    texts of similar length (shuffled), validation batches by length; `show_batch` is a table.

    >>> dls = TextDataLoaders.from_df(df, "Review Text", "label", seed=42)  # doctest: +SKIP
    >>> dls.show_batch()                                                                     # doctest: +SKIP
    """

    @classmethod
    def from_datasets(
        cls,
        dsets: Datasets,
        blocks: Sequence[TransformBlock],
        bs: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        num_workers: int | None = 0,
        batch_tfms: Sequence[Any] = (),
    ) -> TextDataLoaders:
        """Length-bucketed loaders over Datasets whose first element is tokenized text."""
        tok = tokenizer_of(dsets)
        first = dsets.pipelines[0].tfms[0]
        getter = first if isinstance(first, Getter) else None

        def sizes(idxs: Sequence[int]) -> list[int]:
            if isinstance(dsets.items, Shards) and dsets.items.stored[0] is not None:  # ids in shards
                n = dsets.items.sizes(0)
                return [min(int(n[i]), tok.max_len) for i in idxs]
            raw = [get_item(dsets.items, i) for i in idxs]
            return tok.lengths([getter(r) for r in raw] if getter is not None else raw)

        tfms = block_tfms(blocks, "batch_tfms") + list(batch_tfms)
        n_train = len(dsets.splits[0])
        train = DataLoader(
            dsets.train,
            bs=bs,
            shuffle=True,
            drop_last=n_train > bs,
            num_workers=num_workers,
            device=device,
            batch_tfms=tfms,
            split_idx=0,
            seed=seed,
            dsets=dsets,
            sizes=sizes(dsets.splits[0]),
        )
        valid = DataLoader(
            dsets.valid,
            bs=bs * 2,
            shuffle=False,
            num_workers=num_workers,
            device=device,
            batch_tfms=tfms,
            split_idx=1,
            seed=seed,
            dsets=dsets,
            sizes=sizes(dsets.splits[1]),
        )
        n_inp = dsets.n_inp
        loss = next((b.loss for b in reversed(list(blocks)[n_inp:]) if b.loss is not None), None)
        return cls(train, valid, loss_func=loss)

    @classmethod
    def from_df(
        cls,
        df: pd.DataFrame,
        text_col: str | int = 0,
        label_col: str | int | None = 1,
        model: str | Path | None = None,
        tokenizer: Tokenizer | Tokenize | None = None,
        max_len: int | None = None,
        y_block: TransformBlock | Callable[[], TransformBlock] | None = None,
        label_delim: str | None = None,
        valid_pct: float = 0.2,
        valid_col: str | int | None = None,
        is_lm: bool = False,
        causal: bool | None = None,
        drop_missing: bool = True,
        bs: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        num_workers: int | None = 0,
    ) -> TextDataLoaders:
        """Texts and labels from DataFrame columns (names or positions).

        Labels: one class per value (`CategoryBlock`), several with `label_delim` (`MultiCategoryBlock`), or
        `y_block=RegressionBlock` for numbers. `is_lm`: no labels; batches for continued pretraining of a
        language model (`causal` next-token, else masked tokens; default: by the tokenizer, masked when it
        has a mask token). Rows without a text are left out with a warning (`drop_missing=False` refuses
        them); a column of numbers is refused.
        """
        reader = _DfItems(text_col, label_col, valid_col, is_lm, drop_missing, label_delim)
        items = reader(df)
        return cls._from_items(
            items,
            model,
            tokenizer,
            max_len,
            y_block,
            label_delim,
            valid_pct,
            valid_col is not None,
            is_lm,
            causal,
            bs,
            seed,
            device,
            num_workers,
        )

    @staticmethod
    def df_block(
        text_col: str | int = 0,
        label_col: str | int | None = 1,
        model: str | Path | None = None,
        tokenizer: Tokenizer | Tokenize | None = None,
        max_len: int | None = None,
        y_block: TransformBlock | Callable[[], TransformBlock] | None = None,
        label_delim: str | None = None,
        valid_pct: float = 0.2,
        valid_col: str | int | None = None,
        drop_missing: bool = True,
        seed: int | None = None,
    ) -> DataBlock:
        """The DataBlock `from_df` uses, reading a DataFrame: `write_shards(block, df, "shards/")` writes its
        texts as token ids for `from_shards` (same model or tokenizer and max_len)."""
        reader = _DfItems(text_col, label_col, valid_col, False, drop_missing, label_delim)
        return _text_block(
            model,
            tokenizer,
            max_len,
            y_block,
            label_delim,
            valid_pct,
            valid_col is not None,
            False,
            None,
            seed,
            get_items=reader,
        )[0]

    @classmethod
    def from_shards(
        cls,
        location: str | Path,
        model: str | Path | None = None,
        tokenizer: Tokenizer | Tokenize | None = None,
        max_len: int | None = None,
        y_block: TransformBlock | Callable[[], TransformBlock] | None = None,
        bs: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        num_workers: int | None = 0,
        cache: str | Path | None = None,
    ) -> TextDataLoaders:
        """Token ids and labels from shards (a folder or an http(s) URL) that `write_shards` wrote from a
        DataBlock of `TextBlock` (same model or tokenizer, same max_len) and a label block: the texts were
        tokenized once, when written; here nothing is tokenized or held in memory, and batches go by the
        lengths in the shards' index."""
        source = Shards(location, cache=cache)
        if y_block is None:  # as from_df: classes, several per text when they were written as lists
            y_block = MultiCategoryBlock if source.kinds[-1].startswith("list[") else CategoryBlock
        text_block = TextBlock(model, tokenizer=tokenizer, max_len=max_len)
        yb = y_block if isinstance(y_block, TransformBlock) else y_block()
        blocks = [text_block, yb]
        dsets = DataBlock(blocks=blocks, n_inp=1).datasets(source)
        _check_labels(dsets, blocks)
        return cls.from_datasets(dsets, blocks, bs=bs, seed=seed, device=device, num_workers=num_workers)

    @classmethod
    def from_csv(
        cls,
        csv: str | Path,
        text_col: str | int = 0,
        label_col: str | int | None = 1,
        model: str | Path | None = None,
        tokenizer: Tokenizer | Tokenize | None = None,
        max_len: int | None = None,
        y_block: TransformBlock | Callable[[], TransformBlock] | None = None,
        label_delim: str | None = None,
        valid_pct: float = 0.2,
        valid_col: str | int | None = None,
        is_lm: bool = False,
        causal: bool | None = None,
        drop_missing: bool = True,
        bs: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        num_workers: int | None = 0,
    ) -> TextDataLoaders:
        """`from_df` over a CSV file (read as UTF-8; a parquet file works too)."""
        import pandas as pd

        path = Path(csv)
        if not path.is_file():
            raise FileNotFoundError(f"TextDataLoaders: {str(path)!r} does not exist.\nhelp: check the path")
        df = pd.read_parquet(path) if path.suffix in (".parquet", ".brotli") else pd.read_csv(path)
        return cls.from_df(
            df,
            text_col=text_col,
            label_col=label_col,
            model=model,
            tokenizer=tokenizer,
            max_len=max_len,
            y_block=y_block,
            label_delim=label_delim,
            valid_pct=valid_pct,
            valid_col=valid_col,
            is_lm=is_lm,
            causal=causal,
            drop_missing=drop_missing,
            bs=bs,
            seed=seed,
            device=device,
            num_workers=num_workers,
        )

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        model: str | Path | None = None,
        tokenizer: Tokenizer | Tokenize | None = None,
        max_len: int | None = None,
        valid_pct: float = 0.2,
        train: str = "train",
        valid: str = "valid",
        extensions: Sequence[str] = (".txt",),
        encoding_errors: str = "replace",
        is_lm: bool = False,
        causal: bool | None = None,
        bs: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        num_workers: int | None = 0,
    ) -> TextDataLoaders:
        """Text files in one folder per class (`path/pos/*.txt`, `path/neg/*.txt`), or under `train/` and
        `valid/` (`test/` too, as IMDb is laid out: then `valid="test"`). Files that are not UTF-8 are read
        with U+FFFD for their bad bytes and named in a warning (`encoding_errors="strict"` refuses them)."""
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"TextDataLoaders: {str(root)!r} is not a folder.\nhelp: check the path")
        exts = {e.lower() for e in extensions}
        split = (root / train).is_dir() and (root / valid).is_dir()
        tops = [(root / train, False), (root / valid, True)] if split else [(root, False)]
        files: list[tuple[Path, str, bool]] = []
        for top, is_valid in tops:
            for d in sorted(p for p in top.iterdir() if p.is_dir()):
                files += [
                    (f, d.name, is_valid)
                    for f in sorted(d.rglob("*"))
                    if f.suffix.lower() in exts and f.is_file()
                ]
        if not files:
            raise ValueError(
                f"TextDataLoaders: no {'/'.join(sorted(exts))} files in class folders under {str(root)!r}.\n"
                "help: lay the texts out one folder per class (path/pos/1.txt, path/neg/2.txt), "
                "optionally under train/ and valid/"
            )
        texts = read_text_files([f for f, _, _ in files], errors=encoding_errors)
        items = [(t, lbl, v) for t, (_, lbl, v) in zip(texts, files, strict=True)]
        return cls._from_items(
            items,
            model,
            tokenizer,
            max_len,
            None,
            None,
            valid_pct,
            split,
            is_lm,
            causal,
            bs,
            seed,
            device,
            num_workers,
        )

    @classmethod
    def _from_items(
        cls,
        items: list[tuple[str, Any, bool]],
        model: str | Path | None,
        tokenizer: Tokenizer | Tokenize | None,
        max_len: int | None,
        y_block: TransformBlock | Callable[[], TransformBlock] | None,
        label_delim: str | None,
        valid_pct: float,
        has_split: bool,
        is_lm: bool,
        causal: bool | None,
        bs: int,
        seed: int | None,
        device: torch.device | str | None,
        num_workers: int | None,
    ) -> TextDataLoaders:
        dblock, blocks, batch_tfms = _text_block(
            model, tokenizer, max_len, y_block, label_delim, valid_pct, has_split, is_lm, causal, seed
        )
        dsets = dblock.datasets(items)
        if not is_lm:
            _check_labels(dsets, blocks)
        return cls.from_datasets(
            dsets, blocks, bs=bs, seed=seed, device=device, num_workers=num_workers, batch_tfms=batch_tfms
        )


def _text_block(
    model: str | Path | None,
    tokenizer: Tokenizer | Tokenize | None,
    max_len: int | None,
    y_block: TransformBlock | Callable[[], TransformBlock] | None,
    label_delim: str | None,
    valid_pct: float,
    has_split: bool,
    is_lm: bool,
    causal: bool | None,
    seed: int | None,
    get_items: Callable[[Any], Any] | None = None,
) -> tuple[DataBlock, list[TransformBlock], list[Any]]:
    """The DataBlock of (text, label, is_valid) items, its blocks and its batch transforms."""
    text_block = TextBlock(model, tokenizer=tokenizer, max_len=max_len)
    tok = text_block.type_tfms[0]
    assert isinstance(tok, Tokenize)
    splitter: Any
    if has_split:

        def splitter(its: Sequence[Any]) -> tuple[list[int], list[int]]:
            return [i for i, it in enumerate(its) if not it[2]], [i for i, it in enumerate(its) if it[2]]

    else:
        splitter = RandomSplitter(valid_pct, seed=seed if seed is not None else 42)
    get_text = operator.itemgetter(0)
    batch_tfms: list[Any] = []
    if is_lm:
        causal = _is_causal(tok) if causal is None else causal
        blocks: list[TransformBlock] = [text_block, TransformBlock(type_tfms=[tok])]
        blocks[1].loss = lambda: TextLMLoss(shift=bool(causal))
        getters: list[Any] = [get_text, get_text]
        if not causal:
            batch_tfms.append(_mask_tokens(tok))
    else:
        if y_block is None:
            y_block = MultiCategoryBlock if label_delim is not None else CategoryBlock
        yb = y_block if isinstance(y_block, TransformBlock) else y_block()
        blocks = [text_block, yb]
        if label_delim is not None:
            getters = [get_text, _SplitLabels(label_delim)]
        else:
            getters = [get_text, operator.itemgetter(1)]
    dblock = DataBlock(blocks=blocks, getters=getters, splitter=splitter, n_inp=1, get_items=get_items)
    return dblock, blocks, batch_tfms


class _DfItems:
    """get_items of a DataFrame of texts: (text, label, is_valid) per usable row, the columns checked."""

    def __init__(
        self,
        text_col: str | int,
        label_col: str | int | None,
        valid_col: str | int | None,
        is_lm: bool,
        drop_missing: bool,
        label_delim: str | None,
    ) -> None:
        self.text_col, self.label_col, self.valid_col = text_col, None if is_lm else label_col, valid_col
        self.drop_missing, self.label_delim = drop_missing, label_delim

    def __call__(self, df: pd.DataFrame) -> list[tuple[str, Any, bool]]:
        cols = list(df.columns)

        def name(c: str | int | None) -> Any:
            if c is None:
                return None
            if isinstance(c, int) and c not in cols:
                if not 0 <= c < len(cols):
                    raise IndexError(
                        f"TextDataLoaders: column position {c} outside the table's {len(cols)} columns"
                    )
                return cols[c]
            if c not in cols:
                raise KeyError(
                    f"TextDataLoaders: no column {c!r}; the table has {cols[:20]}.\n"
                    "help: pass text_col= / label_col= (or --text-col / --label-col) naming one of them"
                )
            return c

        tcol, lcol, vcol = name(self.text_col), name(self.label_col), name(self.valid_col)
        texts = df[tcol].tolist()
        keep = _check_texts(texts, str(tcol), self.drop_missing)
        labels = df[lcol].tolist() if lcol is not None else None
        if labels is not None:
            empty = [
                i
                for i in keep
                if labels[i] is None or (isinstance(labels[i], float) and math.isnan(labels[i]))
            ]
            if empty and self.label_delim is None:
                raise ValueError(
                    f"TextDataLoaders: {len(empty)} rows have no label in column {lcol!r} "
                    f"(e.g. rows {empty[:5]}).\n"
                    "help: drop them (df.dropna(subset=[label_col])) or fill them"
                )
        valid_flags = [bool(v) for v in df[vcol].tolist()] if vcol is not None else None
        return [
            (texts[i], labels[i] if labels is not None else None, valid_flags[i] if valid_flags else False)
            for i in keep
        ]


class _SplitLabels:
    """Reads an item's labels joined by `delim` (no labels for an empty cell)."""

    def __init__(self, delim: str) -> None:
        self.delim = delim

    def __call__(self, item: tuple[Any, ...]) -> list[str]:
        v = item[1]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return []
        return [lbl for lbl in str(v).split(self.delim) if lbl]


def _is_causal(tok: Tokenize) -> bool:
    return tok.token_id("[MASK]") is None and tok.token_id("<mask>") is None


def _mask_tokens(tok: Tokenize) -> MaskTokens:
    mask_id = tok.token_id("[MASK]")
    if mask_id is None:
        mask_id = tok.token_id("<mask>")
    if mask_id is None:
        raise ValueError(
            "TextDataLoaders: a masked language model needs a mask token, and this tokenizer has none.\n"
            "help: pass causal=True (next-token prediction) for a GPT-style tokenizer"
        )
    specials = [
        i
        for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "<s>", "</s>", "<pad>", "<unk>")
        if (i := tok.token_id(t)) is not None
    ]
    return MaskTokens(mask_id=mask_id, vocab_size=tok.vocab_size, special_ids=specials)


def _check_labels(dsets: Datasets, blocks: Sequence[TransformBlock]) -> None:
    """A classifier needs two classes: say so at construction, not at the first fit."""
    for t in dsets.pipelines[-1].tfms:
        vocab = getattr(t, "vocab", None)
        if vocab is not None and type(t).__name__ == "Categorize" and len(vocab) < 2:
            raise ValueError(
                f"TextDataLoaders: the labels hold a single class {list(vocab)!r}; a classifier needs "
                "at least two.\nhelp: check label_col (--label-col) points at the labels, or build the "
                "classes first (e.g. df['label'] = df.Rating >= 4)"
            )
