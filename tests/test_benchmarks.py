"""The benchmark suite runs end to end (--quick, CPU) and writes JSON with numbers for every suite.

No timing thresholds: a shared CI machine's timings are noise; this only checks that nothing rotted.
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _suites() -> list[str]:
    """The suite names of benchmarks/run.py's SUITES, read without importing it (it is not on sys.path)."""
    tree = ast.parse((REPO / "benchmarks" / "run.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SUITES":
            return [ast.literal_eval(k) for k in node.value.keys]  # type: ignore[attr-defined]
    raise AssertionError("benchmarks/run.py has no SUITES")


SUITES = _suites()


def _numbers(cfg: dict[str, Any]) -> list[float]:
    return [v for vals in cfg["values"].values() for v in vals]


@pytest.mark.slow
def test_quick_suite_writes_json_with_numbers(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    # two halves at once (the stream suite is mostly waiting on its own subprocesses): both cores busy
    halves = {"stream": "stream", "rest": ",".join(n for n in SUITES if n != "stream")}

    def start(name: str, suites: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "benchmarks.run", "--suite", suites, "--quick", "--device", "cpu"]
        cmd += ["--out", str(tmp_path / f"{name}.json"), "--cache-dir", str(tmp_path / f"cache-{name}")]
        with open(tmp_path / f"{name}.log", "wb") as log:  # a file, not a pipe: neither waits on a reader
            return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    procs = {name: start(name, suites) for name, suites in halves.items()}
    codes = {name: p.wait(timeout=600) for name, p in procs.items()}
    outputs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in halves}
    for name, code in codes.items():
        assert code == 0, outputs[name][-6000:]
    assert "== overhead ==" in outputs["rest"] and "== import ==" in outputs["rest"]

    docs = [json.loads((tmp_path / f"{name}.json").read_text()) for name in halves]
    doc = {"env": docs[0]["env"], "suites": {k: v for d in docs for k, v in d["suites"].items()}}
    assert set(doc["suites"]) == set(SUITES)
    assert doc["env"]["versions"]["torch"] and doc["env"]["device"] == "cpu" and doc["env"]["date"]
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
