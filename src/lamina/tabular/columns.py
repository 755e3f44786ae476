"""Reading a table and deciding what each column is: categorical, continuous, a date to expand, or unusable.

The decisions are made once, on the whole frame before the split, and kept as a `ColumnPlan` that
`TabularDataLoaders.summary()` prints, so a user sees (and can override) every guess.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ColumnPlan",
    "add_datepart",
    "as_pandas",
    "date_parts",
    "date_prefix",
    "plan_columns",
    "read_table",
]

# an integer column with at most this many distinct values is taken as categorical
MAX_CARD = 20
# a table wider than this is refused: each column costs Python work per frame
MAX_COLUMNS = 100_000


def as_pandas(data: Any, who: str = "tabular") -> pd.DataFrame:
    """A pandas DataFrame from a pandas or polars frame, a pandas/polars row, a dict or a list of dicts."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame().T.infer_objects()
    mod = type(data).__module__.split(".")[0]
    if mod == "polars":
        return data.to_pandas() if hasattr(data, "to_pandas") else pd.DataFrame([dict(data)])
    if isinstance(data, dict):
        return pd.DataFrame([data])
    if isinstance(data, list | tuple) and all(isinstance(r, dict) for r in data):
        return pd.DataFrame(list(data))
    raise TypeError(
        f"{who}: expected a DataFrame (pandas or polars), a row or a list of dicts, "
        f"got {type(data).__name__}.\n"
        "help: e.g. pd.read_csv(path), or a dict {column: value} for one row"
    )


# a file larger than this is refused before it is read (the whole table is loaded into memory)
MAX_TABLE_BYTES = 4 * 2**30


def read_table(path: str | Path, max_bytes: int = MAX_TABLE_BYTES) -> pd.DataFrame:
    """A CSV or parquet file as a DataFrame (by its suffix); refused above `max_bytes`, before reading."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tabular: {str(path)!r} does not exist.\nhelp: check the path")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"tabular: {str(path)!r} is {size} bytes, over max_bytes={max_bytes}; the whole table would be "
            "loaded into memory.\nhelp: pass a larger max_bytes if the machine has the memory"
        )
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", low_memory=False)
    raise ValueError(
        f"tabular: cannot read {path.name!r}: expected a .csv, .tsv or .parquet file.\n"
        "help: load it with pandas yourself and use TabularDataLoaders.from_df"
    )


def date_parts(values: Any, prefix: str) -> dict[str, np.ndarray]:
    """A date column's parts as float arrays (NaN where the date is missing or unreadable): year, month,
    ISO week, day, weekday, day of year, month end/start flags (1/0) and seconds since 1970."""
    dates = pd.to_datetime(pd.Series(values), errors="coerce")
    missing = dates.isna().to_numpy()

    def num(x: Any) -> np.ndarray:
        out = pd.Series(x).astype("float64").to_numpy(copy=True)
        out[missing] = np.nan
        return out

    return {
        f"{prefix}Year": num(dates.dt.year),
        f"{prefix}Month": num(dates.dt.month),
        f"{prefix}Week": num(dates.dt.isocalendar().week.astype("Float64")),
        f"{prefix}Day": num(dates.dt.day),
        f"{prefix}Dayofweek": num(dates.dt.day_of_week),
        f"{prefix}Dayofyear": num(dates.dt.day_of_year),
        f"{prefix}Is_month_end": num(dates.dt.is_month_end),
        f"{prefix}Is_month_start": num(dates.dt.is_month_start),
        f"{prefix}Elapsed": num((dates - pd.Timestamp("1970-01-01")).dt.total_seconds()),
    }


def date_prefix(col: str) -> str:
    """The name the parts of date column `col` start with ('saleDate' -> 'sale')."""
    return col.removesuffix("Date").removesuffix("date") or col


def add_datepart(df: pd.DataFrame, col: str, drop: bool = True) -> pd.DataFrame:
    """Expand a date column into numbers a model can use (see `date_parts`); the original is dropped by
    default. `TabularDataLoaders` does this by itself for datetime columns (the `DateParts` proc)."""
    out = df.copy()
    for name, vals in date_parts(df[col], date_prefix(col)).items():
        out[name] = vals
    return out.drop(columns=[col]) if drop else out


@dataclass
class ColumnPlan:
    """What each column is: the model's categorical and continuous inputs, the targets, and the columns
    left out, with the reason for each guess."""

    cat_names: list[str]
    cont_names: list[str]
    y_names: list[str]
    date_names: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"targets ({len(self.y_names)}): {', '.join(self.y_names)}",
            f"categorical ({len(self.cat_names)}): {_few(self.cat_names)}",
            f"continuous ({len(self.cont_names)}): {_few(self.cont_names)}",
        ]
        if self.date_names:
            lines.append(f"dates, expanded into parts ({len(self.date_names)}): {_few(self.date_names)}")
        lines += [f"  left out {c!r}: {why}" for c, why in self.dropped.items()]
        lines += [f"  note {c!r}: {why}" for c, why in self.notes.items()]
        return "\n".join(lines)


def _few(names: list[str], n: int = 12) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _is_cat_dtype(col: pd.Series) -> bool:
    return bool(
        pd.api.types.is_bool_dtype(col)
        or pd.api.types.is_object_dtype(col)
        or isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(col)
    )


def plan_columns(
    df: pd.DataFrame,
    y_names: list[str],
    cat_names: list[str] | None = None,
    cont_names: list[str] | None = None,
    max_card: int = MAX_CARD,
) -> ColumnPlan:
    """Decide each column's kind: given names are kept as given (and checked); the rest are inferred."""
    cols = [str(c) for c in df.columns]
    dupes = sorted(c for c, n in Counter(cols).items() if n > 1)
    if dupes:
        raise ValueError(
            f"tabular: duplicate column names {dupes[:10]}.\n"
            "help: rename them so that each column has its own name"
        )
    if len(cols) > MAX_COLUMNS:
        raise ValueError(
            f"tabular: {len(cols)} columns, more than {MAX_COLUMNS}.\nhelp: select the columns to use"
        )
    missing = [c for c in [*y_names, *(cat_names or []), *(cont_names or [])] if c not in df.columns]
    if missing:
        raise KeyError(
            f"tabular: column(s) {missing} not in the table; it has {cols[:15]}"
            f"{' ...' if len(cols) > 15 else ''}.\n"
            "help: check the spelling (names are case-sensitive)"
        )
    plan = ColumnPlan([], [], list(y_names))
    given = set(cat_names or []) | set(cont_names or [])
    for c in cont_names or []:
        _check_numeric(df[c], c)
    for c in cols:
        if c in y_names:
            continue
        col = df[c]
        if col.isna().all():
            plan.dropped[c] = "every value is missing"
            continue
        if c in given:
            (plan.cat_names if cat_names and c in cat_names else plan.cont_names).append(c)
            continue
        if cat_names is not None and cont_names is not None:
            plan.dropped[c] = "not in cat_names or cont_names"
            continue
        if pd.api.types.is_datetime64_any_dtype(col):
            plan.date_names.append(c)
            continue
        n_unique = col.nunique(dropna=True)
        if n_unique <= 1:
            plan.notes[c] = "constant: it carries no information (kept)"
        if _is_cat_dtype(col):
            if cat_names is None:
                plan.cat_names.append(c)
                if n_unique > 0.5 * len(col) and n_unique > 100:
                    plan.notes[c] = (
                        f"{n_unique} distinct values: looks like an identifier (kept as a category)"
                    )
            else:
                plan.dropped[c] = "not in cat_names"
        elif pd.api.types.is_integer_dtype(col) and n_unique <= max_card and cat_names is None:
            plan.cat_names.append(c)
        elif cont_names is None:
            plan.cont_names.append(c)
        elif cat_names is None and pd.api.types.is_integer_dtype(col):
            plan.cat_names.append(c)
        else:
            plan.dropped[c] = "not in cont_names"
    if not plan.cat_names and not plan.cont_names and not plan.date_names:
        raise ValueError(
            f"tabular: no input column left besides the target(s) {y_names}.\n"
            "help: the table needs at least one column to predict from"
        )
    return plan


def _check_numeric(col: pd.Series, name: str) -> None:
    """A continuous column must hold numbers (or be missing): name the first values that are not."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return
    as_num = pd.to_numeric(col, errors="coerce")
    bad = col[as_num.isna() & col.notna()]
    if len(bad):
        raise ValueError(
            f"tabular: continuous column {name!r} holds {len(bad)} value(s) that are not numbers, "
            "e.g. "
            f"{bad.iloc[0]!r} (row {bad.index[0]!r}).\n"
            "help: clean those values (or make them NaN: they are then filled), or list it in cat_names"
        )
