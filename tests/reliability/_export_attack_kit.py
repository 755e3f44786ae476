"""Helpers of the export attack tests: rewrite a real export's members, and watch what loading it costs
(bytes torch allocates, seconds, network and file access) without letting it allocate anything large."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["LIMIT_BYTES", "SECONDS", "Meter", "export_fixture", "members", "rewrite", "watched", "write"]

LIMIT_BYTES = 100 * 2**20  # extra memory a refused (or small accepted) file may make load_learner take
SECONDS = 5.0  # CPU seconds: a refusal takes well under one; a loaded 2 MB file a fraction of one


def export_fixture() -> ModuleType:
    """tests/train/_export_fixture.py (its registered tiny model and transform), imported once."""
    if "_export_fixture" in sys.modules:
        return sys.modules["_export_fixture"]
    path = Path(__file__).parents[1] / "train" / "_export_fixture.py"
    spec = importlib.util.spec_from_file_location("_export_fixture", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_export_fixture"] = mod
    spec.loader.exec_module(mod)
    return mod


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def write(path: Path, content: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in content.items():
            z.writestr(name, data)
    return path


def rewrite(
    src: Path,
    dst: Path,
    edit: Callable[[dict[str, Any]], None] | None = None,
    text: Callable[[str], str] | None = None,
    weights: bytes | None = None,
) -> Path:
    """`src` with its learner.json edited (as JSON, then as text) and the weights' checksum kept right."""
    m = members(src)
    if weights is not None:
        m["weights.safetensors"] = weights
    recipe = json.loads(m["learner.json"])
    recipe["weights_sha256"] = hashlib.sha256(m["weights.safetensors"]).hexdigest()
    if edit is not None:
        edit(recipe)
    doc = json.dumps(recipe)
    m["learner.json"] = (text(doc) if text is not None else doc).encode()
    return write(dst, m)


class Meter(TorchDispatchMode):
    """Counts the CPU bytes torch ops allocate; an op asking for a tensor larger than `limit` is recorded
    in `refused` and stopped before it allocates (so the old, unguarded code cannot take the machine)."""

    def __init__(self, limit: int = LIMIT_BYTES) -> None:
        super().__init__()
        self.limit, self.used, self.refused, self.seconds = limit, 0, [], 0.0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        flat = tree_flatten((args, kwargs))[0]
        meta = kwargs.get("device") == torch.device("meta") or any(
            isinstance(t, torch.Tensor) and t.is_meta for t in flat
        )
        if not meta:
            for a in (*args, *kwargs.values()):
                sizes = isinstance(a, (list, tuple)) and a and all(type(i) is int for i in a)
                if sizes and math.prod(max(i, 0) for i in a) * 4 > self.limit:
                    self.refused.append(f"{func} {list(a)[:6]}")
                    raise MemoryError(f"test meter: {func} asked for {list(a)[:6]}")
        ptrs = {t.untyped_storage().data_ptr() for t in flat if isinstance(t, torch.Tensor) and not t.is_meta}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta and t.untyped_storage().data_ptr() not in ptrs:
                self.used += t.untyped_storage().nbytes()
        return out

    def check(self) -> None:
        assert not self.refused, f"tried to allocate more than {self.limit} bytes at once: {self.refused}"
        assert self.used <= self.limit, f"allocated {self.used / 2**20:.0f} MB"
        assert self.seconds < SECONDS, f"took {self.seconds:.1f} s"


@contextmanager
def watched(limit: int = LIMIT_BYTES) -> Iterator[Meter]:
    """Meter the torch allocations and the CPU time of the block (check with `meter.check()` after it): CPU
    time, not wall time, so a machine busy with other work does not fail a file that loads quickly."""
    meter = Meter(limit)
    start = time.process_time()
    try:
        with meter:
            yield meter
    finally:
        meter.seconds = time.process_time() - start
