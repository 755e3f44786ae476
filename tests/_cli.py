"""Running the `lamina` console script as a user would: in a subprocess, with a non-GUI plot backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_lamina(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m lamina.cli ARGS` in `cwd`: its exit code, stdout and stderr."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "lamina.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
