"""Pick an implementation by the runtime type of an argument, on top of `functools.singledispatch`.

`TypeDispatch` holds functions whose second parameter (after `self`) is annotated with a type; calling
`lookup(type(x))` returns the implementation for the most specific registered class, or `None` when no
registered class matches (the caller then passes the value through unchanged).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["TypeDispatch", "annotated_types"]


def _no_impl(x: object) -> None:  # the `object` fallback: signals "no implementation"
    return None


def _name(func: object) -> str:
    return getattr(func, "__qualname__", None) or type(func).__qualname__


def annotated_types(func: Callable[..., Any]) -> tuple[type, ...]:
    """The classes named by the annotation of `func`'s first data parameter (after `self`).

    An unannotated parameter (or `Any`, `object`) means `object`; `A | B` (or `Union[A, B]`) registers
    each member; a callable object is read through its `__call__`.
    """
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
    if not params:
        raise TypeError(f"{_name(func)}: an encodes/decodes needs a parameter for the value")
    target: Any = func
    if not (inspect.isfunction(func) or inspect.ismethod(func)) and callable(
        type(func).__dict__.get("__call__")
    ):
        target = type(func).__call__  # a callable instance: its class's __call__ holds the annotations
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # forward references that cannot be resolved: fall back to the raw annotation
        hints = {}
    ann = hints.get(params[0].name, params[0].annotation)
    if ann is inspect.Parameter.empty or ann is Any:
        return (object,)
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        members = typing.get_args(ann)
    else:
        members = (ann,)
    out: list[type] = []
    for m in members:
        origin = typing.get_origin(m) or m
        if not isinstance(origin, type):
            raise TypeError(
                f"{_name(func)}: cannot dispatch on the annotation {m!r} of parameter {params[0].name!r}; "
                "expected a class (or a union of classes).\n"
                "help: annotate with a class importable where the function is defined, or leave it out"
            )
        out.append(origin)
    return tuple(out)


class TypeDispatch:
    """A table of functions keyed by the class of their first data argument; most specific class wins."""

    def __init__(self, funcs: typing.Iterable[Callable[..., Any]] = ()) -> None:
        self._sd = functools.singledispatch(_no_impl)
        self._funcs: list[Callable[..., Any]] = []
        for f in funcs:
            self.add(f)

    def add(self, func: Callable[..., Any]) -> None:
        """Register `func` for every class named by its annotation."""
        for cls in annotated_types(func):
            self._sd.register(cls, func)
        self._funcs.append(func)

    def lookup(self, cls: type) -> Callable[..., Any] | None:
        """The implementation for `cls`, or `None` when only the pass-through fallback matches."""
        f = self._sd.dispatch(cls)
        return None if f is _no_impl else f

    def __bool__(self) -> bool:
        return bool(self._funcs)

    def __len__(self) -> int:
        return len(self._funcs)

    def __repr__(self) -> str:
        keys = [c.__name__ for c in self._sd.registry if c is not object]
        return f"TypeDispatch({', '.join(keys)})"
