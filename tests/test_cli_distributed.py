"""`lamina train PATH --strategy fsdp` under two gloo processes (the environment torchrun gives): the model
is sharded while it trains, process 0 alone writes the run folder, and its model predicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _cli import run_lamina
from _dist import launch

pytestmark = pytest.mark.distributed


def test_train_with_fsdp_on_two_processes(mnist_small: Path, tmp_path: Path) -> None:
    script = tmp_path / "lamina_cli.py"
    script.write_text("import sys\nfrom lamina.cli import main\nraise SystemExit(main(sys.argv[1:]))\n")
    run = tmp_path / "run"
    logs = launch(
        script,
        ["train", str(mnist_small), "--epochs", "2", "--bs", "16", "--workers", "0", "--strategy", "fsdp",
         "--out", str(run)],
        timeout=300,
    )  # fmt: skip
    assert "FSDP-sharded run over 2 process(es)" in logs[0][1]
    assert "run folder:" in logs[0][1] and "run folder:" not in logs[1][1]  # written once
    acc = float((run / "metrics.csv").read_text().splitlines()[-1].split(",")[3])
    assert acc >= 0.5  # 10 digits, 240 training images, 2 short epochs (chance: 0.1)
    files = [str(sorted((mnist_small / d).iterdir())[0]) for d in ("3", "8")]
    r = run_lamina("predict", str(run / "model.lamina"), *files, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [o["file"] for o in json.loads(r.stdout)] == files
