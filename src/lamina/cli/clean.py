"""`lamina clean PATH`, `lamina clean apply decisions.csv`, `lamina clean undo [PATH]`.

`clean PATH` trains out-of-fold models on the images (folders or a CSV, read as `lamina train` reads them)
and writes `issues.csv` and a self-contained `review.html`; the page downloads `decisions.csv`, which
`apply` carries out (quarantine, relabel, an undo journal) and `undo` reverses.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lamina.data import DataLoaders

__all__ = ["add_clean_parser", "cmd_clean"]

DataArgs = Callable[[argparse.ArgumentParser], None]
MakeDataLoaders = Callable[[argparse.Namespace], "DataLoaders"]


def add_clean_parser(sub: Any, add_data_args: DataArgs, dataloaders: MakeDataLoaders) -> None:
    """Add the `clean` command to the `lamina` parser, reading data with the same options as `train`."""
    c = sub.add_parser(
        "clean",
        help="find wrong labels, duplicates and broken files, review them in a browser, apply or undo",
        description="lamina clean PATH: scan and write a review page. lamina clean apply DECISIONS.csv: "
        "apply the page's decisions (nothing is deleted: see the quarantine beside PATH). "
        "lamina clean undo [PATH]: put everything back.",
    )
    add_data_args(c)
    c.add_argument("target", nargs="?", default=None, help="after apply: the decisions CSV; after undo: "
                   "the dataset folder, its decisions CSV or a journal")  # fmt: skip
    c.add_argument("--arch", default="test_resnet", help="timm architecture for the fold models")
    c.add_argument("--folds", type=int, default=5, help="out-of-fold models to train (default 5)")
    c.add_argument("--epochs", type=int, default=2, help="epochs per fold model (short: default 2)")
    c.add_argument("--lr", type=float, default=1e-2)
    c.add_argument(
        "--out", default=None, help="folder for issues.csv and review.html (default runs/clean-<time>)"
    )
    c.add_argument(
        "--quick",
        action="store_true",
        help="train one model and rank by its own predictions: about `--folds` times faster, but biased "
        "(a model that learned a wrong label in training tends to agree with it)",
    )
    c.add_argument("--max-items", type=int, default=2000, help="items on the review page (worst first)")
    c.add_argument(
        "--allow-new-labels",
        action="store_true",
        help="apply: let a relabel create a class that does not exist",
    )
    c.set_defaults(func=lambda args: cmd_clean(args, dataloaders))


def cmd_clean(args: argparse.Namespace, dataloaders: MakeDataLoaders) -> int:
    if args.path == "apply":
        return _apply(args)
    if args.path == "undo":
        return _undo(args)
    if args.target is not None:
        raise ValueError(
            f"lamina clean: unexpected {args.target!r} after {args.path!r}.\n"
            "help: lamina clean PATH | lamina clean apply decisions.csv | lamina clean undo PATH "
            "(a folder named apply or undo: write ./apply)"
        )
    return _scan(args, dataloaders)


def _scan(args: argparse.Namespace, dataloaders: MakeDataLoaders) -> int:
    import torch

    from lamina.clean import DatasetSource, find_issues
    from lamina.data import samples

    torch.manual_seed(args.seed)
    root = Path(args.path) if args.path is not None else samples.mnist_sample()
    if args.quick:
        args.skip_bad_files = True  # the one model trains on the data as they are; the scan reports them
    dls = dataloaders(args)
    source = DatasetSource(
        root.absolute(),
        labels_csv=Path(args.csv) if args.csv else None,
        fn_col=str(args.fn_col),
        label_col=str(args.label_col),
    )
    start = time.perf_counter()
    if args.quick:
        from lamina.vision import vision_learner

        print(
            f"quick mode: one {args.arch} model trained on the training split ranks every item by its own "
            "predictions. They are biased: on its training items it tends to agree with the given labels, "
            "so label errors there are missed more often. Drop --quick for out-of-fold predictions."
        )
        learn = vision_learner(dls, args.arch, pretrained=False)
        learn.fit_one_cycle(args.epochs, args.lr)
        issues = find_issues(learn, quick=True, source=source, seed=args.seed, log=print)
    else:
        issues = find_issues(
            dls, args.arch, folds=args.folds, epochs=args.epochs, lr=args.lr, source=source, seed=args.seed,
            log=print,
        )  # fmt: skip
    out = Path(args.out) if args.out else Path("runs") / time.strftime("clean-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    issues.to_csv(out / "issues.csv")
    if issues.noise is not None:
        issues.noise.round(2).to_csv(out / "noise.csv")
    page = issues.review(out / "review.html", max_items=args.max_items)
    print(issues.summary())
    print(f"scanned in {time.perf_counter() - start:.1f} s")
    print(f"review page: {page}  (open it in a browser; its button downloads decisions.csv)")
    print("then: lamina clean apply decisions.csv")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from lamina.clean import apply_decisions

    if args.target is None:
        raise ValueError(
            "lamina clean apply: expected the decisions CSV.\nhelp: lamina clean apply decisions.csv"
        )
    j = apply_decisions(args.target, allow_new_labels=args.allow_new_labels)
    c = j.counts
    what = f"{c.get('delete', 0)} quarantined, {c.get('relabel', 0)} relabelled, {c.get('keep', 0)} kept"
    print(f"applied: {what} ({len(j.moves)} files moved{', CSV rewritten, original kept' if j.csv else ''})")
    print(f"journal: {j.path}")
    print(f"undo with: lamina clean undo {j.root}")
    return 0


def _undo(args: argparse.Namespace) -> int:
    from lamina.clean import undo

    target = args.target
    if target is None:
        if not Path("decisions.csv").is_file():
            raise ValueError(
                "lamina clean undo: which dataset? No PATH given and no ./decisions.csv.\n"
                "help: lamina clean undo PATH (the dataset folder, its decisions CSV or a journal-*.json)"
            )
        target = "decisions.csv"
    j = undo(target)
    print(f"undone: {len(j.moves)} files back in place{', original CSV restored' if j.csv else ''}")
    print(f"journal: {j.path}")
    return 0
