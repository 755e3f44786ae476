"""The README's "Finding data errors" example, run as printed (the MNIST sample, 2 folds of 2 epochs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.slow


def test_readme_example_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    section = text[text.index("## Finding data errors") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(code[1], "README.md: Finding data errors", "exec"), ns)
    issues = ns["issues"]
    assert len(issues.items) == 5000 and issues.noise.shape == (10, 10)
    assert (tmp_path / "review.html").stat().st_size > 10_000
    # the sample's own labels are nearly clean: few are called wrong even by 2 quick folds
    assert issues.n_wrong_labels < 400, issues.summary()
