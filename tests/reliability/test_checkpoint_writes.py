"""Checkpoint writes killed half-way (kill -9): the last good checkpoint stays whole and loadable, the next
write removes the leftover temporary files, and files get the umask's permissions."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lamina.train.checkpoint import FORMAT, FORMAT_VERSION, atomic_write_bytes, read_checkpoint

_WRITER = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    from lamina.train.checkpoint import atomic_write_bytes

    path, mode = Path(sys.argv[1]), sys.argv[2]
    meta = {"lamina": json.dumps({"format": "lamina.checkpoint", "format_version": 1})}

    def write(step):
        def w(tmp):
            save_file({"model.w": torch.full((256, 1024), float(step))}, tmp, metadata=meta)
            if mode == "die-in-write" and step > 0:
                # a writer's own scratch file beside its output (safetensors' Rust writer makes .tmpXXXXXX)
                open(os.path.join(os.path.dirname(tmp), ".tmpWRITER"), "w").close()
                os.kill(os.getpid(), signal.SIGKILL)  # the temp file is whole but never renamed
        return w

    atomic_write_bytes(path, write(0))
    print("ready", flush=True)
    for step in range(1, 100000):
        atomic_write_bytes(path, write(step))
    """
)


def _meta() -> dict[str, str]:
    import json

    return {"lamina": json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION})}


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "ckpt.safetensors")


def _run_and_kill(path: Path, mode: str, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    if mode == "random":
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["die-in-write", "random"])
def test_killed_checkpoint_write_keeps_the_last_good_one(tmp_path: Path, mode: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "ckpt.safetensors"
    delays = [0.0] if mode == "die-in-write" else [random.uniform(0.05, 0.4) for _ in range(3)]
    for delay in delays:
        _run_and_kill(path, mode, delay)
        if mode == "die-in-write":
            left = _temps(tmp_path)
            assert len(left) == 1 and ".lamina-tmp-" in left[0], left  # recognisable by name
        tensors, _ = read_checkpoint(path)  # whole and loadable: one of the steps, every value alike
        w = tensors["model.w"]
        assert w.shape == (256, 1024) and bool((w == w.flatten()[0]).all())
        if mode == "die-in-write":
            assert float(w[0, 0]) == 0.0  # the write that was killed left the previous file
            assert _temps(tmp_path) == []  # and loading removed its temporary file
    atomic_write_bytes(path, lambda tmp: save_file({"model.w": torch.ones(2)}, tmp, metadata=_meta()))
    assert _temps(tmp_path) == []  # the next write removed what the killed ones left
    assert torch.equal(read_checkpoint(path)[0]["model.w"], torch.ones(2))


def test_checkpoint_gets_the_umask_permissions(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        path = tmp_path / "ckpt.safetensors"
        atomic_write_bytes(path, lambda tmp: save_file({"model.w": torch.ones(2)}, tmp, metadata=_meta()))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_stale_temp_of_a_dead_writer_is_removed_on_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "ckpt.safetensors"
    atomic_write_bytes(path, lambda tmp: save_file({"model.w": torch.ones(2)}, tmp, metadata=_meta()))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = tmp_path / f".ckpt.safetensors.lamina-tmp-{int(dead.stdout)}-abcdef"
    stale.write_bytes(b"half a file")
    read_checkpoint(path)
    assert not stale.exists()
