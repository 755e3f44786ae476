"""Datasets: raw items -> typed tuples, lazily, through one Pipeline per tuple element, split into train/valid."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from lamina.core import Pipeline, Transform

__all__ = ["Datasets", "Getter", "ItemError", "Subset", "describe_item", "get_item"]


class Getter(Transform):
    """A getter (get_x, get_y, ...) at the head of an element's pipeline: reads the element from a raw item.

    Exports leave getters out: an exported learner predicts from what the getter returns (a file path).
    """

    def __init__(self, func: Callable[[Any], Any]) -> None:
        super().__init__(enc=func)
        self.func = func


class ItemError(RuntimeError):
    """Raised when building one item fails: names the item, the element and the step."""


def get_item(items: Any, i: int) -> Any:
    """Item `i` of a list, or row `i` of a DataFrame."""
    return items.iloc[i] if hasattr(items, "iloc") else items[i]


def describe_item(o: Any) -> str:
    """A short readable name for an item in messages: a path, or a DataFrame row's first values."""
    if hasattr(o, "to_dict"):
        d = o.to_dict()
        return "row(" + ", ".join(f"{k}={v!r}" for k, v in list(d.items())[:4]) + ")"
    s = repr(str(o)) if hasattr(o, "__fspath__") else repr(o)
    return s if len(s) < 120 else s[:117] + "..."


class Datasets:
    """Items with one pipeline per element of the output tuple; `splits` selects training and validation.

    `tfms[k]` turns a raw item into element k (its getter first, then its type transforms). Pipelines are
    set up once on the training items (a vocabulary, say), then checked on the validation items.
    """

    def __init__(
        self,
        items: Any,
        tfms: Sequence[Sequence[Transform | Callable[..., Any]]],
        splits: tuple[Sequence[int], Sequence[int]] | None = None,
        n_inp: int | None = None,
        do_setup: bool = True,
    ) -> None:
        self.items = items
        self.pipelines = [Pipeline(t) for t in tfms]
        n = len(items)
        self.splits: tuple[list[int], list[int]] = (
            (list(splits[0]), list(splits[1])) if splits is not None else (list(range(n)), [])
        )
        self.n_inp = n_inp if n_inp is not None else max(1, len(self.pipelines) - 1)
        if do_setup:
            self.setup()

    def setup(self) -> None:
        """Set each pipeline up on the training items, then check the validation items against it."""
        train_items = _Items(self.items, self.splits[0])
        valid_items = _Items(self.items, self.splits[1])
        for k, p in enumerate(self.pipelines):
            try:
                p.setup(train_items)
            except ItemError:
                raise
            except Exception as e:
                raise ItemError(f"Datasets: setting up element {k} ({p}) failed: {e}") from e
            _check(p, valid_items)

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
                        f"  {type(e).__name__}: {e}"
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
        return f"Datasets({len(self.splits[0])} train, {len(self.splits[1])} valid, {len(self.pipelines)} elements)"


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

    @property
    def items(self) -> list[Any]:
        return [get_item(self.dsets.items, i) for i in self.idxs]
