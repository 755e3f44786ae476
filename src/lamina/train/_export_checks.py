"""The checks that make `load_learner` safe on a file from a stranger, and `export` refuse what it cannot
rebuild: bounded JSON, the safetensors header read before anything is built, a model built on the meta
device (or under an allocation budget) before any real memory, and the module structure compared.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LEN",
    "AllocationBudget",
    "ExportError",
    "OverBudgetError",
    "TensorSpec",
    "build_on_meta",
    "check_finite",
    "compare_structure",
    "loads_bounded",
    "output_width",
    "read_header",
    "structure",
]

MAX_JSON_DEPTH = 32  # a recipe is ~6 levels deep
MAX_INT_DIGITS = 24  # no size in a recipe needs more (Python refuses > 4300 digits with a raw ValueError)
MAX_NAME_LEN = 256  # registered names and dict keys
_MAX_HEADER = 16 * 2**20


class ExportError(ValueError):
    """A file that is not a valid lamina export (or was tampered with), or a learner lamina cannot export."""


class OverBudgetError(MemoryError):
    """A model factory asked for more memory than the weights in the file can account for."""


# -- JSON ----------------------------------------------------------------------------------------------------
def _bounded_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(s)} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(s)


def _no_constant(s: str) -> Any:
    raise ValueError(f"{s} is not a JSON number")


def _walk(x: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(x, dict):
        for k, v in x.items():
            if len(k) > MAX_NAME_LEN:
                raise ValueError(f"a key of {len(k)} characters (at most {MAX_NAME_LEN})")
            _walk(v, depth + 1)
    elif isinstance(x, list):
        for v in x:
            _walk(v, depth + 1)
    elif isinstance(x, float) and not math.isfinite(x):
        raise ValueError(f"a non-finite number {x}")


def loads_bounded(raw: bytes, what: str, help_: str) -> Any:
    """JSON with integers of at most MAX_INT_DIGITS digits, finite numbers, and bounded nesting."""
    try:
        doc = json.loads(raw, parse_int=_bounded_int, parse_constant=_no_constant)
        _walk(doc)
    except RecursionError:
        raise ExportError(f"{what} is nested too deeply.\nhelp: {help_}") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ExportError(f"{what} is not valid JSON for lamina: {e}\nhelp: {help_}") from None
    return doc


# -- the safetensors header ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One tensor as the safetensors header declares it."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_header(weights: bytes, where: str, help_: str) -> dict[str, TensorSpec]:
    """Every tensor's dtype and shape from the safetensors header, checked against the file's size."""

    def bad(why: str) -> ExportError:
        return ExportError(f"{where}: weights.safetensors is unreadable: it has {why}.\nhelp: {help_}")

    if len(weights) < 8:
        raise bad("no header")
    n = int.from_bytes(weights[:8], "little")
    if n > min(len(weights) - 8, _MAX_HEADER):
        raise bad(f"a header of {n} bytes in a file of {len(weights)}")
    header = loads_bounded(weights[8 : 8 + n], f"{where}: the weights' header", help_)
    if not isinstance(header, dict):
        raise bad("a header that is not a JSON object")
    data_len = len(weights) - 8 - n
    out: dict[str, TensorSpec] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and entry["dtype"] in _DTYPES
        shape = entry.get("shape") if ok else None
        offsets = entry.get("data_offsets") if ok else None
        ok = ok and isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)
        ok = (
            ok
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
        )
        if not ok:
            raise bad(f"a malformed entry for {name!r}: {str(entry)[:200]}")
        spec = TensorSpec(_DTYPES[entry["dtype"]], tuple(shape))  # type: ignore[arg-type]
        start, end = offsets  # type: ignore[misc]
        if not 0 <= start <= end <= data_len or end - start != spec.nbytes:
            raise bad(f"offsets {offsets} for {name!r} ({entry['dtype']} {shape}) that do not fit the file")
        out[name] = spec
    return out


# -- building a model without trusting its size --------------------------------------------------------------
def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module | None:
    """The factory's model on the meta device (no memory, no values), or None if it cannot be built there
    (e.g. it reads a tensor's value while building)."""
    try:
        with torch.device("meta"):
            model = factory()
    except Exception:
        return None
    return model if isinstance(model, nn.Module) else None


def _int_list(a: Any) -> bool:
    return isinstance(a, (list, tuple)) and len(a) > 0 and all(type(i) is int for i in a)


class AllocationBudget(TorchDispatchMode):
    """Counts the bytes that tensor ops allocate and raises OverBudgetError past `budget` bytes; a size
    argument larger than what is left is refused before the op runs (so nothing huge is ever allocated)."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget, self.used = budget, 0

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        left = self.budget - self.used
        on_meta = kwargs.get("device") == torch.device("meta") or any(
            isinstance(t, torch.Tensor) and t.is_meta for t in tree_flatten(args)[0]
        )
        for a in () if on_meta else (*args, *kwargs.values()):
            if _int_list(a) and math.prod(max(i, 0) for i in a) * 8 > left:
                raise OverBudgetError(f"{func} asked for a tensor of shape {list(a)}")
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage.data_ptr() not in inputs:
                    self.used += storage.nbytes()
        if self.used > self.budget:
            raise OverBudgetError(f"the model took more than {self.budget} bytes to build")
        return out


# -- comparing models ----------------------------------------------------------------------------------------
def structure(model: nn.Module) -> Iterator[tuple[str, str, str]]:
    """(name, class, extra_repr) of every module, in order: what a rebuild must reproduce."""
    for name, m in model.named_modules():
        yield name, f"{type(m).__module__}.{type(m).__qualname__}", m.extra_repr()


def compare_structure(live: nn.Module, rebuilt: nn.Module) -> str | None:
    """The first difference between two models' module structure or tensors, None if they are alike."""
    a, b = list(structure(live)), list(structure(rebuilt))
    for x, y in zip(a, b, strict=False):
        if x != y:
            return f"module {x[0] or '(root)'!r} is {x[1]}({x[2]}) but the recipe builds {y[1]}({y[2]})"
    if len(a) != len(b):
        longer, more = (a, "has") if len(a) > len(b) else (b, "lacks")
        extra = longer[min(len(a), len(b))]
        return f"the model {more} module {extra[0]!r} ({extra[1]}) compared with what the recipe builds"
    sa, sb = live.state_dict(), rebuilt.state_dict()
    for k in sa.keys() | sb.keys():
        if k not in sa or k not in sb:
            return f"tensor {k!r} is only in {'the model' if k in sa else 'the rebuilt model'}"
        if sa[k].shape != sb[k].shape or sa[k].dtype != sb[k].dtype:
            return (
                f"tensor {k!r} is {sa[k].dtype} {tuple(sa[k].shape)} but the recipe builds "
                f"{sb[k].dtype} {tuple(sb[k].shape)}"
            )
    return None


def output_width(model: nn.Module) -> int | None:
    """Outputs of the model's last layer with weights when it is a Linear or a Conv, else None."""
    for m in reversed(list(model.modules())):
        if isinstance(m, nn.Linear):
            return m.out_features
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.out_channels
        if any(True for _ in m.parameters(recurse=False)):
            return None
    return None


def check_finite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first tensor holding NaN or infinity, None if all are finite."""
    for k, v in state.items():
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            return k
    return None
