"""The command line for collaborative filtering: `lamina train ratings.csv --user U --item I --rating R`
trains and exports a recommender; `lamina recommend model.lamina USER...` prints each user's top k."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "add_recommend_parser",
    "add_train_args",
    "cmd_recommend",
    "cmd_train",
]

DEFAULT_EPOCHS = 5
DEFAULT_LR = 5e-3


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The rating columns of `lamina train`: giving --user makes PATH a ratings CSV."""
    p.add_argument("--user", default=None, help="ratings CSV: the user id column (makes this a recommender)")
    p.add_argument("--item", default="item", help="ratings CSV: the item id column (default 'item')")
    p.add_argument("--rating", default="rating", help="ratings CSV: the rating column (default 'rating')")
    p.add_argument("--title", default=None, help="ratings CSV: an item title column, for display only")
    p.add_argument("--n-factors", type=int, default=50, help="recommender: factors per user and item")
    p.add_argument("--use-nn", action="store_true", help="recommender: an MLP over the embeddings")
    p.add_argument(
        "--autorec",
        type=int,
        default=200,
        help="recommender: hidden units of the item autoencoder averaged in (0: none; default 200)",
    )


def add_recommend_parser(sub: Any) -> None:
    """`lamina recommend model.lamina USER...`."""
    r = sub.add_parser("recommend", help="top-k items for users, from a recommender `lamina train` exported")
    r.add_argument("model", help="a .lamina file written by `lamina train ratings.csv --user ...`")
    r.add_argument("users", nargs="+", help="user ids (an id unseen in training gets the cold-start list)")
    r.add_argument("-k", "--k", type=int, default=10, help="items per user (default 10)")
    r.add_argument("--include-seen", action="store_true", help="also recommend items the user rated")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=cmd_recommend)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a recommender on a ratings CSV and write a run folder (metrics, model, item-factor plot)."""
    import matplotlib
    import torch

    from lamina.collab import CollabDataLoaders, NDCGAtK, RecallAtK, collab_learner
    from lamina.train import TerminateOnNaN, rmse

    if args.path is None:
        raise ValueError(
            "train --user: expected a ratings CSV as PATH.\n"
            "help: lamina train ratings.csv --user user_id --item movie_id --rating rating"
        )
    torch.manual_seed(args.seed)
    dls = CollabDataLoaders.from_csv(
        args.path,
        user_name=args.user,
        item_name=args.item,
        rating_name=args.rating,
        title_name=args.title,
        valid_pct=args.valid_pct,
        seed=args.seed,
        bs=args.bs,
    )
    print(dls)
    metrics: list[Any] = [rmse]
    if len(dls.valid.dataset):
        metrics += [RecallAtK(dls), NDCGAtK(dls)]
    autorec = args.autorec if args.autorec > 0 else None
    learn = collab_learner(
        dls, n_factors=args.n_factors, use_nn=args.use_nn, autorec=autorec, metrics=metrics
    )
    if args.lr == "auto":
        lr = float(learn.lr_find().valley)
        print(f"lr_find suggests {lr:.2e}")
    else:
        lr = DEFAULT_LR if args.lr is None else float(args.lr)
    epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    learn.add_cb(TerminateOnNaN(error=True))
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, lr)
    secs = time.perf_counter() - start
    run = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=True)
    rec = learn.recorder
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rec.metric_names)
        w.writerows(rec.history())
    matplotlib.use("Agg")
    rec.plot_loss().savefig(run / "loss.png", dpi=100)
    learn.plot_item_factors().savefig(run / "item_factors.png", dpi=100)
    learn.export(run / "model.lamina")
    final = dict(zip(rec.metric_names[1:-1], rec.values[-1], strict=True)) if rec.values else {}
    summary = {"seconds": round(secs, 2), **{k: round(float(v), 6) for k, v in final.items()}}
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"trained in {secs:.1f} s; {', '.join(f'{k} {v:.4f}' for k, v in final.items())}")
    print(f"run folder: {run}  ({', '.join(sorted(p.name for p in run.iterdir()))})")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """Print the top k items of each user: one line per item (user, rank, item, title, score), or JSON."""
    from lamina.collab import load_collab_learner

    if args.k < 1:
        raise ValueError(f"recommend: -k {args.k}; expected a positive number.\nhelp: e.g. -k 10")
    learn = load_collab_learner(args.model)
    unknown = [u for u in args.users if learn.meta.user_index(u) == 0]
    if unknown:
        print(
            f"not in the training data: {', '.join(unknown[:10])}; they get the cold-start list (the items "
            "the model rates highest for an unknown user)",
            file=sys.stderr,
        )
    table = learn.recommend(list(args.users), k=args.k, exclude_seen=not args.include_seen)
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=1, default=str))
    else:
        for row in table.itertuples(index=False):
            print("\t".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return 0
