"""`lamina train table.csv --target income` and `lamina predict model.lamina rows.csv` for tables.

A CSV or parquet file with `--target` trains a tabular model (the other columns' kinds are inferred and
printed); the run folder gets, besides the model and metrics, `results.csv` (validation rows with target and
prediction) and `feature_importance.csv/.png`. Predicting writes one row per input row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TABLE_EPOCHS",
    "add_train_args",
    "is_tabular_learner",
    "predict_rows",
    "save_tabular_results",
    "tabular_dataloaders",
    "tabular_learner_for",
    "wants_table",
]

DEFAULT_TABLE_EPOCHS = 5


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The `train` flags for a table."""
    p.add_argument(
        "--target",
        action="append",
        default=None,
        help="table (CSV/parquet): the column to predict; repeat for several (multi-label or regression)",
    )
    p.add_argument(
        "--cat-cols", default=None, help="table: comma-separated categorical columns (default: inferred)"
    )
    p.add_argument(
        "--cont-cols", default=None, help="table: comma-separated continuous columns (default: inferred)"
    )
    p.add_argument(
        "--y-block",
        choices=["category", "regression", "multilabel"],
        default=None,
        help="table: what the target is (default: inferred; float columns are regression)",
    )


def wants_table(args: argparse.Namespace) -> bool:
    """A `--target` names a table's column: this run is tabular."""
    return bool(getattr(args, "target", None))


def _names(s: str | None) -> list[str] | None:
    return [c.strip() for c in s.split(",") if c.strip()] if s else None


def tabular_dataloaders(args: argparse.Namespace) -> Any:
    from lamina.tabular import TabularDataLoaders

    path = Path(args.path) if args.path else None
    if path is None or not path.is_file():
        raise ValueError(
            f"lamina train --target: {str(path)!r} is not a file.\nhelp: pass a CSV or parquet table, e.g. "
            "lamina train adult.csv --target income"
        )
    dls = TabularDataLoaders.from_csv(
        path,
        y_names=args.target,
        cat_names=_names(args.cat_cols),
        cont_names=_names(args.cont_cols),
        y_block=args.y_block,
        valid_pct=args.valid_pct,
        seed=args.seed,
        bs=args.bs if args.bs != 64 else 256,  # the image default is small for a table
    )
    dls.summary()
    return dls


def tabular_learner_for(args: argparse.Namespace, dls: Any) -> Any:
    from lamina.tabular import tabular_learner
    from lamina.train import accuracy, accuracy_multi, rmse

    kind = dls.processing.target.kind
    metric = {"category": accuracy, "multilabel": accuracy_multi}.get(kind, rmse)
    return tabular_learner(dls, metrics=metric)


def save_tabular_results(learn: Any, run: Path) -> None:
    """Validation rows with their prediction, and which columns the model relies on."""
    from lamina.tabular import feature_importance, plot_feature_importance

    if len(learn.dls.valid.dataset) == 0:
        return
    learn.show_results(max_n=50).to_csv(run / "results.csv", index=False)
    imp = feature_importance(learn)
    imp.rename_axis("column").to_csv(run / "feature_importance.csv")
    plot_feature_importance(imp).savefig(run / "feature_importance.png", dpi=100)


def is_tabular_learner(learn: Any) -> bool:
    from lamina.tabular import TabularDataLoaders

    return isinstance(learn.dls, TabularDataLoaders)


def predict_rows(learn: Any, args: argparse.Namespace) -> int:
    """Predict every row of one CSV/parquet table: a CSV (row, prediction, probabilities) to stdout or
    `--json`; the table's other columns are ignored, the model's must all be there."""
    import torch

    from lamina.tabular import read_table

    if len(args.files) != 1:
        raise ValueError(
            f"lamina predict: a table model takes one CSV or parquet file, got {len(args.files)}.\n"
            "help: lamina predict model.lamina rows.csv"
        )
    df = read_table(args.files[0])
    dl = learn.dls.test_dl(df)
    preds, _, decoded = learn.get_preds(dl=dl, with_decoded=True)
    target = learn.dls.processing.target
    rows: list[dict[str, Any]] = []
    for i in range(len(df)):
        row: dict[str, Any] = {"row": i}
        if target.kind == "category":
            row["prediction"] = target.vocab[int(decoded[i])]
            row["probability"] = round(float(preds[i].max()), 6)
        elif target.kind == "multilabel":
            on = torch.nonzero(decoded[i]).flatten().tolist()
            row["prediction"] = ";".join(target.vocab[k] for k in on)
        else:
            for k, name in enumerate(target.y_names):
                row[name] = round(float(preds[i].reshape(-1)[k]), 6)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["row"])
        w.writeheader()
        w.writerows(rows)
    return 0
