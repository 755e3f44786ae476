"""Run one script in 2 CPU processes (gloo) with the environment `torchrun` would give them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the worker script, then leaves with os._exit once its output is flushed: two gloo processes sometimes
# abort in the interpreter's C++ teardown after all their work ("terminate called without an active
# exception"; plain torch 2.14 too: 3 of 40 runs without destroy_process_group, 0 of 48 with). lamina frees
# the DDP wrapper and destroys the group at exit (0 of 60); the tests keep this guard so that a teardown
# outside what they test cannot make them flaky. The worker's own exit code (sys.exit) is kept.
_RUN_THEN_EXIT = """
import os, runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    if isinstance(e.code, str):
        print(e.code, file=sys.stderr)
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    script: Path, args: list[str], world: int = 2, timeout: float = 150, check: bool = True
) -> list[tuple[int, str]]:
    """Start `script args` as ranks 0..world-1 and wait; a rank that fails fails the test with its log
    (`check=False`: each rank's exit code and log are returned instead)."""
    port, procs = free_port(), []
    for rank in range(world):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        cmd = [sys.executable, "-c", _RUN_THEN_EXIT, str(script), *args]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"the distributed workers did not finish in {timeout:g} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if check and any(p.returncode != 0 for p in procs):
        pytest.fail(
            "\n".join(
                f"rank {r} (exit {p.returncode}):\n{log[-3000:]}"
                for r, (p, log) in enumerate(zip(procs, logs, strict=True))
            )
        )
    return [(p.returncode, log) for p, log in zip(procs, logs, strict=True)]
