"""What every suite shares: options, timing, interleaved repetitions, the environment, the table and the JSON.

A suite builds *contenders* (one per library), each a callable that runs one repetition and returns one
figure. `interleave` runs them A, B, C, A, B, C, ... after un-recorded warm-up runs, so slow drifts of a
shared machine (other processes, thermal limits) hit every contender alike. Ratios are *time* ratios
against the baseline (the plain PyTorch loop): 1.10 means 10% slower, whatever the unit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.metadata
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import torch

__all__ = [
    "REPO_ROOT",
    "ConfigResult",
    "Contender",
    "Options",
    "Sample",
    "SuiteResult",
    "environment",
    "format_table",
    "interleave",
    "log",
    "optional_import",
    "peak_memory_mb",
    "quiet",
    "reset_peak_memory",
    "seconds",
    "sync",
    "write_json",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Options:
    """Command-line choices every suite reads."""

    device: str = "cpu"  # "cpu" or "cuda"
    quick: bool = False
    reps: int | None = None  # None: the suite's default (fewer with --quick)
    workers: int | None = None  # DataLoader workers for the data and accuracy suites; None: lamina's default
    cache_dir: Path = Path("/tmp/lamina-benchmarks")
    configs: tuple[str, ...] = ()  # overhead configs to run; empty: the defaults for the device
    all_variants: bool = False  # bf16 / compile variants on the CPU too (slow; checks the code paths)
    variants: tuple[str, ...] = ()  # overhead variants to run (fp32, bf16-cl, ...); empty: all that apply

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def n_reps(self, full: int, quick: int) -> int:
        return self.reps if self.reps is not None else (quick if self.quick else full)


@dataclass(frozen=True)
class Sample:
    """One repetition's figure, plus side figures (e.g. peak memory) by name."""

    value: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Contender:
    """One library's way of doing the measured job; `run()` does one repetition.

    An `optional` contender (fastai, Lightning, a callback still being written) that raises is dropped with
    a note instead of failing the suite.
    """

    name: str
    run: Callable[[], Sample]
    optional: bool = False
    close: Callable[[], None] | None = None


@dataclass
class ConfigResult:
    """Every repetition of every contender for one configuration of a suite."""

    name: str
    unit: str
    lower_is_better: bool
    baseline: str
    params: dict[str, Any] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)  # contender -> its like-for-like reference

    def ratios(self, name: str, ref: str | None = None) -> list[float]:
        """Per-repetition time ratios of `name` against `ref` (default: the baseline), paired by round."""
        base, mine = self.values.get(ref or self.baseline, []), self.values.get(name, [])
        out = []
        for b, m in zip(base, mine, strict=False):
            if b > 0 and m > 0:
                out.append(m / b if self.lower_is_better else b / m)
        return out

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per contender: median, min, max, n, the median paired ratio and the ratio of medians."""
        out: dict[str, dict[str, Any]] = {}
        base = self.values.get(self.baseline)
        for name, vals in self.values.items():
            if not vals:
                continue
            med = statistics.median(vals)
            row: dict[str, Any] = {"median": med, "min": min(vals), "max": max(vals), "n": len(vals)}
            r = self.ratios(name)
            row["ratio"] = statistics.median(r) if r else None
            ref = self.refs.get(name)
            if ref is not None and self.ratios(name, ref):
                row[f"x_{ref}"] = statistics.median(self.ratios(name, ref))
            if base:
                bmed = statistics.median(base)
                row["ratio_of_medians"] = (
                    (med / bmed if self.lower_is_better else bmed / med) if med and bmed else None
                )
            for k, xs in self.extra.get(name, {}).items():
                if xs:
                    row[k] = statistics.median(xs)
            out[name] = row
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.name,
            "unit": self.unit,
            "lower_is_better": self.lower_is_better,
            "baseline": self.baseline,
            "ratio_meaning": "time ratio vs the baseline: >1 is slower (median of per-repetition ratios)",
            "params": self.params,
            "refs": self.refs,
            "values": self.values,
            "extra": self.extra,
            "summary": self.summary(),
            "notes": self.notes,
        }


@dataclass
class SuiteResult:
    name: str
    configs: list[ConfigResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, msg: str) -> None:
        """Record a note (a skipped column, a caveat) and print it now."""
        self.notes.append(msg)
        log(f"note: {msg}")

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.name, "configs": [c.to_json() for c in self.configs], "notes": self.notes}


# --------------------------------------------------------------------------------------------------------
# running


def log(msg: str) -> None:
    """Progress for the person watching: stderr, flushed (stdout holds the table)."""
    print(msg, file=sys.__stderr__, flush=True)


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a timer read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """{"peak_mem_mb": ...} on CUDA; nothing on the CPU (the contenders share one process's RSS)."""
    if device.type == "cuda":
        return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    return {}


class _FakeTTY(io.StringIO):
    """A sink that says it is a terminal: libraries then draw their live progress bars into it."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def quiet(tty: bool = False) -> Iterator[TextIO]:
    """Swallow what the libraries print (progress rows, bars); `tty=True` pretends to be a terminal."""
    sink: io.StringIO = _FakeTTY() if tty else io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield sink


def interleave(
    cfg: ConfigResult,
    contenders: Sequence[Contender],
    reps: int,
    warmup: int = 1,
    close: bool = True,
) -> ConfigResult:
    """Run `warmup` un-recorded rounds, then `reps` recorded rounds, each round every contender once in turn.

    Round r starts with contender r (mod n): A B C, B C A, C A B, ... so no contender always runs first
    (right after set-up or another library's garbage). `close=False` leaves the contenders open for
    another round of measurements.
    """
    active = list(contenders)
    for c in active:
        cfg.values.setdefault(c.name, [])

    def attempt(c: Contender) -> Sample | None:
        try:
            return c.run()
        except Exception as e:
            if not c.optional:
                raise
            msg = f"{c.name} dropped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            cfg.notes.append(msg)
            log(f"note: [{cfg.name}] {msg}")
            active.remove(c)
            return None

    def rotated(r: int) -> list[Contender]:
        k = r % len(active) if active else 0
        return active[k:] + active[:k]

    try:
        for _ in range(warmup):
            for c in list(active):
                attempt(c)
        for r in range(reps):
            log(f"  [{cfg.name}] repetition {r + 1}/{reps}")
            for c in rotated(r):
                s = attempt(c)
                if s is None:
                    continue
                cfg.values[c.name].append(s.value)
                for k, v in s.extra.items():
                    cfg.extra.setdefault(c.name, {}).setdefault(k, []).append(v)
    finally:
        for c in contenders if close else ():
            if c.close is not None:
                c.close()
    cfg.values = {k: v for k, v in cfg.values.items() if v}
    return cfg


def optional_import(name: str) -> ModuleType | None:
    """The module, or None when it (or one of its dependencies) is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --------------------------------------------------------------------------------------------------------
# reporting


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, machine and date: what a figure needs next to it to mean anything."""
    import lamina

    n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
            "timm": _version("timm"),
            "lamina": lamina.__version__,
            "fastai": _version("fastai"),
            "lightning": _version("lightning"),
        },
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu": _cpu_name(),
        "cpu_cores": n_cpu,
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = list(os.getloadavg())
    return env


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def format_table(suite: SuiteResult) -> str:
    """One block per suite: a row per (config, contender) with the median, spread, ratio and side figures."""
    head = ["config", "contender", "median", "unit", "min..max", "n", "x plain", "extra"]
    rows: list[list[str]] = []
    for cfg in suite.configs:
        for name, s in cfg.summary().items():
            extras = {
                k: v
                for k, v in s.items()
                if k not in {"median", "min", "max", "n", "ratio", "ratio_of_medians"}
            }
            rows.append(
                [
                    cfg.name,
                    name,
                    _fmt(s["median"], 4),
                    cfg.unit,
                    f"{_fmt(s['min'])}..{_fmt(s['max'])}",
                    str(s["n"]),
                    "-" if s["ratio"] is None else f"{s['ratio']:.2f}x",
                    " ".join(f"{k}={_fmt(v)}" for k, v in extras.items()),
                ]
            )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = [f"== {suite.name} ==", "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for cfg in suite.configs:
        lines += [f"  [{cfg.name}] {n}" for n in cfg.notes]
    lines += [f"  note: {n}" for n in suite.notes]
    return "\n".join(lines)


def write_json(path: Path, env: dict[str, Any], args: dict[str, Any], suites: Sequence[SuiteResult]) -> None:
    """The whole run as JSON (every repetition's figure, the ratios, the environment), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"env": env, "args": args, "suites": {s.name: s.to_json() for s in suites}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def seconds() -> float:
    """A monotonic clock in seconds (perf_counter)."""
    return time.perf_counter()
