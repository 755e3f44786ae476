"""Exceptions shared by the layers, with messages for people: what came, what was expected, `help:`."""

from __future__ import annotations

__all__ = ["MissingKeyError"]


class MissingKeyError(KeyError):
    """A KeyError whose message prints as written (a plain KeyError prints its repr: newlines escaped)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
