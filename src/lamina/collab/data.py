"""CollabDataLoaders: (user, item, rating) rows as contiguous tensors, fetched a whole batch at a time.

Users and items are keyed by id (an optional title column is for display only, so two films with one
title stay two items). Index 0 of each vocabulary is reserved for ids unseen in training: such a user or
item never raises a KeyError; see `EmbeddingDotBias` for what the model predicts for it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor

from lamina.core import TensorBase, Transform, decodes, register_loaders, register_transform
from lamina.data import DataLoader, DataLoaders, MSELossFlat, RandomSplitter

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_VOCAB",
    "UNKNOWN",
    "CollabDataLoaders",
    "CollabDecode",
    "CollabMeta",
    "CollabRatings",
    "TensorUserItem",
    "UserItem",
    "as_key",
    "infer_y_range",
    "vocab_of",
]

UNKNOWN = "#unknown#"  # the display name of the reserved index 0 (a user or item unseen in training)
MAX_VOCAB = 50_000_000  # users or items in an exported vocabulary (bounds what a file may allocate)
MAX_CSV_BYTES = 4 * 2**30  # a ratings CSV larger than this is refused before reading
_MAX_SEEN = 2_000_000  # training pairs kept in an export for exclude_seen (JSON size); more are dropped
_MAX_KEY_LEN = 1_000
Duplicates = Literal["mean", "keep", "error"]
Key = int | str


class TensorUserItem(TensorBase):
    """The model input: (user index, item index), int64, shape (2,) for a row, (B, 2) for a batch."""


@dataclass(frozen=True)
class UserItem:
    """A decoded input row: the user's and item's ids (and the item's title), for display."""

    user: Key
    item: Key
    title: str | None
    names: tuple[str, str, str]  # the user, item and rating column names

    @classmethod
    def show_many(cls, items: Sequence[tuple[Any, ...]], titles: Sequence[str] | None) -> pd.DataFrame:
        """The decoded rows as one table: user, item, title, rating (and show_results' prediction)."""
        import pandas as pd

        first = items[0][0]
        user_name, item_name, rating_name = first.names
        rows: list[dict[str, Any]] = []
        for k, it in enumerate(items):
            ui = it[0]
            row: dict[str, Any] = {user_name: ui.user, item_name: ui.item}
            if ui.title is not None:
                row["title"] = ui.title
            if len(it) > 1:
                row[rating_name] = _as_float(it[1])
            if titles is not None:
                row["prediction"] = _as_float(str(titles[k]).removeprefix("pred: "))
            rows.append(row)
        return pd.DataFrame(rows)


def _as_float(v: Any) -> Any:
    try:
        return round(float(v), 4)
    except (TypeError, ValueError):
        return v


@dataclass
class CollabMeta:
    """What the data knows and an export keeps: column names, vocabularies (index 0 reserved), titles,
    the rating range and mean, and each training user's rated items (for `exclude_seen`)."""

    user_name: str
    item_name: str
    rating_name: str
    users: list[Key]  # users[0] is UNKNOWN
    items: list[Key]  # items[0] is UNKNOWN
    titles: list[str] | None = None  # one per item (titles[0] == UNKNOWN), or None
    y_range: tuple[float, float] = (0.0, 5.5)
    rating_mean: float = 3.5
    seen: list[list[int]] | None = None  # per user index: the item indices rated in training
    item_counts: list[int] = field(default_factory=list)  # training ratings per item index
    _user_idx: dict[Key, int] = field(default_factory=dict, init=False, repr=False)
    _item_idx: dict[Key, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._user_idx = {k: i for i, k in enumerate(self.users) if i > 0}
        self._item_idx = {k: i for i, k in enumerate(self.items) if i > 0}

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def user_index(self, key: Any) -> int:
        """The index of a user id (0, the reserved index, for a user unseen in training)."""
        return _lookup(self._user_idx, key)

    def item_index(self, key: Any) -> int:
        """The index of an item id (0 for an item unseen in training)."""
        return _lookup(self._item_idx, key)

    def item_label(self, idx: int) -> str:
        """An item's title when the data has titles, else its id."""
        return str(self.titles[idx]) if self.titles is not None else str(self.items[idx])

    def to_json(self) -> dict[str, Any]:
        return {
            "user_name": self.user_name,
            "item_name": self.item_name,
            "rating_name": self.rating_name,
            "users": self.users[1:],
            "items": self.items[1:],
            "titles": None if self.titles is None else self.titles[1:],
            "y_range": list(self.y_range),
            "rating_mean": self.rating_mean,
            "seen": self.seen if self.seen is not None and sum(map(len, self.seen)) <= _MAX_SEEN else None,
            "item_counts": self.item_counts,
        }

    @classmethod
    def from_json(cls, cfg: Mapping[str, Any]) -> CollabMeta:
        """Rebuild from an export's config, checking every field (it comes from a file)."""
        names = [cfg["user_name"], cfg["item_name"], cfg["rating_name"]]
        if not all(isinstance(n, str) and 0 < len(n) <= _MAX_KEY_LEN for n in names):
            raise TypeError(f"collab: column names must be short strings, got {str(names)[:200]}")
        users, items = _keys(cfg["users"], "users"), _keys(cfg["items"], "items")
        titles = cfg["titles"]
        if titles is not None:
            if not isinstance(titles, list) or len(titles) != len(items):
                raise ValueError(f"collab: {len(items)} items but titles is {type(titles).__name__}")
            if not all(isinstance(t, str) and len(t) <= _MAX_KEY_LEN for t in titles):
                raise TypeError("collab: every title must be a string of at most 1000 characters")
        y_range = cfg["y_range"]
        if (
            not isinstance(y_range, list)
            or len(y_range) != 2
            or not all(_finite(v) for v in y_range)
            or not y_range[0] < y_range[1]
        ):
            raise ValueError(f"collab: y_range must be two finite numbers lo < hi, got {str(y_range)[:100]}")
        mean = cfg["rating_mean"]
        if not _finite(mean):
            raise ValueError(f"collab: rating_mean must be a finite number, got {str(mean)[:50]}")
        n_items = len(items) + 1
        seen = cfg["seen"]
        if seen is not None:
            if not isinstance(seen, list) or len(seen) != len(users) + 1:
                raise ValueError("collab: seen must hold one list per user (the reserved one first)")
            if sum(len(s) if isinstance(s, list) else _MAX_SEEN + 1 for s in seen) > _MAX_SEEN:
                raise ValueError(f"collab: seen holds more than {_MAX_SEEN} pairs")
            for s in seen:
                if not all(type(i) is int and 0 < i < n_items for i in s):
                    raise ValueError("collab: seen holds item indices out of range")
        counts = cfg["item_counts"]
        if not isinstance(counts, list) or len(counts) != n_items or not all(type(c) is int for c in counts):
            raise ValueError("collab: item_counts must hold one integer per item")
        return cls(
            names[0],
            names[1],
            names[2],
            users=[UNKNOWN, *users],
            items=[UNKNOWN, *items],
            titles=None if titles is None else [UNKNOWN, *titles],
            y_range=(float(y_range[0]), float(y_range[1])),
            rating_mean=float(mean),
            seen=seen,
            item_counts=counts,
        )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _keys(v: Any, what: str) -> list[Key]:
    if not isinstance(v, list) or len(v) > MAX_VOCAB:
        raise ValueError(f"collab: {what} must be a list of at most {MAX_VOCAB} ids")
    if not all((type(k) is int) or (isinstance(k, str) and len(k) <= _MAX_KEY_LEN) for k in v):
        raise TypeError(f"collab: every id in {what} must be an int or a short string")
    if len(set(v)) != len(v):
        raise ValueError(f"collab: {what} holds the same id twice")
    return list(v)


def _lookup(table: dict[Key, int], key: Any) -> int:
    k = as_key(key)
    idx = table.get(k)
    if idx is None and isinstance(k, str):  # "196" on a command line for the integer id 196
        try:
            idx = table.get(int(k))
        except ValueError:
            idx = None
    return idx or 0


def as_key(v: Any) -> Key:
    """A Python int or str for an id (numpy ints and integral floats become ints)."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    try:  # numpy scalars
        import numpy as np

        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating) and float(v).is_integer():
            return int(v)
    except ImportError:  # pragma: no cover
        pass
    return str(v)


class CollabRatings:
    """Rating rows held as tensors (`BatchedItems`): `x` (N, 2) user and item indices, `y` (N,) ratings."""

    def __init__(self, x: Tensor, y: Tensor | None) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        xi = self.x[i].as_subclass(TensorUserItem)
        return (xi,) if self.y is None else (xi, self.y[i])

    def get_batch(self, idxs: Tensor) -> tuple[Tensor, ...]:
        return (self.x[idxs],) if self.y is None else (self.x[idxs], self.y[idxs])

    def describe(self, i: int) -> str:
        return f"rating row {i}"


@register_transform("collab.CollabDecode")
class CollabDecode(Transform):
    """Decodes only: index pairs back to ids (and titles), ratings to floats; the rows are encoded once,
    when the loaders are built."""

    def __init__(self, meta: CollabMeta) -> None:
        super().__init__()
        self.meta = meta

    @decodes
    def _ids(self, x: TensorUserItem) -> UserItem:
        m = self.meta
        u, i = (int(v) for v in x.tolist())
        title = m.titles[i] if m.titles is not None else None
        return UserItem(m.users[u], m.items[i], title, (m.user_name, m.item_name, m.rating_name))

    @decodes
    def _rating(self, x: Tensor) -> float:
        return float(x.reshape(-1)[0]) if x.numel() else float("nan")

    def to_config(self) -> dict[str, Any]:
        return {}


def _check_columns(df: pd.DataFrame, names: Sequence[str | None], where: str) -> None:
    missing = [n for n in names if n is not None and n not in df.columns]
    if missing:
        raise KeyError(
            f"{where}: no column {missing} in the ratings (columns: {list(df.columns)[:20]}).\n"
            "help: pass user_name=, item_name= and rating_name= with the table's column names"
        )


def _check_ids(df: pd.DataFrame, col: str, where: str) -> None:
    bad = df[col].isna()
    if bad.any():
        rows = list(df.index[bad][:5])
        raise ValueError(
            f"{where}: {int(bad.sum())} of {len(df)} rows have no {col!r} (e.g. rows {rows}); a rating "
            "needs both a user and an item.\n"
            f"help: drop them first, e.g. ratings.dropna(subset=[{col!r}])"
        )


def _ratings(df: pd.DataFrame, col: str, where: str) -> Tensor:
    """The rating column as float32, refusing text, missing and infinite values."""
    import pandas as pd

    s = df[col]
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        sample = [v for v in s.head(1000).tolist() if not isinstance(v, int | float)][:3]
        raise TypeError(
            f"{where}: column {col!r} holds {s.dtype} values (e.g. {sample}); ratings must be numbers.\n"
            f"help: convert it first, e.g. ratings[{col!r}] = pd.to_numeric(ratings[{col!r}]) (which names "
            "the values it cannot read)"
        )
    v = torch.tensor(s.to_numpy(dtype="float64", na_value=float("nan")))
    bad = ~torch.isfinite(v)
    if bool(bad.any()):
        rows = list(df.index[bad.numpy()][:5])
        raise ValueError(
            f"{where}: {int(bad.sum())} ratings in {col!r} are missing or infinite (e.g. rows {rows}).\n"
            f"help: drop those rows, e.g. ratings.dropna(subset=[{col!r}])"
        )
    return v.float()


def _dedupe(df: pd.DataFrame, names: tuple[str, str, str], how: Duplicates, where: str) -> pd.DataFrame:
    """Duplicate (user, item) rows: averaged into one ("mean", with a warning), kept ("keep"), or refused."""
    user, item, rating = names
    dup = df.duplicated([user, item], keep=False)
    if not dup.any() or how == "keep":
        return df
    n = int(df.duplicated([user, item]).sum())
    example = df.loc[dup, [user, item]].iloc[0].tolist()
    if how == "error":
        raise ValueError(
            f"{where}: {n} duplicate (user, item) rows, e.g. {example}.\n"
            "help: pass duplicates='mean' to average them, or 'keep' to train on each"
        )
    if how != "mean":
        raise ValueError(f"{where}: duplicates={how!r}; expected 'mean', 'keep' or 'error'")
    warnings.warn(
        f"{where}: averaged {n} duplicate (user, item) rows (e.g. {example}) into one rating each.\n"
        "help: duplicates='keep' trains on each row, duplicates='error' refuses them",
        stacklevel=4,
    )
    others = {c: "first" for c in df.columns if c not in names}
    return df.groupby([user, item], as_index=False, sort=False).agg({rating: "mean", **others})


def vocab_of(values: Any) -> list[Key]:
    """The sorted distinct ids of `values` (ints before strings) after the reserved UNKNOWN at index 0."""
    keys = {as_key(v) for v in values}
    return [UNKNOWN, *sorted(keys, key=lambda k: (isinstance(k, str), k))]


def _encode(meta: CollabMeta, users: Sequence[Any], items: Sequence[Any]) -> Tensor:
    u = torch.tensor([meta.user_index(v) for v in users], dtype=torch.int64)
    i = torch.tensor([meta.item_index(v) for v in items], dtype=torch.int64)
    return torch.stack([u, i], dim=1) if len(u) else torch.zeros((0, 2), dtype=torch.int64)


def infer_y_range(r: Tensor) -> tuple[float, float]:
    """The sigmoid's range: the ratings' range widened by a quarter of its span below and an eighth
    above, so that the extreme ratings are reachable (1-5 stars: (0, 5.5), fastai's tutorial's range)."""
    lo, hi = float(r.min()), float(r.max())
    span = hi - lo if hi > lo else max(1.0, abs(hi))
    return lo - 0.25 * span, hi + 0.125 * span


def _titles(
    meta_items: list[Key], df: pd.DataFrame, item_name: str, title_name: str | None, items: Any
) -> list[str] | None:
    """One display title per item index: from `items` (a table of ids and titles) or a ratings column."""
    if title_name is None:
        return None
    src = items if items is not None else df
    _check_columns(src, [item_name, title_name], "CollabDataLoaders titles")
    table = {as_key(k): str(t) for k, t in zip(src[item_name], src[title_name], strict=True)}
    return [UNKNOWN, *(table.get(k, str(k)) for k in meta_items[1:])]


@register_loaders("collab.CollabDataLoaders")
class CollabDataLoaders(DataLoaders):
    """Training and validation loaders over (user, item) -> rating rows, plus the vocabularies.

    >>> dls = CollabDataLoaders.from_df(ratings, user_name="user_id", item_name="movie_id",
    ...                                 rating_name="rating", seed=42)  # doctest: +SKIP
    """

    def __init__(self, train: DataLoader, valid: DataLoader, meta: CollabMeta) -> None:
        super().__init__(train, valid, loss_func=MSELossFlat)
        self.meta = meta

    # -- what the Learner reads ------------------------------------------------------------------------------
    @property
    def vocab(self) -> list[Any] | None:
        return None  # one output, a rating: no class labels

    @property
    def c(self) -> int | None:
        return 1

    @property
    def classes(self) -> dict[str, list[Key]]:
        """The user and item vocabularies by column name (index 0: the reserved unknown id)."""
        return {self.meta.user_name: self.meta.users, self.meta.item_name: self.meta.items}

    # -- building ------------------------------------------------------------------------------------------
    @classmethod
    def from_df(
        cls,
        ratings: pd.DataFrame,
        user_name: str = "user",
        item_name: str = "item",
        rating_name: str = "rating",
        title_name: str | None = None,
        items: pd.DataFrame | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        bs: int = 64,
        y_range: tuple[float, float] | None = None,
        duplicates: Duplicates = "mean",
        device: torch.device | str | None = None,
    ) -> CollabDataLoaders:
        """Loaders from a ratings table, split at random (`valid_pct`, `seed`).

        Vocabularies come from the training rows only: a user or item seen only in validation maps to the
        reserved index 0. `title_name` names a title column, in `items` (a table of item ids and titles,
        e.g. MovieLens' u.item) or in `ratings`. `y_range` defaults to the ratings' range widened a little;
        ratings outside a given `y_range` are refused. Duplicate (user, item) rows are averaged
        (`duplicates="mean"`, with a warning), kept, or refused ("error"). `valid_pct=0` trains on every
        row with no validation; a split that leaves no validation row otherwise is refused.
        """
        where = "CollabDataLoaders.from_df"
        names = (user_name, item_name, rating_name)
        _check_columns(ratings, names, where)
        if not 0 <= valid_pct < 1:
            raise ValueError(f"{where}: valid_pct={valid_pct}; expected 0 <= valid_pct < 1.\nhelp: e.g. 0.2")
        if duplicates not in ("mean", "keep", "error"):
            raise ValueError(f"{where}: duplicates={duplicates!r}; expected 'mean', 'keep' or 'error'")
        if len(ratings) < 2:
            raise ValueError(f"{where}: {len(ratings)} rating rows; need at least 2.\nhelp: check the table")
        _check_ids(ratings, user_name, where)
        _check_ids(ratings, item_name, where)
        _ratings(ratings, rating_name, where)  # refuse text / missing ratings before anything else
        df = _dedupe(ratings.reset_index(drop=True), names, duplicates, where).reset_index(drop=True)
        r = _ratings(df, rating_name, where)
        if y_range is not None:
            lo, hi = float(y_range[0]), float(y_range[1])
            if not lo < hi:
                raise ValueError(f"{where}: y_range={y_range}; expected (lo, hi) with lo < hi")
            out = (r < lo) | (r > hi)
            if bool(out.any()):
                k = int(out.nonzero()[0, 0])
                raise ValueError(
                    f"{where}: {int(out.sum())} ratings lie outside y_range=({lo:g}, {hi:g}), e.g. "
                    f"{float(r[k]):g} in row {k}; the model could never predict them.\n"
                    f"help: widen y_range to cover [{float(r.min()):g}, {float(r.max()):g}], or leave "
                    "y_range=None to infer it from the ratings"
                )
            y_range = (lo, hi)
        if valid_pct > 0:
            train_idx, valid_idx = RandomSplitter(valid_pct, seed=seed)(range(len(df)))
            if not valid_idx:
                raise ValueError(
                    f"{where}: valid_pct={valid_pct} of {len(df)} ratings leaves no validation row.\n"
                    "help: raise valid_pct, add ratings, or pass valid_pct=0 to train on every row "
                    "without validation"
                )
        else:
            train_idx, valid_idx = list(range(len(df))), []
        tr = df.iloc[train_idx]
        users, items_v = vocab_of(tr[user_name]), vocab_of(tr[item_name])
        r_tr = r[torch.tensor(train_idx, dtype=torch.int64)]
        meta = CollabMeta(
            user_name,
            item_name,
            rating_name,
            users=users,
            items=items_v,
            titles=_titles(items_v, df, item_name, title_name, items),
            y_range=y_range if y_range is not None else infer_y_range(r_tr),
            rating_mean=float(r_tr.mean()),
        )
        x = _encode(meta, df[user_name].tolist(), df[item_name].tolist())
        tr_x = x[torch.tensor(train_idx, dtype=torch.int64)]
        meta.item_counts = torch.bincount(tr_x[:, 1], minlength=meta.n_items).tolist()
        order = torch.argsort(tr_x[:, 0] * meta.n_items + tr_x[:, 1])
        pairs = tr_x[order]
        per_user = torch.bincount(pairs[:, 0], minlength=meta.n_users).tolist()
        meta.seen = [s.tolist() for s in torch.split(pairs[:, 1], per_user)]
        va = torch.tensor(valid_idx, dtype=torch.int64)
        return cls._over(
            CollabRatings(tr_x, r_tr), CollabRatings(x[va], r[va]), meta, bs=bs, seed=seed, device=device
        )

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        user_name: str = "user",
        item_name: str = "item",
        rating_name: str = "rating",
        title_name: str | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        bs: int = 64,
        y_range: tuple[float, float] | None = None,
        duplicates: Duplicates = "mean",
        device: torch.device | str | None = None,
        max_bytes: int = MAX_CSV_BYTES,
    ) -> CollabDataLoaders:
        """`from_df` on a CSV file (refused above `max_bytes`, before reading it)."""
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"CollabDataLoaders.from_csv: {str(path)!r} is not a file.\nhelp: check it"
            )
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(
                f"CollabDataLoaders.from_csv: {str(path)!r} is {size} bytes, over max_bytes={max_bytes}.\n"
                "help: pass a larger max_bytes if the machine has the memory"
            )
        df = pd.read_csv(path)
        return cls.from_df(
            df,
            user_name=user_name,
            item_name=item_name,
            rating_name=rating_name,
            title_name=title_name,
            valid_pct=valid_pct,
            seed=seed,
            bs=bs,
            y_range=y_range,
            duplicates=duplicates,
            device=device,
        )

    @classmethod
    def _over(
        cls,
        train: CollabRatings,
        valid: CollabRatings,
        meta: CollabMeta,
        bs: int = 64,
        seed: int | None = None,
        device: torch.device | str | None = None,
    ) -> CollabDataLoaders:
        dec = [CollabDecode(meta)]
        tdl = DataLoader(
            cast(Sequence[Any], train),  # BatchedItems: fetched a whole batch per index
            bs=bs,
            shuffle=True,
            drop_last=len(train) > bs,
            device=device,
            split_idx=0,
            seed=seed,
            item_tfms=dec,
        )
        vdl = DataLoader(
            cast(Sequence[Any], valid),
            bs=2 * bs,
            shuffle=False,
            device=device,
            split_idx=1,
            seed=seed,
            item_tfms=dec,
        )
        dls = cls(tdl, vdl, meta)
        for dl in (tdl, vdl):
            dl.set_types((TensorUserItem, torch.Tensor), (TensorUserItem, torch.Tensor))
        return dls

    def new(
        self, bs: int | None = None, device: torch.device | str | None = None, num_workers: int | None = None
    ) -> CollabDataLoaders:
        """The same data with another batch size (validation keeps twice it) or device."""
        out = CollabDataLoaders(
            self.train.new(bs=bs, device=device, num_workers=num_workers),
            self.valid.new(bs=None if bs is None else 2 * bs, device=device, num_workers=num_workers),
            self.meta,
        )
        for a, b in ((out.train, self.train), (out.valid, self.valid)):
            a.set_types(b.types, b.batch_types)
        return out

    # -- new rows ------------------------------------------------------------------------------------------
    def encode_rows(self, rows: Any, with_labels: bool = False) -> CollabRatings:
        """Rows (a DataFrame, dicts or (user, item[, rating]) tuples) as index pairs; unknown ids map to 0."""
        users, items, ratings = _columns(rows, self.meta, with_labels)
        x = _encode(self.meta, users, items)
        y = None
        if with_labels:
            import pandas as pd

            y = _ratings(pd.DataFrame({self.meta.rating_name: ratings}), self.meta.rating_name, "test_dl")
        return CollabRatings(x, y)

    def test_dl(
        self,
        items: Sequence[Any] | Any,
        with_labels: bool = False,
        bs: int | None = None,
        skip_getters: bool = False,
    ) -> DataLoader:
        """A loader over new rows (a DataFrame with the user and item columns, dicts, or (user, item)
        tuples); ids unseen in training map to the reserved index. `skip_getters` is accepted for
        `Learner.predict` and changes nothing (rows need no getter)."""
        del skip_getters
        ds = self.encode_rows(items, with_labels)
        dl = self.valid.new(
            dataset=cast(Sequence[Any], ds),
            shuffle=False,
            drop_last=False,
            bs=self.valid.bs if bs is None else bs,
        )
        types = (TensorUserItem, torch.Tensor) if with_labels else (TensorUserItem,)
        dl.set_types(types, types)
        return dl

    # -- export ----------------------------------------------------------------------------------------------
    def export_recipe(self) -> dict[str, Any]:
        """The vocabularies, names, y_range and training pairs as plain JSON (no pickle)."""
        return {"meta": self.meta.to_json(), "bs": self.train.bs}

    @classmethod
    def from_recipe(cls, config: Mapping[str, Any], device: torch.device | None) -> CollabDataLoaders:
        """Empty loaders from `export_recipe()`'s config, able to `test_dl`, decode and recommend."""
        if not isinstance(config, Mapping) or not isinstance(config.get("meta"), Mapping):
            raise TypeError("collab: the data recipe must hold a 'meta' object")
        bs = config.get("bs", 64)
        if type(bs) is not int or not 1 <= bs <= 2**20:
            raise ValueError(f"collab: bs must be an integer in [1, 1048576], got {str(bs)[:50]}")
        meta = CollabMeta.from_json(config["meta"])
        empty = torch.zeros((0, 2), dtype=torch.int64)
        ds = CollabRatings(empty, torch.zeros(0))
        return cls._over(ds, CollabRatings(empty, torch.zeros(0)), meta, bs=bs, device=device)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"CollabDataLoaders({len(self.train.dataset)} train / {len(self.valid.dataset)} valid ratings, "
            f"{m.n_users - 1} users, {m.n_items - 1} items, y_range={m.y_range})"
        )


def _columns(rows: Any, meta: CollabMeta, with_labels: bool) -> tuple[list[Any], list[Any], list[Any]]:
    """Users, items (and ratings) from a DataFrame, a Series / dict, a list of dicts or of tuples."""
    u, i, r = meta.user_name, meta.item_name, meta.rating_name
    if hasattr(rows, "columns"):  # a DataFrame
        _check_columns(rows, [u, i, r if with_labels else None], "test_dl")
        return rows[u].tolist(), rows[i].tolist(), rows[r].tolist() if with_labels else []
    if isinstance(rows, Mapping) or (hasattr(rows, "index") and hasattr(rows, "iloc")):
        rows = [rows]  # one row (a dict or a Series)
    users: list[Any] = []
    items: list[Any] = []
    ratings: list[Any] = []
    for k, row in enumerate(rows):
        if isinstance(row, Mapping) or hasattr(row, "iloc"):
            try:
                users.append(row[u])
                items.append(row[i])
                if with_labels:
                    ratings.append(row[r])
            except KeyError as e:
                raise KeyError(
                    f"test_dl: row {k} has no {e.args[0]!r} (keys: {list(row.keys())[:10]}).\n"
                    f"help: give each row {u!r} and {i!r}" + (f" and {r!r}" if with_labels else "")
                ) from None
        elif isinstance(row, tuple | list) and len(row) >= 2 + with_labels:
            users.append(row[0])
            items.append(row[1])
            if with_labels:
                ratings.append(row[2])
        else:
            raise TypeError(
                f"test_dl: row {k} is {type(row).__name__} {str(row)[:80]}; expected a dict with {u!r} and "
                f"{i!r}, or a (user, item) tuple.\nhelp: e.g. dls.test_dl([{{{u!r}: 196, {i!r}: 242}}])"
            )
    for col, vals in ((u, users), (i, items)):
        missing = [k for k, v in enumerate(vals) if v is None or (isinstance(v, float) and math.isnan(v))]
        if missing:
            raise ValueError(
                f"test_dl: rows {missing[:5]} have no {col!r}.\nhelp: give every row a user and an item id"
            )
    return users, items, ratings
