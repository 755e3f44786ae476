"""The benchmark suite runs end to end (--quick, CPU) and writes JSON with numbers for every suite.

No timing thresholds: a shared CI machine's timings are noise; this only checks that nothing rotted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _numbers(cfg: dict[str, Any]) -> list[float]:
    return [v for vals in cfg["values"].values() for v in vals]


@pytest.mark.slow
def test_quick_suite_writes_json_with_numbers(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.run", "--suite", "all", "--quick", "--device", "cpu",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "== overhead ==" in proc.stdout and "== import ==" in proc.stdout

    doc = json.loads(out.read_text())
    assert doc["env"]["versions"]["torch"] and doc["env"]["device"] == "cpu" and doc["env"]["date"]
    assert {"overhead", "data", "accuracy", "import", "clean"} <= set(doc["suites"])
    for name, suite in doc["suites"].items():
        assert suite["configs"], f"{name}: no config ran; notes: {suite['notes']}"
        for cfg in suite["configs"]:
            nums = _numbers(cfg)
            assert nums, (name, cfg["config"])
            assert all(math.isfinite(v) and v > 0 for v in nums), (name, cfg["config"], cfg["values"])
            assert cfg["baseline"] in cfg["values"], (name, cfg["config"])
            summary = cfg["summary"]
            assert summary[cfg["baseline"]]["ratio"] == pytest.approx(1.0)
            assert all(s["ratio"] is not None for s in summary.values()), (name, cfg["config"])

    overhead = {c["config"]: c for c in doc["suites"]["overhead"]["configs"]}
    assert {"small/fp32", "cpu-mlp/fp32"} <= set(overhead)
    assert {"plain", "lamina"} <= set(overhead["cpu-mlp/fp32"]["values"])
    assert {"torchvision", "lamina"} <= set(doc["suites"]["data"]["configs"][-1]["values"])
    acc = doc["suites"]["accuracy"]["configs"][0]
    assert all(0.0 <= a[0] <= 1.0 for a in (x["accuracy"] for x in acc["extra"].values()))
    assert {"torch", "lamina.vision"} <= set(doc["suites"]["import"]["configs"][0]["values"])
    clean = {c["config"]: c for c in doc["suites"]["clean"]["configs"]}
    assert {"plain", "lamina"} <= set(clean["labels-from-oof"]["values"])
    for name in ("labels-from-oof", "duplicates-corrupt"):
        for extra in clean[name]["extra"].values():
            shares = [v for k, vs in extra.items() if k.endswith(("found", "recall")) for v in vs]
            assert shares and all(0.0 <= v <= 1.0 for v in shares), (name, extra)
    text = {c["config"]: c for c in doc["suites"]["text"]["configs"]}
    assert {"quality", "speed", "padding"} <= set(text)
    assert all(0.0 <= x["auc"][0] <= 1.0 for x in text["quality"]["extra"].values())
