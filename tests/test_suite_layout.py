"""The test suite's own layout: pytest imports test modules by their file name (no packages), so two test
files with one name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_names_are_unique() -> None:
    names = Counter(
        p.name for p in TESTS.rglob("*.py") if p.name.startswith(("test_", "_")) and p.name != "__init__.py"
    )
    dupes = sorted(n for n, k in names.items() if k > 1)
    assert not dupes, f"test modules share a name (rename one, e.g. test_<area>_...): {dupes}"
