"""Argument checks shared by the vision transforms: sizes and string choices, with errors that say the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

__all__ = ["MAX_SIZE", "as_size", "check_choice"]

MAX_SIZE = 8192  # the largest output side in pixels (a 8192 x 8192 RGB image is 200 MB as uint8)


def as_size(size: int | Sequence[int], who: str) -> tuple[int, int]:
    """`size` as (height, width); an int means a square."""
    if isinstance(size, int) and not isinstance(size, bool):
        hw: tuple[int, ...] = (size, size)
    elif isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        hw = tuple(size)
    else:
        raise ValueError(
            f"{who}: size must be an int or a (height, width) pair, got {size!r}.\n"
            f"help: pass e.g. {who}(224) or {who}((224, 320))"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_SIZE for s in hw):
        raise ValueError(
            f"{who}: size must hold ints in [1, {MAX_SIZE}], got {size!r}.\nhelp: pass e.g. {who}(224)"
        )
    return hw[0], hw[1]


def check_choice(value: str, choices: Any, what: str, who: str) -> str:
    """`value` when it is one of the `Literal` type `choices`; else an error that lists them."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(
            f"{who}: unknown {what} {value!r}.\nhelp: use one of {', '.join(repr(a) for a in allowed)}"
        )
    return value
