"""The README's python blocks by heading, for the tests that run them as printed."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first python block under the README section `## heading`."""
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    m = re.compile(r"```python\n(?P<code>.*?)```", re.S).search(text, start)
    assert m is not None, f"no python block under {heading!r}"
    return m.group("code")
