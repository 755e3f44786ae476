"""The `lamina` command: train, predict, lr-find, show-batch and datasets, for image folders and CSVs.

`lamina train` with no argument trains on the embedded MNIST sample and writes a run folder.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lamina.cli.shard import is_shards

if TYPE_CHECKING:
    from lamina.data import DataLoaders
    from lamina.train import Learner

__all__ = ["main"]

DEFAULT_ARCH = (
    "test_resnet"  # a 0.4M-parameter timm ResNet: >= 97% on the MNIST sample in a minute on 2 cores
)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        nargs="?",
        default=None,
        help="image folder (class sub-folders, or train/ and valid/); default: the embedded MNIST sample",
    )
    p.add_argument("--csv", default=None, help="a CSV of file names and labels (relative to PATH)")
    p.add_argument("--fn-col", default="0", help="CSV column with file names (name or position)")
    p.add_argument("--label-col", default="1", help="CSV column with labels (name or position)")
    p.add_argument("--label-delim", default=None, help="split labels on this string (multi-label)")
    p.add_argument("--valid-col", default=None, help="boolean CSV column marking validation rows")
    p.add_argument(
        "--masks", default=None, help="segmentation: folder of masks named like the images (any extension)"
    )
    p.add_argument(
        "--codes", default=None, help="segmentation: class names, comma-separated or a file, one per line"
    )
    p.add_argument("--valid-pct", type=float, default=0.2, help="validation share when the data has no split")
    p.add_argument(
        "--size", type=int, default=None, help="resize images to SIZE x SIZE (needed for mixed sizes)"
    )
    p.add_argument("--bs", type=int, default=64, help="batch size")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=None, help="loader worker processes (default: cores - 1)")
    p.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="replace an image that fails to load by the next good one (with a warning listing them)",
    )


class _UsageError(ValueError):
    """A bad command line: the message says what to type instead."""


def _check_valid_pct(args: argparse.Namespace) -> None:
    """Refuse a --valid-pct that leaves no validation (or no training) set, before any work."""
    if 0 < args.valid_pct < 1:
        return
    if args.csv and args.valid_col is not None:
        return  # the CSV marks the validation rows
    if args.path is not None and is_shards(args.path):
        return  # the shards hold the split they were written with
    if args.path is not None and not args.masks:
        path = Path(args.path)
        if (path / "train").is_dir() and (path / "valid").is_dir():
            return  # the folders are the split
    raise _UsageError(
        f"--valid-pct {args.valid_pct:g} leaves "
        f"{'no validation set' if args.valid_pct <= 0 else 'nothing to train on'}: training needs held-out "
        "images to measure the model on.\n"
        "help: pass a share between 0 and 1, e.g. --valid-pct 0.2 (the default), or give the split: "
        "train/ and valid/ sub-folders, or --valid-col with --csv"
    )


def _check_classes(args: argparse.Namespace, dls: DataLoaders) -> None:
    """Refuse to train a classifier on fewer than 2 classes (it would reach accuracy 1.0 learning nothing)."""
    if args.masks:
        return
    vocab = dls.vocab
    if vocab is not None and len(vocab) < 2:
        where = f"column {args.label_col!r} of {args.csv}" if args.csv else "the class sub-folders"
        raise _UsageError(
            f"found {len(vocab)} class ({', '.join(map(repr, vocab)) or 'none'}) in {where}; classification "
            "needs at least 2 classes (with one, every prediction is right and the model learns nothing).\n"
            "help: put each class's images in its own sub-folder (PATH/cat/..., PATH/dog/...), "
            "or point --label-col at the column that holds the labels"
        )


def _col(v: str | None) -> int | str | None:
    return int(v) if v is not None and v.isdigit() else v


def _dataloaders(args: argparse.Namespace) -> DataLoaders:
    from lamina.data import samples
    from lamina.vision import ImageDataLoaders, Resize

    item_tfms = [Resize(args.size)] if args.size else None
    if args.path is not None and is_shards(args.path):
        return ImageDataLoaders.from_shards(
            args.path,
            seed=args.seed,
            item_tfms=item_tfms,
            bs=args.bs,
            num_workers=args.workers,
            skip_bad_files=args.skip_bad_files,
        )
    if args.path is None:
        path = samples.mnist_sample()
        print(f"no PATH given: training on the embedded MNIST sample in {path}")
    else:
        path = Path(args.path)
        if not path.exists():
            raise SystemExit(f"lamina: {str(path)!r} does not exist")
    if args.masks:
        return _segmentation_dataloaders(args, path, item_tfms)
    if args.csv:
        return ImageDataLoaders.from_csv(
            path,
            csv_fname=args.csv,
            fn_col=_col(args.fn_col) or 0,
            label_col=_col(args.label_col) or 1,
            label_delim=args.label_delim,
            valid_col=_col(args.valid_col),
            valid_pct=args.valid_pct,
            seed=args.seed,
            item_tfms=item_tfms,
            bs=args.bs,
            num_workers=args.workers,
            skip_bad_files=args.skip_bad_files,
        )
    has_split = (path / "train").is_dir() and (path / "valid").is_dir()
    return ImageDataLoaders.from_folder(
        path,
        valid_pct=None if has_split else args.valid_pct,
        seed=args.seed,
        item_tfms=item_tfms,
        bs=args.bs,
        num_workers=args.workers,
        skip_bad_files=args.skip_bad_files,
    )


def _segmentation_dataloaders(args: argparse.Namespace, path: Path, item_tfms: Any) -> DataLoaders:
    """Images under PATH, each with the mask of the same name (any image extension) in --masks."""
    from lamina.data import get_image_files
    from lamina.vision import SegmentationDataLoaders

    masks = Path(args.masks)
    by_stem = {m.stem: m for m in get_image_files(masks)}
    images = [f for f in get_image_files(path) if masks not in f.parents]
    missing = [f.name for f in images if f.stem not in by_stem]
    if missing:
        raise FileNotFoundError(
            f"no mask in {str(masks)!r} for {len(missing)} of {len(images)} images, e.g. {missing[:3]}.\n"
            "help: name each mask like its image (cat_01.jpg -> masks/cat_01.png)"
        )
    codes: list[str] | None = None
    if args.codes:
        cf = Path(args.codes)
        codes = cf.read_text().split() if cf.is_file() else [c.strip() for c in args.codes.split(",")]

    def mask_of(f: Any) -> Path:
        return by_stem[Path(f).stem]

    return SegmentationDataLoaders.from_label_func(
        path,
        images,
        mask_of,
        codes=codes,
        valid_pct=args.valid_pct,
        seed=args.seed,
        item_tfms=item_tfms,
        bs=args.bs,
        num_workers=args.workers,
    )


def _learner(args: argparse.Namespace, dls: DataLoaders) -> Learner:
    from lamina.train import Dice, accuracy, accuracy_multi, foreground_acc
    from lamina.vision import unet_learner, vision_learner

    multi = args.csv is not None and args.label_delim is not None
    pretrained: bool | str = args.pretrained if args.pretrained else False
    if getattr(args, "masks", None):
        learn = unet_learner(
            dls, args.arch, pretrained=pretrained, metrics=[foreground_acc, Dice(multi=True)]
        )
    else:
        learn = vision_learner(
            dls, args.arch, pretrained=pretrained, metrics=accuracy_multi if multi else accuracy
        )
    if args.precision == "bf16":
        learn.to_bf16()
    elif args.precision == "fp16":
        learn.to_fp16()
    compile_mode = getattr(args, "compile", "off")
    if compile_mode != "off":
        from lamina.train.callbacks.hardware import Compile

        learn.add_cb(Compile(mode=cast(Any, compile_mode)))  # one of the parser's choices
    return learn


def _run_dir(out: str | None) -> Path:
    d = Path(out) if out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    d.mkdir(parents=True, exist_ok=True)
    return d


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from lamina.cli import tabular, text
    from lamina.train import NonFiniteLossError, TerminateOnNaN
    from lamina.train.callbacks.hardware import Compile

    if getattr(args, "user", None) is not None:  # a ratings CSV: lamina.cli.collab trains a recommender
        from lamina.cli import collab

        return collab.cmd_train(args)
    _check_valid_pct(args)
    torch.manual_seed(args.seed)
    is_text = text.wants_text(args)  # --text-col, or a folder of .txt files: lamina.cli.text
    is_table = tabular.wants_table(args)  # --target names a column of a CSV/parquet table
    if is_text:
        dls = text.text_dataloaders(args)
        learn = text.text_learner(args, dls)
    elif is_table:
        dls = tabular.tabular_dataloaders(args)
        learn = tabular.tabular_learner_for(args, dls)
    else:
        dls = _dataloaders(args)
        _check_classes(args, dls)
        learn = _learner(args, dls)
    default_epochs = text.DEFAULT_TEXT_EPOCHS if is_text else tabular.DEFAULT_TABLE_EPOCHS if is_table else 4
    epochs = args.epochs if args.epochs is not None else default_epochs
    lr: float
    if args.lr == "auto":
        sugg = learn.lr_find()
        lr = float(sugg.valley)
        print(f"lr_find suggests {lr:.2e}")
    elif args.lr is None:
        lr = text.DEFAULT_TEXT_LR if is_text else 1e-2
    else:
        lr = float(args.lr)
    learn.add_cb(TerminateOnNaN(error=True))  # a diverged run stops here: nothing is exported
    start = time.perf_counter()
    # under torchrun / accelerate launch: DDP by itself, or FSDP when asked (one process: no difference)
    sharded = learn.distributed(strategy="fsdp") if args.strategy == "fsdp" else contextlib.nullcontext()
    try:
        with sharded:
            if args.pretrained or is_text:
                learn.fine_tune(epochs, base_lr=lr)
            else:
                learn.fit_one_cycle(epochs, lr)
    except NonFiniteLossError as e:
        cause = str(e).split("\n")[0].removeprefix("TerminateOnNaN: ")
        raise _UsageError(
            f"training diverged: {cause} No model was exported.\n"
            f"help: lower the learning rate (--lr {lr / 100:.0e}), or let lr_find choose one: --lr auto"
        ) from e
    secs = time.perf_counter() - start
    from lamina.train.distributed import is_main_process

    if not is_main_process():  # under torchrun: the run folder is written once, by process 0
        return 0
    run = _run_dir(args.out)
    rec = learn.recorder
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rec.metric_names)
        w.writerows(rec.history())  # epoch, losses, metrics, seconds
    import matplotlib

    matplotlib.use("Agg")
    rec.plot_loss().savefig(run / "loss.png", dpi=100)
    learn.export(run / "model.lamina")
    if is_text:
        text.save_text_results(learn, run)
    elif is_table:
        tabular.save_tabular_results(learn, run)
    else:
        _save_interpretation(learn, run)
    final = dict(zip(rec.metric_names[1:-1], rec.values[-1], strict=True)) if rec.values else {}
    summary: dict[str, Any] = {"seconds": round(secs, 2), **{k: round(float(v), 6) for k, v in final.items()}}
    compiled = [cb for cb in learn.cbs if isinstance(cb, Compile)]
    if compiled:
        summary["compile"] = compiled[0].chosen or "eager (the trial did not finish)"
        times = {k: round(v * 1e3, 3) for k, v in compiled[0].step_times.items()}
        summary["compile_step_ms"] = times
        print(f"compile: {summary['compile']}" + (f" (ms per step: {times})" if times else ""))
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"trained in {secs:.1f} s; {', '.join(f'{k} {v:.4f}' for k, v in final.items())}")
    print(f"run folder: {run}  ({', '.join(sorted(p.name for p in run.iterdir()))})")
    return 0


def _save_interpretation(learn: Learner, run: Path) -> None:
    """Pictures of the results: masks side by side for segmentation; else confusion matrix and top losses."""
    from lamina.core import TensorCategory, TensorMask
    from lamina.train import ClassificationInterpretation, Interpretation

    types = learn.dls.valid.batch_types
    if len(types) > learn.dls.n_inp and issubclass(types[learn.dls.n_inp], TensorMask):
        _save_shown(learn.show_results(max_n=4), run / "results.png")
        return
    interp: Interpretation
    if len(types) > learn.dls.n_inp and issubclass(types[learn.dls.n_inp], TensorCategory):
        classif = ClassificationInterpretation.from_learner(learn)
        if learn.dls.c is not None and learn.dls.c <= 40:
            classif.plot_confusion_matrix().savefig(run / "confusion_matrix.png", dpi=100)
        interp = classif
    else:  # multi-label or regression: no confusion matrix, the top losses still say what went wrong
        interp = Interpretation.from_learner(learn)
    interp.plot_top_losses(9).savefig(run / "top_losses.png", dpi=100)


def cmd_predict(args: argparse.Namespace) -> int:
    from lamina.cli.tabular import is_tabular_learner, predict_rows
    from lamina.cli.text import is_text_learner, predict_texts
    from lamina.train import load_learner

    learn = load_learner(args.model)
    if is_text_learner(learn):
        return predict_texts(learn, args)
    if is_tabular_learner(learn):
        return predict_rows(learn, args)
    for f in args.files:
        if not Path(f).exists():
            raise _UsageError(f"{f!r} does not exist.\nhelp: check the path (relative to {os.getcwd()!r})")
    out = [_prediction(learn, f, args) for f in args.files]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for r in out:
            print("\t".join(_text_row(r)))
    return 0


def _prediction(learn: Learner, f: str, args: argparse.Namespace) -> dict[str, Any]:
    """One file's prediction as JSON-able values: label and probability; the label set and every label's
    probability (multi-label); the mask file and each class's share of the pixels (segmentation)."""
    import torch

    from lamina.core import TensorMask

    label, dec, probs = learn.predict(f)
    vocab = [str(v) for v in (learn.dls.vocab or [])]
    if isinstance(label, TensorMask) or (isinstance(dec, torch.Tensor) and dec.ndim >= 2):
        codes = vocab or [str(i) for i in range(int(probs.shape[0]))]
        mask_file = _write_mask(dec, f, Path(args.out), len(codes))
        counts = dec.flatten().long().bincount(minlength=len(codes)).double()
        shares = (counts / max(1, dec.numel())).tolist()
        areas = {c: round(a, 6) for c, a in zip(codes, shares, strict=False)}
        return {"file": f, "mask": str(mask_file), "class_areas": areas}
    if isinstance(label, list | tuple):  # multi-label: the predicted set and every label's probability
        names = vocab or [str(i) for i in range(len(probs))]
        all_p = {n: round(float(p), 6) for n, p in zip(names, probs.tolist(), strict=True)}
        return {"file": f, "label": [str(lbl) for lbl in label], "probabilities": all_p}
    p = float(probs.max()) if probs.ndim and len(probs) else float(probs)
    lbl = label if isinstance(label, str | int | float) else str(label)
    return {"file": f, "label": lbl, "probability": round(p, 6)}


def _write_mask(dec: Any, f: str, out: Path, n_codes: int) -> Path:
    """The predicted mask as a PNG whose pixel values are class indices (8-bit, 16-bit past 256 classes)."""
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    arr = dec.squeeze().cpu().numpy()
    img = Image.fromarray(arr.astype(np.uint8) if n_codes <= 256 else arr.astype(np.uint16))
    dest = out / f"{Path(f).stem}_mask.png"
    img.save(dest)
    return dest


def _text_row(r: dict[str, Any]) -> list[str]:
    if "mask" in r:
        areas = ", ".join(f"{c} {a:.1%}" for c, a in r["class_areas"].items())
        return [r["file"], r["mask"], areas]
    if "probabilities" in r:
        probs = ", ".join(f"{n} {p:.4f}" for n, p in r["probabilities"].items())
        return [r["file"], ";".join(r["label"]), probs]
    return [r["file"], str(r["label"]), f"{r['probability']:.4f}"]


def cmd_lr_find(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from lamina.train.callbacks.lr_find import plot_lr_find

    torch.manual_seed(args.seed)  # the same model, batches and suggestion on every run
    dls = _dataloaders(args)
    learn = _learner(args, dls)
    sugg = learn.lr_find()
    print(f"valley {sugg.valley:.2e}  steepest {sugg.steepest:.2e}  minimum {sugg.minimum:.2e}")
    if args.out:
        plot_lr_find(sugg).savefig(args.out, dpi=100)
        print(f"plot: {args.out}")
    return 0


def _save_shown(shown: Any, path: Path) -> None:
    """Write what show_batch / show_results returned: a figure as an image, a table as CSV beside it."""
    if hasattr(shown, "savefig"):
        shown.savefig(path, dpi=100)
    else:
        shown.to_csv(path.with_suffix(".csv"), index=False)


def cmd_show_batch(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    dls = _dataloaders(args)
    _save_shown(dls.show_batch(max_n=args.max_n), Path(args.out))
    print(f"wrote {args.out}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    # lamina._external, not lamina.data.external: the latter's package imports torch (2.5 s) for nothing here
    from lamina._external.registry import DATASETS, get_dataset

    if args.action == "get":
        if not args.name:
            raise ValueError("datasets get: expected a dataset name.\nhelp: `lamina datasets` lists them")
        from lamina._external.untar import untar_data

        get_dataset(args.name)  # an unknown name fails here, with close matches, before any network
        print(untar_data(args.name))
        return 0
    for name, info in DATASETS.items():
        size = f"{info.size_bytes / 2**20:.0f} MiB" if info.size_bytes else "?"
        print(f"{name:<16} {size:>9}  {info.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamina", description="Train and use image models in a few commands."
    )
    from lamina import __version__
    from lamina.cli import collab as collab_cli
    from lamina.cli import tabular as tabular_cli
    from lamina.cli import text as text_cli

    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a classifier and write a run folder")
    _add_data_args(t)
    t.add_argument("--arch", default=DEFAULT_ARCH, help=f"timm architecture (default {DEFAULT_ARCH})")
    t.add_argument("--pretrained", default=None, help="local weights file (safetensors or timm checkpoint)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: 4 for images, 2 for texts)")
    t.add_argument(
        "--lr",
        default=None,
        help="learning rate (default: 1e-2 for images, 2e-3 for texts), or 'auto' (lr_find)",
    )
    text_cli.add_text_args(t)
    tabular_cli.add_train_args(t)
    t.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    t.add_argument(
        "--compile",
        choices=["off", "auto", "default", "reduce-overhead", "max-autotune"],
        default="off",
        help="torch.compile the model; 'auto' times eager and compiled steps first and keeps the faster",
    )
    t.add_argument("--out", default=None, help="run folder (default runs/<time>)")
    t.add_argument(
        "--strategy",
        choices=["ddp", "fsdp"],
        default="ddp",
        help="under torchrun / accelerate launch: ddp (a whole model per process) or fsdp (sharded)",
    )
    collab_cli.add_train_args(t)
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="label image files (or texts) with an exported model")
    p.add_argument("model", help="a .lamina file written by `lamina train` or learn.export")
    p.add_argument(
        "files", nargs="+", help="image files; for a text model: texts, or one CSV (see --text-col)"
    )
    p.add_argument(
        "--text-col", default=None, help="text model: the CSV column to label (default: the first)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--out",
        default="masks",
        help="segmentation: folder for the predicted masks, one <name>_mask.png per input whose pixel "
        "values are class indices (0 = the first code); default ./masks",
    )
    p.set_defaults(func=cmd_predict)

    lf = sub.add_parser("lr-find", help="suggest a learning rate")
    _add_data_args(lf)
    lf.add_argument("--arch", default=DEFAULT_ARCH)
    lf.add_argument("--pretrained", default=None)
    lf.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    lf.add_argument("--out", default=None, help="write the plot to this PNG")
    lf.set_defaults(func=cmd_lr_find)

    sb = sub.add_parser("show-batch", help="draw a batch of decoded images with their labels")
    _add_data_args(sb)
    sb.add_argument("--out", default="batch.png")
    sb.add_argument("--max-n", type=int, default=9)
    sb.set_defaults(func=cmd_show_batch)

    d = sub.add_parser("datasets", help="list the datasets lamina can download; get NAME fetches one")
    d.add_argument("action", nargs="?", choices=["get"], help="get: download, extract, print the path")
    d.add_argument("name", nargs="?", help="a dataset name from the list")
    d.set_defaults(func=cmd_datasets)
    from lamina.cli.clean import add_clean_parser
    from lamina.cli.shard import add_shard_parser

    add_clean_parser(sub, _add_data_args, _dataloaders)
    add_shard_parser(sub, _add_data_args)
    collab_cli.add_recommend_parser(sub)
    for sp in {id(v): v for v in sub.choices.values()}.values():
        sp.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _message(e: BaseException) -> str:
    """An error's message for people: as written (a KeyError's too), without the traceback that torch puts
    into an error re-raised from a loader worker."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if "\nOriginal Traceback" in msg:  # "Caught X in DataLoader worker..." + the worker's traceback
        lines = msg.split("\n")
        k = next(i for i, ln in enumerate(lines) if ln.startswith("Original Traceback"))
        k += 1
        while k < len(lines) and (lines[k].startswith(" ") or not lines[k]):
            k += 1
        rest = "\n".join(lines[k:])
        head, sep, tail = rest.partition(": ")
        msg = tail if sep and " " not in head else rest
    return msg.strip()


def _cli_help(e: BaseException, msg: str) -> str:
    """The command-line fix in place of the Python one, where lamina knows it."""
    from lamina.data.loader import ShapeMismatchError

    if isinstance(e, ShapeMismatchError):
        lines = [ln for ln in msg.split("\n") if not ln.startswith("help:")]
        return "\n".join([*lines, "help: resize every image to one size, e.g. --size 224"])
    if "skip_bad_files=True" in msg:
        return msg.replace("pass skip_bad_files=True", "pass --skip-bad-files")
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lamina` console script.

    An error in the data or the run prints one paragraph to stderr and exits with 2; `--debug` (or
    LAMINA_DEBUG=1) shows the traceback instead."""
    args: Any = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("LAMINA_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        if debug:
            raise
        print(f"lamina {args.command}: {_cli_help(e, _message(e))}", file=sys.stderr)
        print("(run with --debug or LAMINA_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
