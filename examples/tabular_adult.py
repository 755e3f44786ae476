"""Train a census-income classifier on UCI Adult (shipped offline), explain it, and export it.

Run: python examples/tabular_adult.py [--epochs 5] [--out adult.lamina] [--limit N]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import pandas as pd

from lamina.data import samples
from lamina.tabular import TabularDataLoaders, feature_importance, plot_feature_importance, tabular_learner
from lamina.train import accuracy, load_learner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="adult.lamina")
    ap.add_argument("--limit", type=int, default=None, help="use only N rows")
    args = ap.parse_args()

    df = pd.read_parquet(samples.adult_sample())
    if args.limit:
        df = df.sample(args.limit, random_state=0)
    dls = TabularDataLoaders.from_df(df, y_names="income", valid_pct=0.2, seed=42)
    dls.summary()  # what each column became
    print(dls.show_batch(max_n=5))  # decoded rows: the original categories and numbers
    learn = tabular_learner(dls, metrics=accuracy)
    learn.fit_one_cycle(args.epochs, 1e-2)
    print(learn.show_results(max_n=5))
    imp = feature_importance(learn)
    print(imp.head(5))
    plot_feature_importance(imp).savefig("feature_importance.png")
    learn.export(args.out)
    row = df.drop(columns="income").iloc[0].to_dict()
    print(load_learner(args.out).predict(row))


if __name__ == "__main__":
    main()
