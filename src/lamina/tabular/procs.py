"""Table preprocessing as typed Transforms: learned once on the training rows, applied to whole frames.

Each proc `encodes` a pandas DataFrame (vectorised, column by column: a frame of a million rows is one call)
and `decodes` the model-side tensors back to readable values for display. Their state is plain JSON
(`to_config`), so an export carries it without pickle.

- `FillMissing`: a continuous column's missing values become the training median, and a `<col>_na`
  indicator column (a category) says which were missing; only columns with missing training values get one.
- `Categorify`: each categorical column's values -> codes 1..n by a vocabulary learned on training rows;
  code 0 is reserved for missing values and values never seen in training (documented, never an error).
- `Normalize`: continuous columns -> (x - mean) / std with training statistics (std 0 -> 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from lamina.core import TensorBase, Transform, decodes, encodes, register_transform

__all__ = [
    "NA_LABEL",
    "Categorify",
    "FillMissing",
    "Normalize",
    "TabularProc",
    "TabularRow",
    "TensorCat",
    "TensorCont",
    "as_cat_tensor",
    "as_cont_tensor",
]

# what code 0 decodes to: a missing value, or one never seen in training
NA_LABEL = "#na#"
# a vocabulary this long is a column of identifiers, not categories (and would not fit an export)
_MAX_VOCAB = 1_000_000


class TensorCat(TensorBase):
    """A row's (or batch's) categorical codes: int64, one per categorical column; 0 = missing or unseen."""


class TensorCont(TensorBase):
    """A row's (or batch's) continuous values, normalized: float32, one per continuous column."""


class TabularRow(dict[str, Any]):
    """Decoded columns of one row (name -> readable value); several rows show as one DataFrame."""

    @classmethod
    def show_many(cls, items: Sequence[tuple[Any, ...]], titles: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows of decoded items as a table: their columns, then each target (and a title column)."""
        rows = []
        for k, item in enumerate(items):
            row: dict[str, Any] = {}
            for e in item:
                if isinstance(e, dict):
                    row.update(e)
                else:
                    row[f"target{'' if 'target' not in row else len(row)}"] = str(e)
            if titles is not None:
                row["prediction"] = titles[k].removeprefix("pred: ")
            rows.append(row)
        return pd.DataFrame(rows)


class TabularProc(Transform):
    """A preprocessing step over named columns, set up on the training frame (`setup(df)`)."""

    order = 0

    def setup(self, items: Any) -> None:
        """Learn the step's state from the training frame (`items` is a pandas DataFrame)."""

    def columns(self, cat_names: list[str], cont_names: list[str]) -> tuple[list[str], list[str]]:
        """The categorical and continuous columns after this step (a step may add some)."""
        return cat_names, cont_names

    def to_config(self) -> dict[str, Any]:
        raise NotImplementedError


def _names(names: Any, what: str) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what}: expected a list of column names, got {type(names).__name__}")
    return list(names)


def _check_columns(df: pd.DataFrame, names: Sequence[str], who: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise KeyError(
            f"{who}: column(s) {missing[:10]} missing from the table (it has {list(df.columns)[:12]}...).\n"
            "help: give every column the model was trained on; a value may be missing (NaN), a column may not"
        )


@register_transform("tabular.FillMissing")
class FillMissing(TabularProc):
    """Missing continuous values -> the training median, plus a `<col>_na` indicator category."""

    def __init__(
        self, cont_names: list[str], fill: dict[str, float] | None = None, na_names: list[str] | None = None
    ):
        super().__init__()
        self.cont_names = _names(cont_names, "FillMissing")
        self.fill: dict[str, float] = dict(fill or {})
        self.na_names: list[str] = _names(na_names or [], "FillMissing")

    def setup(self, items: Any) -> None:
        df = items
        for c in self.cont_names:
            col = pd.to_numeric(df[c], errors="coerce")
            med = col.median()
            self.fill[c] = float(med) if not (isinstance(med, float) and math.isnan(med)) else 0.0
        self.na_names = [c for c in self.cont_names if df[c].isna().any()]

    def columns(self, cat_names: list[str], cont_names: list[str]) -> tuple[list[str], list[str]]:
        return cat_names + [f"{c}_na" for c in self.na_names], cont_names

    @encodes
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        _check_columns(df, self.cont_names, "FillMissing")
        out = df.copy()
        for c in self.na_names:
            out[f"{c}_na"] = df[c].isna()
        for c in self.cont_names:
            out[c] = df[c].fillna(self.fill.get(c, 0.0))
        return out

    def to_config(self) -> dict[str, Any]:
        return {"cont_names": self.cont_names, "fill": self.fill, "na_names": self.na_names}


@register_transform("tabular.Categorify")
class Categorify(TabularProc):
    """Categorical columns -> int codes by a vocabulary learned on the training rows (0: missing/unseen)."""

    def __init__(self, cat_names: list[str], vocabs: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.cat_names = _names(cat_names, "Categorify")
        self.vocabs: dict[str, list[str]] = {k: list(v) for k, v in (vocabs or {}).items()}
        for k, v in self.vocabs.items():
            if not isinstance(v, list) or len(v) > _MAX_VOCAB or not all(isinstance(s, str) for s in v):
                raise TypeError(
                    f"Categorify: the vocabulary of {k!r} must be a list of at most {_MAX_VOCAB} strings"
                )
        self._maps = {k: {s: i + 1 for i, s in enumerate(v)} for k, v in self.vocabs.items()}

    def setup(self, items: Any) -> None:
        df = items
        for c in self.cat_names:
            values = _as_labels(df[c]).dropna().unique().tolist()
            self.vocabs[c] = sorted(values)
        self._maps = {k: {s: i + 1 for i, s in enumerate(v)} for k, v in self.vocabs.items()}

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows per column: the vocabulary plus the reserved code 0."""
        return [len(self.vocabs[c]) + 1 for c in self.cat_names]

    @encodes
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        _check_columns(df, self.cat_names, "Categorify")
        out = df.copy()
        for c in self.cat_names:
            out[c] = _as_labels(df[c]).map(self._maps[c]).fillna(0).astype(np.int64)
        return out

    @decodes
    def labels(self, x: TensorCat) -> TabularRow:
        codes = x.tolist()
        return TabularRow(
            (c, self.vocabs[c][k - 1] if 0 < k <= len(self.vocabs[c]) else NA_LABEL)
            for c, k in zip(self.cat_names, codes, strict=True)
        )

    def to_config(self) -> dict[str, Any]:
        return {"cat_names": self.cat_names, "vocabs": self.vocabs}


def _as_labels(col: pd.Series) -> pd.Series:
    """A column's values as strings (what the vocabulary holds), missing values kept missing."""
    if pd.api.types.is_bool_dtype(col) or col.dtype == object:
        return col.map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return col.astype("string").astype(object).where(col.notna(), None)


@register_transform("tabular.Normalize")
class Normalize(TabularProc):
    """Continuous columns -> (x - mean) / std with the training statistics; decodes back to the values."""

    order = 1

    def __init__(
        self,
        cont_names: list[str],
        means: dict[str, float] | None = None,
        stds: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.cont_names = _names(cont_names, "Normalize")
        self.means: dict[str, float] = {k: float(v) for k, v in (means or {}).items()}
        self.stds: dict[str, float] = {k: float(v) for k, v in (stds or {}).items()}

    def setup(self, items: Any) -> None:
        df = items
        for c in self.cont_names:
            col = pd.to_numeric(df[c], errors="coerce").astype(np.float64)
            mean, std = float(col.mean()), float(col.std(ddof=0))
            self.means[c] = 0.0 if math.isnan(mean) else mean
            self.stds[c] = std if std > 1e-12 and not math.isnan(std) else 1.0

    @encodes
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        _check_columns(df, self.cont_names, "Normalize")
        out = df.copy()
        for c in self.cont_names:
            out[c] = (pd.to_numeric(df[c], errors="coerce").astype(np.float64) - self.means[c]) / self.stds[c]
        return out

    @decodes
    def values(self, x: TensorCont) -> TabularRow:
        vals = x.tolist()
        return TabularRow(
            (c, round(v * self.stds[c] + self.means[c], 6))
            for c, v in zip(self.cont_names, vals, strict=True)
        )

    def to_config(self) -> dict[str, Any]:
        return {"cont_names": self.cont_names, "means": self.means, "stds": self.stds}


def as_cat_tensor(df: pd.DataFrame, cat_names: Sequence[str]) -> torch.Tensor:
    """The categorical codes of a processed frame as one contiguous (rows, columns) int64 tensor."""
    if not cat_names:
        return torch.zeros((len(df), 0), dtype=torch.int64)
    return torch.tensor(df[list(cat_names)].to_numpy(dtype=np.int64))


def as_cont_tensor(df: pd.DataFrame, cont_names: Sequence[str]) -> torch.Tensor:
    """The continuous values of a processed frame as one contiguous (rows, columns) float32 tensor."""
    if not cont_names:
        return torch.zeros((len(df), 0), dtype=torch.float32)
    return torch.tensor(df[list(cont_names)].to_numpy(dtype=np.float32))
