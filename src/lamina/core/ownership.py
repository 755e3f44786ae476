"""Who owns a value passed to a transform: lets batch transforms work in place on a freshly built batch.

A DataLoader builds each batch itself (collation, a copy to the device), so nobody else holds it: the
batch transforms may overwrite it instead of allocating a new batch-sized tensor for every step. On a
CPU that allocation is the expensive part (a 77 MB float batch is fresh pages from the OS each time).
Outside `owned_input()` (a user calling a transform, `DataBlock.summary`, decoding) transforms never
modify their input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

__all__ = ["input_is_owned", "owned_input", "writable_in_place"]

_OWNED: ContextVar[bool] = ContextVar("lamina_owned_input", default=False)


@contextmanager
def owned_input() -> Iterator[None]:
    """Inside this block the values given to transforms belong to the pipeline alone (may be overwritten).

    A transform run under it must return a new tensor or its input, never a tensor it keeps (a cached
    constant): a later transform may write into what it returns.
    """
    token = _OWNED.set(True)
    try:
        yield
    finally:
        _OWNED.reset(token)


def input_is_owned() -> bool:
    """True inside `owned_input()`: a transform may modify its input in place."""
    return _OWNED.get()


def writable_in_place(t: torch.Tensor) -> bool:
    """True when `t` is owned (see `owned_input`) and an in-place op on it is safe: dense, no autograd."""
    return (
        input_is_owned()
        and not t.requires_grad
        and (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last))
    )
