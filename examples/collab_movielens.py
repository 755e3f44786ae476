"""Train a film recommender on MovieLens 100k (shipped offline), look at it, and export it.

Run: python examples/collab_movielens.py [--epochs 5] [--out movies.lamina] [--limit N]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import pandas as pd

from lamina.collab import CollabDataLoaders, NDCGAtK, RecallAtK, collab_learner, load_collab_learner
from lamina.data import samples
from lamina.train import rmse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="movies.lamina")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N ratings")
    args = ap.parse_args()

    files = samples.movielens_100k()
    ratings, movies = pd.read_parquet(files["ratings"]), pd.read_parquet(files["items"])
    if args.limit:
        ratings = ratings.head(args.limit)
    dls = CollabDataLoaders.from_df(
        ratings, user_name="user_id", item_name="movie_id", rating_name="rating",
        title_name="movie_title", items=movies, seed=42,
    )  # fmt: skip
    print(dls.show_batch(max_n=5))
    learn = collab_learner(dls, metrics=[rmse, RecallAtK(dls, k=10), NDCGAtK(dls, k=10)])
    learn.fit_one_cycle(args.epochs, 5e-3)
    print(learn.show_results(max_n=5))
    print(learn.recommend(196, k=5))
    print(learn.similar_items(50, k=5))  # Star Wars (1977)
    learn.plot_item_factors(n=50).savefig("item_factors.png")
    learn.export(args.out)
    again = load_collab_learner(args.out)
    print(f"reloaded export recommends {again.recommend(196, k=1)['title'][0]!r} to user 196")


if __name__ == "__main__":
    main()
