"""Running the `lamina` command line as a user would, with a non-GUI plot backend.

`run_lamina` calls the console script's `main` in this process (its stdout, stderr and exit code captured;
the working folder, torch's random state and thread count restored), which spares each call the ~3 s of
starting Python and importing torch; `isolated=True` runs `python -m lamina.cli` in a subprocess instead,
for what only a real process shows (the entry module, exit on a signal, environment variables)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path


def run_lamina(*args: str, cwd: Path, isolated: bool = False) -> subprocess.CompletedProcess[str]:
    """`lamina ARGS` in `cwd`: its exit code, stdout and stderr."""
    if isolated:
        env = {**os.environ, "MPLBACKEND": "Agg"}
        return subprocess.run(
            [sys.executable, "-m", "lamina.cli", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    import torch

    from lamina.cli import main

    out, err = io.StringIO(), io.StringIO()
    here, rng, threads = Path.cwd(), torch.get_rng_state(), torch.get_num_threads()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("always")  # each call prints its warnings, as a fresh process would
            warnings.showwarning = _to_stderr
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's usage errors, --help, sys.exit("message")
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)  # what Python prints when a process exits so
    finally:
        os.chdir(here)
        torch.set_rng_state(rng)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["lamina", *args], code, out.getvalue(), err.getvalue())


def _to_stderr(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print a warning to the current (captured) stderr, as Python does in a process of its own."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
