"""The README's "Tables" block, run exactly as printed (all of Adult, 3 epochs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _readme import readme_block


@pytest.mark.slow
def test_tables_readme_block_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(readme_block("Tables"), "README.md: Tables", "exec"), ns)
    learn = ns["learn"]
    assert learn.recorder.values[-1][2] >= 0.85  # printed: about 0.86 (the majority class: 0.76)
    assert ns["label"] == "<=50K" and ns["probs"].shape == (2,)
    assert (tmp_path / "adult.lamina").exists()
