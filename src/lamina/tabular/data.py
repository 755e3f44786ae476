"""TabularDataLoaders: a table in, whole batches of (categorical codes, continuous values, target) out.

The frame is processed once (procs set up on the training rows) into contiguous tensors; a batch is then
one index into them (`lamina.data.BatchedItems`), not a collation of rows: the loader runs at the speed of a
plain PyTorch loop over the same tensors. Decoding goes back through the same procs, so `show_batch` and
`show_results` are tables of the original values.

>>> dls = TabularDataLoaders.from_df(df, y_names="income", valid_pct=0.2, seed=42)   # doctest: +SKIP
>>> dls.summary()                                                                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lamina.core import (
    Category,
    MultiCategory,
    Pipeline,
    TensorCategory,
    TensorMultiCategory,
    Transform,
    decodes,
    encodes,
    lookup_transform,
    register_loaders,
    register_transform,
    registered_name,
)
from lamina.data import (
    BCEWithLogitsLossFlat,
    ColSplitter,
    CrossEntropyLossFlat,
    DataLoader,
    DataLoaders,
    MSELossFlat,
)
from lamina.data.blocks import TensorRegression
from lamina.tabular.columns import MAX_TABLE_BYTES, ColumnPlan, as_pandas, plan_columns, read_table
from lamina.tabular.procs import (
    Categorify,
    Columns,
    DateParts,
    FillMissing,
    QuantileNormalize,
    TabularProc,
    TabularRow,
    TensorCat,
    TensorCont,
    ValueCodes,
    as_cat_tensor,
    as_cont_tensor,
)

__all__ = ["TabularDataLoaders", "TabularTable", "TabularTarget"]

_KINDS = ("category", "regression", "multilabel")
_MAX_PROCS = 32


@register_transform("tabular.TabularTarget")
class TabularTarget(Transform):
    """The target column(s) -> a tensor (class index, values or multi-hot), and back to labels or numbers.

    `kind`: "category" (one column of labels), "regression" (one or more number columns) or "multilabel"
    (several 0/1 columns, one per label). Inferred from the training targets when None."""

    def __init__(self, y_names: list[str], kind: str | None = None, vocab: list[str] | None = None) -> None:
        super().__init__()
        if kind is not None and kind not in _KINDS:
            raise ValueError(f"TabularTarget: kind must be one of {_KINDS}, got {kind!r}")
        if not isinstance(y_names, list) or not y_names or not all(isinstance(n, str) for n in y_names):
            raise TypeError("TabularTarget: y_names must be a non-empty list of column names")
        self.y_names, self.kind = list(y_names), kind
        self.vocab: list[str] | None = list(vocab) if vocab is not None else None
        if self.vocab is not None and not all(isinstance(v, str) for v in self.vocab):
            raise TypeError("TabularTarget: the vocabulary must be a list of strings")
        self._map = {v: i for i, v in enumerate(self.vocab or [])}

    @property
    def c(self) -> int:
        """The number of model outputs the target needs."""
        return len(self.vocab or []) if self.kind == "category" else len(self.y_names)

    def setup(self, items: Any) -> None:
        df = _target_frame(items, self.y_names)
        _check_no_missing(df, self.y_names)
        if self.kind is None:
            self.kind = _infer_kind(df, self.y_names)
        if self.kind == "category":
            if len(self.y_names) != 1:
                raise ValueError(
                    f"TabularTarget: a category target is one column, got {self.y_names}.\n"
                    "help: several 0/1 columns are a multi-label target: y_block='multilabel'"
                )
            labels = sorted(df[self.y_names[0]].astype(str).unique().tolist())
            if len(labels) < 2:
                raise ValueError(
                    f"TabularTarget: the target {self.y_names[0]!r} has a single class {labels} in the "
                    "training rows; there is nothing to learn.\nhelp: check the target column and the split"
                )
            self.vocab = labels
            self._map = {v: i for i, v in enumerate(labels)}
        elif self.kind == "multilabel":
            self.vocab = list(self.y_names)
        else:
            for c in self.y_names:
                _check_number_target(df[c], c)

    @encodes
    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        return df  # the target stays a column until `tensor` (a frame can be decoded for display)

    def tensor(self, items: pd.DataFrame | Columns) -> torch.Tensor:
        """The target of every row: int64 class indices (N,), or float32 (N, c) values / multi-hot."""
        df = _target_frame(items, self.y_names)
        _check_no_missing(df, self.y_names)
        if self.kind == "category":
            codes = df[self.y_names[0]].astype(str).map(self._map)
            unseen = df[self.y_names[0]][codes.isna()]
            if len(unseen):
                raise ValueError(
                    f"TabularTarget: {len(unseen)} row(s) have a label never seen in training, e.g. "
                    f"{unseen.iloc[0]!r} (training labels: {(self.vocab or [])[:10]}).\n"
                    "help: make sure every class has training rows (a stratified split), or drop those rows"
                )
            return torch.tensor(codes.to_numpy(dtype=np.int64))
        for c in self.y_names:
            _check_number_target(df[c], c)
        vals = df[self.y_names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
        return torch.tensor(vals)

    @property
    def type(self) -> type:
        """The semantic type of one target."""
        return {"category": TensorCategory, "multilabel": TensorMultiCategory}.get(
            self.kind or "", TensorRegression
        )

    @decodes
    def label(self, o: TensorCategory) -> Category:
        return Category(str((self.vocab or [])[int(o)]))

    @decodes
    def labels(self, o: TensorMultiCategory) -> MultiCategory:
        return MultiCategory([str((self.vocab or [])[i]) for i in torch.nonzero(o > 0.5).flatten().tolist()])

    @decodes
    def number(self, o: TensorRegression) -> TabularRow:
        vals = o.reshape(-1).tolist()
        return TabularRow((n, round(float(v), 6)) for n, v in zip(self.y_names, vals, strict=True))

    def loss_factory(self) -> Callable[[], torch.nn.Module]:
        """The loss this target trains with: cross-entropy, binary cross-entropy per label, or MSE."""
        return {"category": CrossEntropyLossFlat, "multilabel": BCEWithLogitsLossFlat}.get(
            self.kind or "", MSELossFlat
        )

    def to_config(self) -> dict[str, Any]:
        return {"y_names": self.y_names, "kind": self.kind, "vocab": self.vocab}


def _target_frame(items: pd.DataFrame | Columns, y_names: list[str]) -> pd.DataFrame:
    """Just the target columns, as a DataFrame (from a frame or processed columns)."""
    if isinstance(items, pd.DataFrame):
        return items
    missing = [c for c in y_names if c not in items]
    if missing:
        raise KeyError(f"tabular: the target column(s) {missing} are not in the table.\nhelp: check y_names")
    return pd.DataFrame({c: items[c] for c in y_names})


def _infer_kind(df: pd.DataFrame, y_names: list[str]) -> str:
    if len(y_names) > 1:
        binary = all(set(pd.unique(df[c].astype(float))) <= {0.0, 1.0} for c in y_names if _numeric(df[c]))
        all_num = all(_numeric(df[c]) for c in y_names)
        return "multilabel" if all_num and binary else "regression"
    col = df[y_names[0]]
    return "regression" if pd.api.types.is_float_dtype(col) else "category"


def _numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def _check_no_missing(df: pd.DataFrame, y_names: list[str]) -> None:
    for c in y_names:
        if c not in df.columns:
            raise KeyError(f"tabular: the target column {c!r} is not in the table.\nhelp: check y_names")
        na = df[c].isna()
        if na.any():
            rows = df.index[na][:5].tolist()
            raise ValueError(
                f"tabular: the target column {c!r} has {int(na.sum())} missing value(s), e.g. at rows "
                f"{rows}.\n"
                "help: drop those rows (df.dropna(subset=[...])) or fill them; a model cannot learn from a "
                "missing target"
            )


def _check_number_target(col: pd.Series, name: str) -> None:
    as_num = pd.to_numeric(col, errors="coerce")
    bad = col[as_num.isna() & col.notna()]
    if len(bad):
        raise ValueError(
            f"tabular: the regression target {name!r} holds {len(bad)} value(s) that are not numbers, e.g. "
            f"{bad.iloc[0]!r}.\nhelp: clean the column, or use y_block='category' for labels"
        )


class TabularTable(Sequence[tuple[Any, ...]]):
    """A processed table as contiguous tensors: rows one at a time (typed, for display and types) or a
    whole batch from an index tensor (plain tensors, for training): a `lamina.data.BatchedItems`."""

    def __init__(
        self, cats: torch.Tensor, conts: torch.Tensor, ys: torch.Tensor | None, y_type: type
    ) -> None:
        self.cats, self.conts, self.ys, self.y_type = cats, conts, ys, y_type

    def __len__(self) -> int:
        return len(self.cats)

    def __getitem__(self, i: Any) -> tuple[Any, ...]:
        row = (self.cats[i].as_subclass(TensorCat), self.conts[i].as_subclass(TensorCont))
        return row if self.ys is None else (*row, self.ys[i].as_subclass(self.y_type))

    def get_batch(self, idxs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = (self.cats[idxs], self.conts[idxs])
        return b if self.ys is None else (*b, self.ys[idxs])


class _Processing:
    """The procs and the target, set up on the training rows; frames in, tables out."""

    def __init__(
        self, procs: list[TabularProc], target: TabularTarget, cat_names: list[str], cont_names: list[str]
    ):
        self.procs, self.target, self.cat_names, self.cont_names = procs, target, cat_names, cont_names

    def columns(self, cols: Columns) -> Columns:
        for p in self.procs:
            cols = p(cols)
        return cols

    def table(self, cols: Columns, with_labels: bool) -> TabularTable:
        out = self.columns(cols)
        ys = self.target.tensor(cols) if with_labels else None
        n = cols.n_rows
        return TabularTable(
            as_cat_tensor(out, self.cat_names, n),
            as_cont_tensor(out, self.cont_names, n),
            ys,
            self.target.type,
        )

    def decoder(self) -> Pipeline:
        """The decoding steps for a loader (they encode nothing there: the table is already processed)."""
        return Pipeline([*self.procs, self.target])


ProcFactory = Callable[[list[str], list[str]], TabularProc]


def _default_procs() -> list[ProcFactory]:
    return [
        lambda cats, conts: FillMissing(conts),
        lambda cats, conts: ValueCodes(conts),
        lambda cats, conts: Categorify(cats),
        lambda cats, conts: QuantileNormalize(conts),
    ]


def _set_up(
    plan: ColumnPlan,
    ys: list[str],
    train_cols: Columns,
    train_targets: pd.DataFrame,
    procs: Sequence[ProcFactory] | None,
    y_block: str | None,
) -> _Processing:
    """The procs (dates first, then `procs` or the defaults) and the target, set up on training rows."""
    cats, conts = list(plan.cat_names), list(plan.cont_names)
    built: list[TabularProc] = []
    step = train_cols
    factories = list(procs) if procs is not None else _default_procs()
    if plan.date_names:  # dates become their parts first; the other procs then see numbers
        factories.insert(0, lambda cats, conts: DateParts(plan.date_names))
    for make in factories:
        p = make(cats, conts)
        p.setup(step)
        step = p(step)
        cats, conts = p.columns(cats, conts)
        built.append(p)
    target = TabularTarget(ys, kind=y_block)
    target.setup(train_targets)
    return _Processing(built, target, cats, conts)


@register_loaders("tabular.TabularDataLoaders")
class TabularDataLoaders(DataLoaders):
    """Training and validation loaders over a processed table, plus what the Learner reads from it."""

    def __init__(
        self, train: DataLoader, valid: DataLoader, processing: _Processing, plan: ColumnPlan | None = None
    ) -> None:
        super().__init__(train, valid, loss_func=processing.target.loss_factory())
        self.processing, self.plan = processing, plan

    # -- what the Learner reads ----------------------------------------------------------------------------
    @property
    def cat_names(self) -> list[str]:
        return self.processing.cat_names

    @property
    def cont_names(self) -> list[str]:
        return self.processing.cont_names

    @property
    def y_names(self) -> list[str]:
        return self.processing.target.y_names

    @property
    def target_tfm(self) -> Transform | None:
        return self.processing.target

    @property
    def vocab(self) -> list[Any] | None:
        return self.processing.target.vocab if self.processing.target.kind != "regression" else None

    @property
    def c(self) -> int | None:
        return self.processing.target.c

    @property
    def cardinalities(self) -> list[int]:
        """Rows of each categorical column's embedding (its vocabulary plus the reserved code 0)."""
        cat = next((p for p in self.processing.procs if isinstance(p, Categorify)), None)
        if cat is not None:
            return cat.cardinalities
        return [int(self.train.dataset.cats[:, k].max()) + 1 for k in range(len(self.cat_names))]  # type: ignore[attr-defined]

    # -- building -------------------------------------------------------------------------------------------
    @classmethod
    def from_df(
        cls,
        df: Any,
        y_names: str | Sequence[str],
        cat_names: Sequence[str] | None = None,
        cont_names: Sequence[str] | None = None,
        procs: Sequence[ProcFactory] | None = None,
        y_block: str | None = None,
        valid_pct: float = 0.2,
        valid_idx: Sequence[int] | None = None,
        seed: int | None = None,
        bs: int = 256,
        device: torch.device | str | None = None,
        max_card: int = 20,
        splitter: Callable[[pd.DataFrame], tuple[Sequence[int], Sequence[int]]] | None = None,
        valid_col: str | None = None,
    ) -> TabularDataLoaders:
        """Loaders from a pandas or polars DataFrame: `y_names` the target column(s); the other columns'
        kinds are inferred unless given (see `summary()`). Validation rows: `valid_col` (a boolean column,
        left out of the inputs), any lamina splitter (`splitter=TrainTestSplitter(stratify=df.y)`: frame ->
        (train positions, valid positions)), `valid_idx` (row positions), or a random `valid_pct` (`seed`).
        `procs`: callables (cat_names, cont_names) -> proc, in order (default: FillMissing, ValueCodes,
        Categorify, QuantileNormalize; `Normalize` is the plain z-score)."""
        df = as_pandas(df, "TabularDataLoaders.from_df")
        ys = [y_names] if isinstance(y_names, str) else list(y_names)
        if len(df) < 2:
            raise ValueError(
                f"TabularDataLoaders: the table has {len(df)} row(s); training needs at least 2 (one to "
                "train on, one to validate).\nhelp: pass the whole table; predict a row with learn.predict"
            )
        if valid_col is not None:
            splitter = ColSplitter(valid_col)
        plan = plan_columns(
            df.drop(columns=[valid_col]) if valid_col is not None and valid_col in df.columns else df,
            ys,
            list(cat_names) if cat_names is not None else None,
            list(cont_names) if cont_names is not None else None,
            max_card,
        )
        if splitter is not None:
            train_idx, valid_rows = (sorted(int(i) for i in part) for part in splitter(df))
            if not train_idx:
                raise ValueError("tabular: the splitter left no training rows.\nhelp: check the split")
        else:
            train_idx, valid_rows = _split(len(df), valid_pct, valid_idx, seed)
        used = [*plan.cat_names, *plan.cont_names, *plan.date_names, *ys]
        whole = Columns.from_frame(df[used])
        train_cols = _rows(whole, train_idx)
        processing = _set_up(plan, ys, train_cols, df.iloc[train_idx][ys], procs, y_block)
        train = processing.table(train_cols, with_labels=True)
        valid = processing.table(_rows(whole, valid_rows), with_labels=True)
        return cls(*_loaders(processing, train, valid, bs, seed, device), processing, plan)

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        y_names: str | Sequence[str],
        cat_names: Sequence[str] | None = None,
        cont_names: Sequence[str] | None = None,
        y_block: str | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        bs: int = 256,
        device: torch.device | str | None = None,
        max_bytes: int = MAX_TABLE_BYTES,
    ) -> TabularDataLoaders:
        """Loaders from a CSV or parquet file (by its suffix; refused above `max_bytes`); see `from_df`."""
        return cls.from_df(
            read_table(path, max_bytes=max_bytes),
            y_names,
            cat_names=cat_names,
            cont_names=cont_names,
            y_block=y_block,
            valid_pct=valid_pct,
            seed=seed,
            bs=bs,
            device=device,
        )

    from_parquet = from_csv

    @classmethod
    def from_large_parquet(
        cls,
        path: str | Path,
        y_names: str | Sequence[str],
        cat_names: Sequence[str] | None = None,
        cont_names: Sequence[str] | None = None,
        procs: Sequence[ProcFactory] | None = None,
        y_block: str | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        bs: int = 256,
        device: torch.device | str | None = None,
        max_card: int = 20,
        setup_rows: int = 500_000,
        chunk_rows: int = 65_536,
        workdir: str | Path | None = None,
    ) -> TabularDataLoaders:
        """Loaders from a parquet file too large for memory: read `chunk_rows` rows at a time, twice.

        The first pass keeps a random sample of `setup_rows` training rows, on which the column kinds are
        inferred and the procs and the target set up (all training rows when there are fewer: then the
        tables equal `from_df`'s on the same split); the second pass processes every row into memory-mapped
        files in `workdir` (default: the system's temporary folder), unlinked at once (Linux/macOS keep the
        data while it is mapped, and free the disk when the loaders go). Memory holds one chunk, the sample
        and the pages the batches touch. A category not in the sample becomes the unknown code; a label not
        in it is an error naming it."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"tabular: {str(source)!r} does not exist.\nhelp: check the path")
        if chunk_rows < 1 or setup_rows < 2:
            raise ValueError(
                f"tabular: chunk_rows {chunk_rows} / setup_rows {setup_rows} must be >= 1 / >= 2"
            )
        pf = pq.ParquetFile(
            source, pre_buffer=False
        )  # pre-buffering kept every row group: 1.2 GB at 16M rows
        n = int(pf.metadata.num_rows)
        ys = [y_names] if isinstance(y_names, str) else list(y_names)
        missing = [c for c in ys if c not in pf.schema_arrow.names]
        if missing or n < 2:
            raise ValueError(
                f"tabular: {str(source)!r} has {n} row(s) and columns {pf.schema_arrow.names[:20]}; "
                f"expected at least 2 rows and the target column(s) {missing or ys}.\n"
                "help: check y_names against the file's columns"
            )
        is_valid = _valid_mask(n, valid_pct, seed)
        train_pos = np.flatnonzero(~is_valid)
        rng = np.random.default_rng(seed)
        sample = (
            np.sort(rng.choice(train_pos, size=setup_rows, replace=False))
            if len(train_pos) > setup_rows
            else train_pos
        )
        del train_pos  # 8 bytes a row: gone before the chunks are read
        sample_df = _read_rows(pf, sample, chunk_rows)
        plan = plan_columns(
            sample_df,
            ys,
            list(cat_names) if cat_names is not None else None,
            list(cont_names) if cont_names is not None else None,
            max_card,
        )
        used = [*plan.cat_names, *plan.cont_names, *plan.date_names, *ys]
        processing = _set_up(plan, ys, Columns.from_frame(sample_df[used]), sample_df[ys], procs, y_block)
        del sample_df
        train, valid = _process_chunks(pf, used, processing, is_valid, chunk_rows, workdir)
        pa.default_memory_pool().release_unused()  # what the chunks took goes back to the system now
        return cls(*_loaders(processing, train, valid, bs, seed, device), processing, plan)

    def summary(self) -> str:
        """Print (and return) what each column became, the rows per split and the target."""
        t = self.processing.target
        lines = [
            f"rows: {len(self.train.dataset)} training, {len(self.valid.dataset)} validation",
            str(self.plan)
            if self.plan is not None
            else f"categorical: {self.cat_names}\ncontinuous: {self.cont_names}",
            f"target kind: {t.kind}"
            + (f" ({t.c} classes: {_head(t.vocab)})" if t.kind == "category" else ""),
            "procs: " + ", ".join(type(p).__name__ for p in self.processing.procs),
        ]
        out = "\n".join(lines)
        print(out)
        return out

    # -- new rows -------------------------------------------------------------------------------------------
    def test_dl(
        self,
        items: Any,
        with_labels: bool = False,
        bs: int | None = None,
        skip_getters: bool = False,
    ) -> DataLoader:
        """A loader over new rows (a DataFrame, a row, a dict or a list of them) through the training procs.

        A category never seen in training becomes the reserved code 0 (as a missing value); a missing
        input column is an error that names it."""
        table = self.processing.table(_rows_columns(items), with_labels=with_labels)
        return self.valid.new(
            dataset=table, shuffle=False, drop_last=False, bs=bs or self.valid.bs, num_workers=0
        )

    # -- export ---------------------------------------------------------------------------------------------
    def export_recipe(self) -> dict[str, Any]:
        """The processing state as plain JSON: each proc by registered name with its config, the target."""
        procs = []
        for p in self.processing.procs:
            name = registered_name(p)
            if name is None:
                raise TypeError(
                    f"export: the tabular proc {type(p).__name__} is not registered (@register_transform)"
                )
            procs.append({"name": name, "config": p.to_config()})
        return {
            "procs": procs,
            "target": self.processing.target.to_config(),
            "cat_names": self.cat_names,
            "cont_names": self.cont_names,
            "bs": self.valid.bs,
        }

    @classmethod
    def from_recipe(cls, config: dict[str, Any], device: torch.device | None) -> TabularDataLoaders:
        """Empty loaders that process and decode rows as the exported ones did (for predict and test_dl)."""
        procs_cfg = config["procs"]
        if not isinstance(procs_cfg, list) or len(procs_cfg) > _MAX_PROCS:
            raise ValueError(f"tabular: procs must be a list of at most {_MAX_PROCS} entries")
        procs: list[TabularProc] = []
        for entry in procs_cfg:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ValueError(f"tabular: malformed proc entry {str(entry)[:200]}")
            proc_cls = lookup_transform(entry["name"])
            if not (isinstance(proc_cls, type) and issubclass(proc_cls, TabularProc)):
                raise ValueError(f"tabular: {entry['name']!r} is not a tabular proc")
            cfg = entry.get("config")
            if not isinstance(cfg, dict):
                raise ValueError(f"tabular: the config of {entry['name']!r} is not an object")
            procs.append(proc_cls(**cfg))
        target_cfg = config["target"]
        if not isinstance(target_cfg, dict):
            raise ValueError("tabular: the target config is not an object")
        target = TabularTarget(**target_cfg)
        cats, conts = config["cat_names"], config["cont_names"]
        for names in (cats, conts):
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise TypeError("tabular: cat_names and cont_names must be lists of strings")
        bs = config.get("bs", 256)
        if not isinstance(bs, int) or not 1 <= bs <= 2**20:
            raise ValueError(f"tabular: invalid batch size {bs!r}")
        processing = _Processing(procs, target, cats, conts)
        empty = TabularTable(
            torch.zeros((0, len(cats)), dtype=torch.int64),
            torch.zeros((0, len(conts))),
            torch.zeros((0,), dtype=torch.int64) if target.kind == "category" else torch.zeros((0, target.c)),
            target.type,
        )
        train, valid = _loaders(processing, empty, empty, bs // 2 or 1, None, device)
        types = (TensorCat, TensorCont, target.type)
        for dl in (train, valid):
            dl.set_types(types, types)
        return cls(train, valid, processing)


def _head(vocab: list[Any] | None, n: int = 10) -> list[Any]:
    return list(vocab or [])[:n]


def _valid_mask(n: int, valid_pct: float, seed: int | None) -> np.ndarray:
    """`_split`'s random validation rows as a boolean mask (n bytes, not two lists of n ints)."""
    if not 0 <= valid_pct < 1:
        raise ValueError(f"tabular: valid_pct must be in [0, 1), got {valid_pct}")
    g = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(0, 2**31, ()).item()))
    perm = torch.randperm(n, generator=g)
    mask = np.zeros(n, dtype=bool)
    mask[perm[: round(n * valid_pct)].numpy()] = True
    if mask.all():
        raise ValueError("tabular: no training rows left after the split.\nhelp: lower valid_pct")
    return mask


def _read_rows(pf: Any, positions: np.ndarray, chunk_rows: int) -> pd.DataFrame:
    """The rows at sorted `positions` of a parquet file, read `chunk_rows` at a time."""
    parts, start = [], 0
    for batch in pf.iter_batches(batch_size=chunk_rows):
        stop = start + batch.num_rows
        lo, hi = np.searchsorted(positions, [start, stop])
        if hi > lo:
            parts.append(batch.take(positions[lo:hi] - start).to_pandas())
        start = stop
    return pd.concat(parts, ignore_index=True)


def _process_chunks(
    pf: Any,
    used: list[str],
    processing: _Processing,
    is_valid: np.ndarray,
    chunk_rows: int,
    workdir: str | Path | None,
) -> tuple[TabularTable, TabularTable]:
    """Every row through the procs, chunk by chunk, into memory-mapped training and validation tensors."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="lamina-table-", dir=workdir))
    sizes = {False: int((~is_valid).sum()), True: int(is_valid.sum())}
    arrays: dict[bool, list[np.ndarray]] = {}
    filled = {False: 0, True: 0}
    try:
        start = 0
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=used):
            cols = Columns.from_frame(batch.to_pandas())
            m = cols.n_rows
            out = processing.columns(cols)
            parts = [
                as_cat_tensor(out, processing.cat_names, m).numpy(),
                as_cont_tensor(out, processing.cont_names, m).numpy(),
                processing.target.tensor(cols).numpy(),
            ]
            if not arrays:
                for split, size in sizes.items():
                    arrays[split] = [
                        np.lib.format.open_memmap(
                            folder / f"{int(split)}-{k}.npy", "w+", a.dtype, (size, *a.shape[1:])
                        )
                        for k, a in enumerate(parts)
                    ]
            mask = is_valid[start : start + m]
            for split in (False, True):
                rows = mask if split else ~mask
                k0, k1 = filled[split], filled[split] + int(rows.sum())
                for dst, a in zip(arrays[split], parts, strict=True):
                    dst[k0:k1] = a[rows]
                filled[split] = k1
            start += m
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)  # mapped arrays keep their data until unmapped
    tables = []
    for split in (False, True):
        cats, conts, ys = (torch.from_numpy(a) for a in arrays[split])
        tables.append(TabularTable(cats, conts, ys, processing.target.type))
    return tables[0], tables[1]


def _rows(cols: Columns, idx: Sequence[int]) -> Columns:
    pos = np.asarray(idx, dtype=np.int64)
    return Columns((k, v[pos]) for k, v in cols.items())


def _rows_columns(items: Any) -> Columns:
    """New rows as columns: a frame (pandas or polars), one row (dict, pandas Series) or a list of rows."""
    if isinstance(items, dict | pd.Series):
        items = [items]
    if isinstance(items, list | tuple) and len(items) == 1 and not isinstance(items[0], dict | pd.Series):
        items = items[0]  # predict's [frame]
    if isinstance(items, list | tuple) and all(isinstance(r, dict | pd.Series) for r in items):
        return Columns.from_records(list(items))  # no DataFrame built: a wide row stays cheap
    return Columns.from_frame(as_pandas(items, "test_dl"))


def _split(
    n: int, valid_pct: float, valid_idx: Sequence[int] | None, seed: int | None
) -> tuple[list[int], list[int]]:
    if valid_idx is not None:
        valid = sorted({int(i) for i in valid_idx})
        if valid and (valid[0] < 0 or valid[-1] >= n):
            raise IndexError(f"tabular: valid_idx holds positions outside 0..{n - 1}")
        vs = set(valid)
        train = [i for i in range(n) if i not in vs]
    else:
        if not 0 <= valid_pct < 1:
            raise ValueError(f"tabular: valid_pct must be in [0, 1), got {valid_pct}")
        g = torch.Generator().manual_seed(
            seed if seed is not None else int(torch.randint(0, 2**31, ()).item())
        )
        perm = torch.randperm(n, generator=g).tolist()
        cut = round(n * valid_pct)
        valid, train = sorted(perm[:cut]), sorted(perm[cut:])
    if not train:
        raise ValueError("tabular: no training rows left after the split.\nhelp: lower valid_pct")
    return train, valid


def _loaders(
    processing: _Processing,
    train: TabularTable,
    valid: TabularTable,
    bs: int,
    seed: int | None,
    device: torch.device | str | None,
) -> tuple[DataLoader, DataLoader]:
    decoder = processing.decoder()
    tdl = DataLoader(
        train,
        bs=bs,
        shuffle=True,
        drop_last=len(train) > bs,
        seed=seed,
        device=device,
        item_tfms=decoder,
        split_idx=0,
        n_inp=2,
    )
    vdl = DataLoader(
        valid, bs=bs * 2, shuffle=False, seed=seed, device=device, item_tfms=decoder, split_idx=1, n_inp=2
    )
    return tdl, vdl
