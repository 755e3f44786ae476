"""Datasets: raw items -> typed tuples, lazily, through one Pipeline per element, split into train/valid."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from lamina.core import ItemTransform, Pipeline, Transform

__all__ = ["Datasets", "Getter", "ItemError", "Subset", "describe_item", "describe_value", "get_item"]


class Getter(ItemTransform):
    """A getter (get_x, get_y, ...) at the head of an element's pipeline: reads the element from a raw item.

    Exports leave getters out: an exported learner predicts from what the getter returns (a file path).
    """

    def __init__(self, func: Callable[[Any], Any]) -> None:
        super().__init__()
        self.func = func
        self._func_name = getattr(func, "__name__", None) or type(func).__name__

    def encodes(self, o: object) -> Any:
        # a getter reads every raw item whole (a tuple too), whatever its annotation says: no dispatch
        return self.func(o)


class ItemError(RuntimeError):
    """Raised when building one item fails: names the item, the element and the step."""


def get_item(items: Any, i: int) -> Any:
    """Item `i` of a list, or row `i` of a DataFrame."""
    return items.iloc[i] if hasattr(items, "iloc") else items[i]


def describe_item(o: Any) -> str:
    """A short name for an item in messages: a path, a table by its shape, or a row's first values."""
    if hasattr(o, "columns") and hasattr(o, "shape"):  # a whole table (pandas or polars DataFrame)
        cols = [str(c) for c in list(o.columns)[:8]]
        more = ", ..." if len(o.columns) > 8 else ""
        return f"{type(o).__name__} ({o.shape[0]} rows x {o.shape[1]} columns: {', '.join(cols)}{more})"
    if hasattr(o, "to_dict"):
        d = o.to_dict()
        vals = [f"{k}={_short(repr(v), 40)}" for k, v in list(d.items())[:4]]
        return _short("row(" + ", ".join(vals) + ")", 160)
    return _short(repr(str(o)) if hasattr(o, "__fspath__") else repr(o), 120)


def _short(s: str, n: int) -> str:
    return s if len(s) < n else s[: n - 3] + "..."


def describe_value(x: Any) -> str:
    """A built value named for messages and summaries: a tensor by its type, shape and dtype."""
    if isinstance(x, tuple):
        return "(" + ", ".join(describe_value(e) for e in x) + ")"
    if isinstance(x, torch.Tensor):
        if x.ndim == 0:
            return f"{type(x).__name__}({x.item()!r})"
        return f"{type(x).__name__} {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    s = repr(x)
    return f"{type(x).__name__} {s if len(s) < 60 else s[:57] + '...'}"


class Datasets:
    """Items with one pipeline per element of the output tuple; `splits` selects training and validation.

    `tfms[k]` turns a raw item into element k (its getter first, then its type transforms). Pipelines are
    set up once on the training items (a vocabulary, say), then checked on the validation items; a getter
    that fails or returns None there is reported with the item it failed on.
    `skip_bad_files`: loaders built from these datasets replace an item that fails to build (a corrupt
    image) by the next good one and warn, instead of raising (see `DataLoader`).
    """

    def __init__(
        self,
        items: Any,
        tfms: Sequence[Sequence[Transform | Callable[..., Any]]],
        splits: tuple[Sequence[int], Sequence[int]] | None = None,
        n_inp: int | None = None,
        do_setup: bool = True,
        skip_bad_files: bool = False,
    ) -> None:
        self.items = items
        self.pipelines = [Pipeline(t) for t in tfms]
        n = len(items)
        self.splits: tuple[list[int], list[int]] = (
            (list(splits[0]), list(splits[1])) if splits is not None else (list(range(n)), [])
        )
        self.n_inp = n_inp if n_inp is not None else max(1, len(self.pipelines) - 1)
        self.skip_bad_files = skip_bad_files
        if do_setup:
            self.setup()

    def setup(self) -> None:
        """Set each pipeline up on the training items, then check the validation items against it.

        Only getters and the transforms that learn something read the items: nothing is decoded here.
        """
        train_items = _Items(self.items, self.splits[0])
        valid_items = _Items(self.items, self.splits[1])
        for k, p in enumerate(self.pipelines):
            if len(train_items):
                self._check_getter(k, p, self.splits[0][0])  # a missing column fails here, at construction
            try:
                p.setup(train_items)
            except ItemError:
                raise
            except Exception as e:
                found = self._diagnose(k, p)
                if found is not None:
                    raise ItemError(found) from e
                raise ItemError(
                    f"Datasets: setting up element {k} ({p}) on {len(train_items)} training items failed:\n"
                    f"  {type(e).__name__}: {e}{_help(e, _SUMMARY_HELP)}"
                ) from e
            try:
                _check(p, valid_items)
            except Exception as e:
                found = self._diagnose(k, p)
                if found is not None:
                    raise ItemError(found) from e
                raise

    def _role(self, k: int) -> str:
        return "get_x" if k < self.n_inp else "get_y"

    def _check_getter(self, k: int, p: Pipeline, index: int) -> None:
        if not p.tfms or not isinstance(p.tfms[0], Getter):
            return
        item = get_item(self.items, index)
        try:
            p.tfms[0](item)
        except Exception as e:
            raise ItemError(
                f"Datasets: the getter {p.tfms[0].name!r} ({self._role(k)}, element {k}) failed on item "
                f"{index} {describe_item(item)}:\n  {type(e).__name__}: {e}"
                f"{_help(e, 'help: fix the getter for this kind of item')}"
            ) from e

    def _diagnose(self, k: int, p: Pipeline) -> str | None:
        """After a failed setup: the item on which element k's getter fails or returns an unusable None."""
        if not p.tfms or not isinstance(p.tfms[0], Getter):
            return None
        getter, role = p.tfms[0], self._role(k)
        nones: list[int] = []
        for idxs in self.splits:
            for i in idxs:
                item = get_item(self.items, i)
                try:
                    v = getter(item)
                except Exception as e:
                    return (
                        f"Datasets: the getter {getter.name!r} ({role}, element {k}) failed on item {i} "
                        f"{describe_item(item)}:\n  {type(e).__name__}: {e}"
                        f"{_help(e, 'help: fix the getter for this kind of item')}"
                    )
                if v is None:
                    nones.append(i)
        if not nones:
            return None
        try:
            _through(p.tfms[1:], None)
        except Exception:  # None is not a value this element accepts
            n = sum(len(s) for s in self.splits)
            return (
                f"Datasets: the getter {getter.name!r} ({role}, element {k}) returned None for {len(nones)} "
                f"of {n} items, e.g. item {nones[0]} {describe_item(get_item(self.items, nones[0]))}.\n"
                "help: check the labelling function on that item; every item needs a value"
            )
        return None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return self.build(get_item(self.items, i), index=i)

    def build(
        self,
        item: Any,
        index: int | None = None,
        elements: Sequence[int] | None = None,
        skip_getters: bool = False,
    ) -> tuple[Any, ...]:
        """The typed tuple for one raw item; a failing step raises an ItemError that names item and step.

        `skip_getters`: `item` is already what the getter would return (a path to predict on).
        """
        out = []
        for k in elements if elements is not None else range(len(self.pipelines)):
            x = item
            for t in self.pipelines[k]:
                if skip_getters and isinstance(t, Getter):
                    continue
                try:
                    x = t(x)
                except ItemError:
                    raise
                except Exception as e:
                    where = f"item {index} " if index is not None else "item "
                    raise ItemError(
                        f"{where}{describe_item(item)}: step {t.name!r} of element {k} failed:\n"
                        f"  {type(e).__name__}: {e}{_help(e, _SUMMARY_HELP)}"
                    ) from e
            out.append(x)
        return tuple(out)

    def decode(self, o: tuple[Any, ...]) -> tuple[Any, ...]:
        """Decode a typed tuple element by element through its pipeline, in reverse."""
        return tuple(p.decode(x) for p, x in zip(self.pipelines, o, strict=False))

    @property
    def train(self) -> Subset:
        return Subset(self, self.splits[0])

    @property
    def valid(self) -> Subset:
        return Subset(self, self.splits[1])

    def subset(self, split: int) -> Subset:
        return Subset(self, self.splits[split])

    def new_empty(self) -> Datasets:
        """The same (set-up) pipelines over no items: what an exported learner keeps for inference."""
        ds = Datasets([], [], n_inp=self.n_inp, do_setup=False)
        ds.pipelines = self.pipelines
        return ds

    def __repr__(self) -> str:
        n_train, n_valid = len(self.splits[0]), len(self.splits[1])
        return f"Datasets({n_train} train, {n_valid} valid, {len(self.pipelines)} elements)"


_SUMMARY_HELP = "help: DataBlock.summary(source) shows every step on one item; fix that step or that item"


def _help(e: BaseException, default: str) -> str:
    """A `help:` line for a wrapped error, unless its own message already has one."""
    return "" if "help:" in str(e) else f"\n{default}"


def _check(p: Pipeline, items: Sequence[Any]) -> None:
    """Run each transform's optional `check` (e.g. unseen labels) on the validation items."""
    for i, t in enumerate(p.tfms):
        check = getattr(t, "check", None)
        if check is not None and len(items):
            mapped = [_through(p.tfms[:i], o) for o in items]
            check(mapped)


def _through(tfms: Sequence[Transform], o: Any) -> Any:
    for t in tfms:
        o = t(o)
    return o


class _Items(Sequence[Any]):
    """A view of some items (list or DataFrame rows) by index."""

    def __init__(self, items: Any, idxs: Sequence[int]) -> None:
        self.items, self.idxs = items, idxs

    def __len__(self) -> int:
        return len(self.idxs)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return get_item(self.items, self.idxs[i])

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]


class Subset(Sequence[tuple[Any, ...]]):
    """The training or validation part of a Datasets."""

    def __init__(self, dsets: Datasets, idxs: Sequence[int]) -> None:
        self.dsets, self.idxs = dsets, list(idxs)

    def __len__(self) -> int:
        return len(self.idxs)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.dsets[self.idxs[i]]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for i in range(len(self)):
            yield self[i]

    def describe(self, i: int) -> str:
        """Item `i` of this subset named for messages: its index in the Datasets and its raw value."""
        j = self.idxs[i]
        return f"item {j} {describe_item(get_item(self.dsets.items, j))}"

    @property
    def items(self) -> list[Any]:
        return [get_item(self.dsets.items, i) for i in self.idxs]
