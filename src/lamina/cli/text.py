"""`lamina train` and `lamina predict` for texts: a CSV (or parquet) with a text column, or a folder of .txt
files per class; predictions for texts given on the command line or a CSV column."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from lamina.data import DataBlock, DataLoaders
    from lamina.train import Learner

__all__ = [
    "DEFAULT_TEXT_EPOCHS",
    "DEFAULT_TEXT_LR",
    "add_text_args",
    "is_text_folder",
    "is_text_learner",
    "predict_texts",
    "save_text_results",
    "text_dataloaders",
    "text_learner",
    "text_shard_block",
    "wants_text",
]

DEFAULT_TEXT_EPOCHS = 2
DEFAULT_TEXT_LR = 2e-3  # fine_tune's default base_lr: the head's, then 1e-5..1e-3 across the body
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_TABLE_SUFFIXES = {".csv", ".parquet", ".tsv"}


def add_text_args(p: argparse.ArgumentParser) -> None:
    """The text options of `lamina train`."""
    p.add_argument(
        "--text-col", default=None, help="text: the column of PATH (a CSV or parquet file) holding the texts"
    )
    p.add_argument(
        "--model",
        default=None,
        help="text: a Hugging Face model folder or cached name (default all-MiniLM-L6-v2, shipped offline)",
    )
    p.add_argument("--max-len", type=int, default=None, help="text: cut texts at this many tokens")


def is_text_folder(path: Path) -> bool:
    """A folder of class sub-folders holding .txt files and no images."""
    if not path.is_dir():
        return False
    seen_txt = False
    for i, f in enumerate(path.rglob("*")):
        suffix = f.suffix.lower()
        if suffix in _IMAGE_SUFFIXES:
            return False
        seen_txt = seen_txt or suffix == ".txt"
        if i > 2000 and seen_txt:
            break
    return seen_txt


def wants_text(args: argparse.Namespace) -> bool:
    """Whether `lamina train` was asked for a text model: --text-col, a folder of .txt files, or shards of
    token ids."""
    from lamina.cli.shard import holds_text, is_shards

    if getattr(args, "text_col", None) is not None:
        return True
    if args.path is not None and is_shards(args.path):
        return holds_text(args.path)
    return args.path is not None and is_text_folder(Path(args.path))


def _col(v: str | None) -> int | str | None:
    return int(v) if v is not None and v.isdigit() else v


def text_dataloaders(args: argparse.Namespace) -> DataLoaders:
    from lamina.cli.shard import is_shards
    from lamina.text import TextDataLoaders

    # the image default (64) is large for fine-tuning: 16 gives more steps for the same compute
    bs = args.bs if args.bs != 64 else 16
    if args.path is not None and is_shards(args.path):
        return TextDataLoaders.from_shards(
            args.path, model=args.model, max_len=args.max_len, seed=args.seed, bs=bs
        )
    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist.\nhelp: check the path")
    if path.is_dir():
        if getattr(args, "text_col", None) is not None:
            raise ValueError(
                f"--text-col reads a column of a table, but {str(path)!r} is a folder.\n"
                "help: pass the CSV file as PATH (lamina train reviews.csv --text-col Review --label-col "
                "Rating), or a folder of .txt files per class without --text-col"
            )
        has_split = (path / "train").is_dir() and (path / "valid").is_dir()
        valid = "valid" if has_split else ("test" if (path / "test").is_dir() else "valid")
        return TextDataLoaders.from_folder(
            path,
            model=args.model,
            max_len=args.max_len,
            valid_pct=args.valid_pct,
            valid=valid,
            seed=args.seed,
            bs=bs,
        )
    if path.suffix.lower() not in _TABLE_SUFFIXES:
        raise ValueError(
            f"{str(path)!r} is neither a folder nor a table (.csv, .tsv, .parquet).\n"
            "help: pass a CSV with --text-col and --label-col, or a folder of .txt files per class"
        )
    df = _read_table(path)
    return TextDataLoaders.from_df(
        df,
        text_col=_col(args.text_col) or 0,
        label_col=_col(args.label_col),
        model=args.model,
        max_len=args.max_len,
        label_delim=args.label_delim,
        valid_col=_col(args.valid_col),
        valid_pct=args.valid_pct,
        seed=args.seed,
        bs=bs,
    )


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")


def text_shard_block(args: argparse.Namespace) -> tuple[DataBlock, pd.DataFrame]:
    """The DataBlock and table that `lamina shard TABLE --text-col C` writes: the rows, labels and split
    `lamina train TABLE --text-col C` would use, the texts as token ids."""
    from lamina.text import TextDataLoaders

    path = Path(args.path) if args.path is not None else Path()
    if not path.is_file() or path.suffix.lower() not in _TABLE_SUFFIXES:
        raise ValueError(
            f"lamina shard --text-col reads a table (.csv, .tsv, .parquet); {str(path)!r} is not one.\n"
            "help: lamina shard reviews.csv --text-col Review --label-col Rating --out text-shards/"
        )
    block = TextDataLoaders.df_block(
        text_col=_col(args.text_col) or 0,
        label_col=_col(args.label_col),
        model=args.model,
        max_len=args.max_len,
        label_delim=args.label_delim,
        valid_col=_col(args.valid_col),
        valid_pct=args.valid_pct,
        seed=args.seed,
    )
    return block, _read_table(path)


def text_learner(args: argparse.Namespace, dls: DataLoaders) -> Learner:
    from lamina.text import text_classifier_learner
    from lamina.train import accuracy, accuracy_multi

    metrics = accuracy_multi if args.label_delim is not None else accuracy
    return text_classifier_learner(dls, args.model, metrics=metrics)


def is_text_learner(learn: Learner) -> bool:
    from lamina.text import Tokenize

    dsets = learn.dls.dsets
    return dsets is not None and any(isinstance(t, Tokenize) for t in dsets.pipelines[0].tfms)


def save_text_results(learn: Learner, run: Path) -> None:
    """results.csv (validation texts, targets, predictions) and, for classes, top_losses.csv."""
    from lamina.core import TensorCategory
    from lamina.text import top_losses_table
    from lamina.train import ClassificationInterpretation

    shown = learn.show_results(max_n=20)
    if hasattr(shown, "to_csv"):
        shown.to_csv(run / "results.csv", index=False)
    types = learn.dls.valid.batch_types
    if len(types) > learn.dls.n_inp and issubclass(types[learn.dls.n_inp], TensorCategory):
        interp = ClassificationInterpretation.from_learner(learn)
        top_losses_table(interp, 20).to_csv(run / "top_losses.csv", index=False)
        if learn.dls.c is not None and learn.dls.c <= 40:
            interp.plot_confusion_matrix().savefig(run / "confusion_matrix.png", dpi=100)


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts to label: each argument (a .txt file's contents), or a CSV's --text-col column when the one
    argument is a table."""
    from lamina.text import read_text_files

    if (
        len(args.files) == 1
        and Path(args.files[0]).suffix.lower() in _TABLE_SUFFIXES
        and Path(args.files[0]).is_file()
    ):
        import pandas as pd

        path = Path(args.files[0])
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        col = _col(getattr(args, "text_col", None)) or 0
        name = df.columns[col] if isinstance(col, int) else col
        if name not in df.columns:
            raise KeyError(
                f"no column {name!r} in {str(path)!r}; it has {list(df.columns)[:20]}.\nhelp: pass --text-col"
            )
        return ["" if v is None or v != v else str(v) for v in df[name].tolist()]
    # an argument naming a .txt file stands for its contents
    return [
        read_text_files([Path(a)])[0] if a.endswith(".txt") and Path(a).is_file() else a for a in args.files
    ]


def predict_texts(learn: Learner, args: argparse.Namespace) -> int:
    """Label texts (arguments, or a CSV column): text, label and probability per line, or JSON."""
    texts = _texts(args)
    dl = learn.dls.test_dl(texts, skip_getters=True)
    preds, _, dec = learn.get_preds(dl=dl, with_decoded=True)
    vocab = [str(v) for v in (learn.dls.vocab or [])]
    out: list[dict[str, Any]] = []
    for text, p, d in zip(texts, preds, dec, strict=True):
        row: dict[str, Any] = {"text": text}
        if d.ndim == 0 and vocab:
            row["label"], row["probability"] = vocab[int(d)], round(float(p[int(d)]), 6)
        elif d.ndim == 1 and vocab:  # multi-label
            row["label"] = [v for v, on in zip(vocab, d.tolist(), strict=True) if on]
            row["probabilities"] = {v: round(float(x), 6) for v, x in zip(vocab, p.tolist(), strict=True)}
        else:
            row["value"] = [round(float(x), 6) for x in p.flatten().tolist()]
        out.append(row)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for r in out:
        short = r["text"].replace("\n", " ").replace("\t", " ")
        short = short if len(short) <= 60 else short[:57] + "..."
        if "probability" in r:
            print(f"{short}\t{r['label']}\t{r['probability']:.4f}")
        elif "probabilities" in r:
            print(
                f"{short}\t{';'.join(r['label'])}\t"
                + ", ".join(f"{k} {v:.4f}" for k, v in r["probabilities"].items())
            )
        else:
            print(f"{short}\t" + ", ".join(f"{v:.4g}" for v in r["value"]))
    return 0
