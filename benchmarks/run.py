"""Entry point: `python -m benchmarks.run --suite NAME|all [--device D] [--quick]` (suites: SUITES below).

Prints one table per suite and writes every repetition's figure, the ratios and the environment as JSON
(`--out`, by default `benchmarks/results/<suite>-<device>[-quick].json`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks._common import REPO_ROOT, Options, SuiteResult, environment, format_table, log, write_json

SUITES = {
    "overhead": "overhead",
    "data": "data",
    "accuracy": "accuracy",
    "import": "imports",
    "collab": "collab",
    "tabular": "tabular",
    "text": "text",
    "clean": "clean",
    "stream": "stream",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="all", help=f"all, or suites comma-separated: {','.join(SUITES)}")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes: the whole run in well under a minute on 2 cores"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON file to write")
    p.add_argument(
        "--reps", type=int, default=None, help="recorded repetitions per contender (default: per suite)"
    )
    p.add_argument(
        "--configs",
        default="",
        help="overhead configs, comma-separated: small,large,cpu-mlp (default: by device)",
    )
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: lamina's default)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lamina-benchmarks",
        help="where generated data sets are kept between runs (not in the repository)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads; default 1 on the CPU (OpenMP spin-waits make 2-thread timings on a "
        "busy machine swing 50x), torch's default on CUDA",
    )
    p.add_argument(
        "--variants",
        default="",
        help="overhead variants, comma-separated: fp32,bf16-cl,bf16-cl-compile,bf16-cl-compile-ro,"
        "bf16-cl-auto (default: every one the device runs)",
    )
    p.add_argument(
        "--all-variants", action="store_true", help="bf16 / channels_last / compile variants on the CPU too"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    if args.reps is not None and args.reps < 1:
        print("--reps must be >= 1", file=sys.stderr)
        return 2
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    opts = Options(
        device=args.device,
        quick=args.quick,
        reps=args.reps,
        workers=args.workers,
        cache_dir=args.cache_dir,
        configs=tuple(c.strip() for c in args.configs.split(",") if c.strip()),
        all_variants=args.all_variants,
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
    )
    names = list(SUITES) if args.suite == "all" else [n.strip() for n in args.suite.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        print(
            f"--suite: unknown {unknown or args.suite!r}; choose all or from {', '.join(SUITES)}",
            file=sys.stderr,
        )
        return 2
    default_name = f"{args.suite.replace(',', '+')}-{args.device}{'-quick' if args.quick else ''}.json"
    out = args.out or REPO_ROOT / "benchmarks" / "results" / default_name
    env = environment(opts.torch_device)
    log(f"device: {env['device_name']} ({env['device']}), torch {env['versions']['torch']}")
    results: list[SuiteResult] = []
    failed = False
    for name in names:
        module = importlib.import_module(f"benchmarks.{SUITES[name]}")
        started = time.perf_counter()
        try:
            res: SuiteResult = module.run_suite(opts)
        except Exception as e:
            failed = True
            traceback.print_exc()
            res = SuiteResult(name, notes=[f"suite failed: {type(e).__name__}: {e}"])
        res.notes.append(f"suite took {time.perf_counter() - started:.1f} s")
        results.append(res)
        print(format_table(res), flush=True)
        print(flush=True)
        # written after every suite: a crash keeps what ran before it
        write_json(out, env, vars(args) | {"out": str(out)}, results)
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
