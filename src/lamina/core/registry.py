"""Name -> class registries, so that an export can name its transforms and models instead of pickling them.

Register a Transform with `@register_transform("name")` and give it `to_config()` (plain JSON data) and,
when its constructor does not take that config as keyword arguments, a `from_config` classmethod.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lamina.core.errors import MissingKeyError

__all__ = [
    "NotExportableError",
    "lookup_function",
    "lookup_loaders",
    "lookup_loss",
    "lookup_model",
    "lookup_model_check",
    "lookup_transform",
    "model_recipe",
    "register_function",
    "register_loaders",
    "register_loss",
    "register_model",
    "register_transform",
    "registered_name",
]

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])

_TRANSFORMS: dict[str, type] = {}
_MODELS: dict[str, Callable[..., Any]] = {}
_FUNCTIONS: dict[str, Callable[..., Any]] = {}
_LOSSES: dict[str, type] = {}
_MODEL_CHECKS: dict[str, Callable[..., None]] = {}
_LOADERS: dict[str, type] = {}

# checks a recipe before its factory runs: (factory kwargs, {tensor name: shape} of the weights) -> None,
# raising ValueError or TypeError for kwargs the weights cannot be for (see register_model's `check`)
ModelCheck = Callable[[Mapping[str, Any], Mapping[str, tuple[int, ...]]], None]

RECIPE_ATTR = "_lamina_recipe"


class NotExportableError(TypeError):
    """Raised at export time for a model, transform or function that has no registered recipe."""


def _register(table: dict[str, Any], kind: str, name: str, obj: Any) -> None:
    if name in table and table[name] is not obj:
        old = table[name]
        # re-importing the same module (e.g. under a test runner) re-creates the class: allow same qualname
        if getattr(old, "__qualname__", None) != getattr(obj, "__qualname__", None):
            raise ValueError(
                f"{kind} name {name!r} is already registered to {old!r}; got another object {obj!r}.\n"
                f"help: pick a unique name, e.g. prefixed by your package ('mypkg.{name}')"
            )
    table[name] = obj


def register_transform(name: str) -> Callable[[C], C]:
    """Class decorator: make a Transform exportable under `name`."""

    def deco(cls: C) -> C:
        _register(_TRANSFORMS, "transform", name, cls)
        cls._registered_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def register_loaders(name: str) -> Callable[[C], C]:
    """Class decorator for a DataLoaders class that exports its own data recipe (an application whose data
    is not a Datasets of per-element pipelines, e.g. a table): it gives `export_recipe()` (plain JSON data)
    and a classmethod `from_recipe(config, device)` that rebuilds empty loaders able to `test_dl`."""

    def deco(cls: C) -> C:
        _register(_LOADERS, "loaders", name, cls)
        cls._registered_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def register_model(name: str, check: ModelCheck | None = None) -> Callable[[F], F]:
    """Decorator for a model factory: the models it returns remember `(name, kwargs)`, so an export can
    name them and `load_learner` rebuilds them by calling the factory again with those (JSON) kwargs.

    `check(kwargs, shapes)`, if given, vets a recipe from a file before the factory is called: it raises
    ValueError for arguments the weights' shapes cannot be for, or that would reach the network or disk.

    >>> @register_model("my_cnn")
    ... def my_cnn(n_out: int = 10) -> nn.Module: ...
    """

    def deco(f: F) -> F:
        sig = inspect.signature(f)

        @functools.wraps(f)
        def factory(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            model = f(*args, **kwargs)
            # a factory returning an object that refuses attributes gets no recipe
            with contextlib.suppress(AttributeError):
                object.__setattr__(model, RECIPE_ATTR, (name, dict(bound.arguments)))
            return model

        _register(_MODELS, "model", name, factory)
        if check is not None:
            _MODEL_CHECKS[name] = check
        return factory  # type: ignore[return-value]

    return deco


def model_recipe(model: Any) -> tuple[str, dict[str, Any]] | None:
    """The `(factory name, kwargs)` a registered factory stamped on `model`, if any."""
    return getattr(model, RECIPE_ATTR, None)


def register_loss(name: str) -> Callable[[C], C]:
    """Class decorator for a loss: exportable under `name` with its `to_config()` keyword arguments."""

    def deco(cls: C) -> C:
        _register(_LOSSES, "loss", name, cls)
        cls._registered_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def register_function(name: str) -> Callable[[F], F]:
    """Decorator for a plain function used in a pipeline (a getter), so an export can name it."""

    def deco(f: F) -> F:
        _register(_FUNCTIONS, "function", name, f)
        f._registered_name = name  # type: ignore[attr-defined]
        return f

    return deco


def registered_name(obj: Any) -> str | None:
    """The name `obj` was registered under: a function's own, or a transform's class's own (not a base's)."""
    if isinstance(obj, type) or not callable(obj) or hasattr(type(obj), "_encodes_table"):
        cls = obj if isinstance(obj, type) else type(obj)
        return cls.__dict__.get("_registered_name")
    return getattr(obj, "_registered_name", None)


def _lookup(table: dict[str, Any], kind: str, name: str, how: str) -> Any:
    if name not in table:
        known = ", ".join(sorted(table)) or "(none)"
        raise MissingKeyError(
            f"unknown {kind} {name!r} (registered: {known}).\n"
            f"help: import the module that registers it ({how}) before loading, e.g. `import lamina.vision` "
            "for 'vision.' names, or check the file's origin"
        )
    return table[name]


def lookup_transform(name: str) -> type:
    return _lookup(_TRANSFORMS, "transform", name, "@register_transform")


def lookup_model(name: str) -> Callable[..., Any]:
    return _lookup(_MODELS, "model", name, "@register_model")


def lookup_model_check(name: str) -> ModelCheck | None:
    """The `check` registered with the model factory `name`, if any."""
    lookup_model(name)
    return _MODEL_CHECKS.get(name)


def lookup_loss(name: str) -> type:
    return _lookup(_LOSSES, "loss", name, "@register_loss")


def lookup_loaders(name: str) -> type:
    return _lookup(_LOADERS, "loaders", name, "@register_loaders")


def lookup_function(name: str) -> Callable[..., Any]:
    return _lookup(_FUNCTIONS, "function", name, "@register_function")
