"""Transform: typed `encodes`/`decodes` chosen by the type of the data; Pipeline, an ordered chain of them.

Mark methods with `@encodes` / `@decodes`, each annotated with the type it handles; a call picks the most
specific one (via `functools.singledispatch`) and passes values of other types through unchanged:

>>> class Double(Transform):
...     @encodes
...     def numbers(self, x: int) -> int: return 2 * x
...     @encodes
...     def words(self, x: str) -> str: return x + x
...     @decodes
...     def halve(self, x: int) -> int: return x // 2
>>> Double()((3, "a", 1.5))
(6, 'aa', 1.5)

The fastai spelling, several methods all named `encodes` in one class, works too, but linters and type
checkers flag each redefinition (ruff F811, mypy no-redef); the decorators keep user code clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from lamina.core.dispatch import TypeDispatch
from lamina.core.types import retain_type

__all__ = [
    "DisplayedTransform",
    "ItemTransform",
    "Pipeline",
    "Transform",
    "TransformsLike",
    "as_transform",
    "as_transforms",
    "decodes",
    "encodes",
]

_METHODS = ("encodes", "decodes")
_ROLE = "_lamina_transform_role"
F = TypeVar("F", bound=Callable[..., Any])


def encodes(f: F) -> F:
    """Mark a method of a Transform subclass as an `encodes` for the type its argument is annotated with."""
    setattr(f, _ROLE, "encodes")
    return f


def decodes(f: F) -> F:
    """Mark a method of a Transform subclass as a `decodes` for the type its argument is annotated with."""
    setattr(f, _ROLE, "decodes")
    return f


class _TfmDict(dict[str, Any]):
    """Class namespace that keeps every definition of `encodes`/`decodes` instead of the last one."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _METHODS and callable(value):
            self.setdefault(f"_{key}_defs", []).append(value)
        else:
            super().__setitem__(key, value)


class _TfmMeta(type):
    """Collects the `encodes`/`decodes` of a class and its bases into dispatch tables."""

    @classmethod
    def __prepare__(mcs, name: str, bases: tuple[type, ...], **kwds: Any) -> _TfmDict:  # type: ignore[override]
        return _TfmDict()

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwds: Any) -> _TfmMeta:
        plain = not isinstance(ns, _TfmDict)
        ns = dict(ns)
        for m in _METHODS:
            # a plain namespace (`type(name, (Transform,), {"encodes": f})`) holds one definition as is
            if plain and callable(ns.get(m)):
                ns[f"_{m}_defs"] = [*ns.get(f"_{m}_defs", []), ns.pop(m)]
        for value in list(ns.values()):
            role = getattr(value, _ROLE, None)
            if role in _METHODS and callable(value):
                ns[f"_{role}_defs"] = [*ns.get(f"_{role}_defs", []), value]
        cls = super().__new__(mcs, name, bases, ns, **kwds)
        for m in _METHODS:
            inherited: list[Callable[..., Any]] = []
            for b in reversed(cls.__mro__[1:]):
                inherited += b.__dict__.get(f"_{m}_defs", [])
            own = ns.get(f"_{m}_defs", [])
            for f in own:
                _check_signature(name, m, f)
            setattr(cls, f"_{m}_table", TypeDispatch([*inherited, *own]))
        return cls


def _check_signature(cls_name: str, role: str, f: Callable[..., Any]) -> None:
    """An `encodes`/`decodes` takes `self` and the value: refuse other shapes when the class is made."""
    import inspect

    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 2 or (len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params)):
        raise TypeError(
            f"{cls_name}: {role} {getattr(f, '__name__', f)!r} must take (self, x), "
            f"got ({', '.join(p.name for p in params)}).\n"
            f"help: define it as a method `def {getattr(f, '__name__', role)}(self, x: SomeType)`"
        )


class Transform(metaclass=_TfmMeta):
    """Applies `encodes` (and reverses with `decodes`) to a value, or to each element of a tuple.

    - `split_idx`: `None` runs on every split; 0 only on the training set (augmentation); 1 only on
      validation. A call without a split (`t(x)`) runs whatever the transform's `split_idx`.
    - `order`: Pipelines sort their transforms by it (stable).
    - `setup(items)`: learns state from the training items once (a vocabulary, statistics); plain data.
    - `enc`/`dec`: build a transform from plain functions instead of subclassing.
    - `stores` / `to_stored(values)`: a type transform whose work is worth doing once, when items are
      written as shards (tokenizing), turns raw values into what the shards hold; its `encodes` takes both.
    """

    split_idx: int | None = None
    order: int = 0
    stores: ClassVar[bool] = False
    _encodes_table: ClassVar[TypeDispatch]
    _decodes_table: ClassVar[TypeDispatch]

    def __init__(
        self,
        enc: Callable[..., Any] | None = None,
        dec: Callable[..., Any] | None = None,
        split_idx: int | None = None,
        order: int | None = None,
    ) -> None:
        self._enc = TypeDispatch([enc]) if enc is not None else None
        self._dec = TypeDispatch([dec]) if dec is not None else None
        self._func_name = getattr(enc, "__name__", None) if enc is not None else None
        if split_idx is not None:
            self.split_idx = split_idx
        if order is not None:
            self.order = order

    @property
    def name(self) -> str:
        """A short name for summaries and reprs."""
        return self._func_name or type(self).__name__

    @property
    def has_decodes(self) -> bool:
        return bool(self._dec) or bool(self._decodes_table)

    def __call__(self, x: Any, split_idx: int | None = None) -> Any:
        if split_idx is not None and self.split_idx is not None and split_idx != self.split_idx:
            return x
        return self._apply(x, self._enc, self._encodes_table)

    def decode(self, x: Any, split_idx: int | None = None) -> Any:
        """Undo `encodes` where a `decodes` exists for the value's type; pass everything else through."""
        if split_idx is not None and self.split_idx is not None and split_idx != self.split_idx:
            return x
        return self._apply(x, self._dec, self._decodes_table)

    def setup(self, items: Sequence[Any]) -> None:
        """Learn state from the (already transformed) training items; the default learns nothing."""

    def to_stored(self, values: Sequence[Any]) -> list[Any]:
        """What shards hold for these raw values (with `stores = True`); the default: the values."""
        return list(values)

    @property
    def stored_as(self) -> str:
        """Names what `to_stored` makes (a tokenizer's fingerprint): shards written by one transform are
        read only by a transform with the same name."""
        return type(self).__name__

    def _apply(self, x: Any, inst: TypeDispatch | None, table: TypeDispatch) -> Any:
        if isinstance(x, tuple):
            return tuple(self._apply_one(e, inst, table) for e in x)
        return self._apply_one(x, inst, table)

    def _apply_one(self, x: Any, inst: TypeDispatch | None, table: TypeDispatch) -> Any:
        if inst is not None:
            f = inst.lookup(type(x))
            return x if f is None else retain_type(f(x), x)
        f = table.lookup(type(x))
        return x if f is None else retain_type(f(self, x), x)

    def __repr__(self) -> str:
        return f"{self.name}"


class ItemTransform(Transform):
    """A Transform that sees the whole tuple (e.g. to move points with the image they belong to)."""

    def _apply(self, x: Any, inst: TypeDispatch | None, table: TypeDispatch) -> Any:
        return self._apply_one(x, inst, table)


class DisplayedTransform(Transform):
    """A Transform whose repr lists its public settings, for summaries."""

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("split_idx",)}
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{self.name}({inner})"


def as_transform(f: Transform | Callable[..., Any]) -> Transform:
    """A Transform as is; a plain function wrapped as one (dispatching on its annotation, if any)."""
    if isinstance(f, Transform):
        return f
    if isinstance(f, type) and issubclass(f, Transform):
        return f()
    if not callable(f):
        raise TypeError(f"expected a Transform or a callable, got {type(f).__name__}: {f!r}")
    return Transform(enc=f)


TransformsLike = (
    Transform | type[Transform] | Callable[..., Any] | Iterable[Transform | Callable[..., Any]] | None
)


def as_transforms(tfms: TransformsLike) -> list[Transform]:
    """A list of Transforms from None, one transform (`item_tfms=Resize(28)`), or any iterable of them."""
    if tfms is None:
        return []
    if isinstance(tfms, Transform | type) or not isinstance(tfms, Iterable):
        return [as_transform(tfms)]
    return [as_transform(t) for t in tfms]


def _overrides_setup(t: Transform) -> bool:
    return type(t).setup is not Transform.setup


class _Mapped(Sequence[Any]):
    """A lazy view of `items` through a chain of transforms: setup pays only for what it reads."""

    def __init__(self, items: Sequence[Any], tfms: Sequence[Transform], split_idx: int | None) -> None:
        self.items, self.tfms, self.split_idx = items, list(tfms), split_idx

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        x = self.items[i]
        for t in self.tfms:
            x = t(x, split_idx=self.split_idx)
        return x

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]


class Pipeline:
    """Transforms applied in `order`; `decode` runs their `decodes` in reverse.

    `split_idx` selects the split this pipeline serves (0 train, 1 valid): transforms restricted to the
    other split are skipped.
    """

    def __init__(self, tfms: TransformsLike = None, split_idx: int | None = None) -> None:
        self.split_idx = split_idx
        self.tfms: list[Transform] = sorted(as_transforms(tfms), key=lambda t: t.order)

    def __call__(self, x: Any) -> Any:
        for t in self.tfms:
            x = t(x, split_idx=self.split_idx)
        return x

    def decode(self, x: Any) -> Any:
        for t in reversed(self.tfms):
            x = t.decode(x, split_idx=self.split_idx)
        return x

    def setup(self, items: Sequence[Any]) -> None:
        """Set up each transform on the training items as they arrive at it (computed lazily)."""
        for i, t in enumerate(self.tfms):
            if _overrides_setup(t):
                t.setup(_Mapped(items, self.tfms[:i], self.split_idx))

    def add(self, tfms: TransformsLike) -> None:
        """Add transforms (one or several) and keep the chain sorted by order."""
        self.tfms = sorted([*self.tfms, *as_transforms(tfms)], key=lambda t: t.order)

    def with_split(self, split_idx: int | None) -> Pipeline:
        """The same transforms (shared, not copied) serving another split."""
        p = Pipeline(split_idx=split_idx)
        p.tfms = self.tfms
        return p

    def __len__(self) -> int:
        return len(self.tfms)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.tfms)

    def __repr__(self) -> str:
        return f"Pipeline: {' -> '.join(repr(t) for t in self.tfms) or '(empty)'}"
