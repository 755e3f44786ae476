"""Import suite: seconds to import lamina's packages against `import torch` alone, in fresh interpreters.

Every repetition starts one subprocess per module (interleaved: torch, torchvision, lamina.data, ...)
and times the import statement inside it, so interpreter start-up is left out and nothing is cached in
the process. A module's `minus_torch_s` is its paired difference with `import torch` (the target for
`lamina.vision` is <= 0.5 s). One extra `python -X importtime` run lists what lamina.vision imports
beyond torch, heaviest first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from benchmarks._common import (
    REPO_ROOT,
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
)

__all__ = ["importtime_breakdown", "run_suite", "time_import"]

MODULES = ("torch", "torchvision", "lamina.data", "lamina.train", "lamina.vision")
OPTIONAL = ("fastai.vision.all", "lightning")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def time_import(module: str) -> float:
    """Seconds `import <module>` takes in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"import {module} failed: {out.stderr.strip().splitlines()[-1:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _importable(module: str) -> bool:
    top = module.split(".")[0]
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({top!r}) else 1)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=_env(), timeout=60).returncode == 0


def importtime_breakdown(
    module: str = "lamina.vision", after: str = "torch", top: int = 12
) -> list[dict[str, Any]]:
    """What `module` imports once `after` is loaded: modules imported directly by a lamina module, by
    cumulative time (each line of `-X importtime`: self us | cumulative us | indented name)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {after}; import {module}"],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows: list[tuple[int, int, int, str]] = []  # (depth, self, cumulative, name) in completion order
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_txt, cum_txt, name = line[len("import time:") :].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # one space after the bar, then 2 per level
        rows.append((depth, int(self_txt), int(cum_txt), name.strip()))
    # after the line for `after` itself (depth 0), everything is the extra cost of `module`
    start = next((i for i, r in enumerate(rows) if r[0] == 0 and r[3] == after), -1) + 1
    rows = rows[start:]
    # a line's parent is the next line (in completion order) one level up
    found: list[dict[str, Any]] = []
    for i, (depth, self_us, cum, name) in enumerate(rows):
        parent = next((r[3] for r in rows[i + 1 :] if r[0] == depth - 1), None) if depth else None
        if parent is not None and parent.startswith("lamina") and not name.startswith("lamina"):
            found.append(
                {"module": name, "imported_by": parent, "cumulative_s": cum / 1e6, "self_s": self_us / 1e6}
            )
    found.sort(key=lambda r: -float(r["cumulative_s"]))
    lamina_self = sum(r[1] for r in rows if r[3].startswith("lamina")) / 1e6
    return [
        *found[:top],
        {
            "module": "lamina.* (own code, self time)",
            "imported_by": "-",
            "cumulative_s": lamina_self,
            "self_s": lamina_self,
        },
    ]


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("import")
    if opts.quick:  # torch takes seconds to import on 2 busy cores: the two modules that matter, once
        modules = ["torch", "lamina.vision"]
        suite.note("--quick: torch and lamina.vision only, one round, no warm-up")
    else:
        modules = list(MODULES)
    for m in OPTIONAL if not opts.quick else ():
        if _importable(m):
            modules.append(m)
        else:
            suite.note(f"{m.split('.')[0]} not installed: no {m} row")
    result = ConfigResult(
        "fresh-interpreter",
        "s",
        lower_is_better=True,
        baseline="torch",
        params={
            "python": sys.executable,
            "timed": "the import statement only (interpreter start-up excluded)",
        },
    )

    def runner(m: str) -> Callable[[], Sample]:
        return lambda: Sample(time_import(m))

    log(f"import: {'no' if opts.quick else 'one'} warm-up round, then the timed rounds")
    contenders = [Contender(m, runner(m), optional=m in OPTIONAL) for m in modules]
    interleave(result, contenders, reps=opts.n_reps(5, 1), warmup=0 if opts.quick else 1)
    base = result.values.get("torch", [])
    for m, vals in result.values.items():
        if m != "torch":
            result.extra.setdefault(m, {})["minus_torch_s"] = [
                v - b for v, b in zip(vals, base, strict=False)
            ]
    result.notes.append(
        "minus_torch_s: paired difference with `import torch` (target for lamina.vision: <= 0.5 s)"
    )
    suite.configs.append(result)
    if not opts.quick:
        log("import: -X importtime breakdown of lamina.vision after torch")
        breakdown = importtime_breakdown()
        suite.notes.append(
            "lamina.vision beyond torch, heaviest direct imports (cumulative s): "
            + ", ".join(f"{r['module']} ({r['cumulative_s']:.2f} via {r['imported_by']})" for r in breakdown)
        )
    return suite
