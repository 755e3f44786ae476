"""Train a digit classifier on the embedded MNIST sample, look at it, and export it.

Run: python examples/vision_mnist.py [--epochs 4] [--out mnist.lamina]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

from lamina.data import samples
from lamina.train import accuracy, load_learner
from lamina.vision import ImageDataLoaders, vision_learner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default="mnist.lamina")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N digits of each class")
    args = ap.parse_args()

    path = samples.mnist_sample()
    dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, bs=64)
    dls.show_batch(max_n=9).savefig("batch.png")
    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=accuracy)
    learn.fit_one_cycle(args.epochs, 1e-2)
    learn.show_results(max_n=9).savefig("results.png")

    digit = sorted((path / "3").glob("*.png"))[0]
    label, _, probs = learn.predict(digit)
    print(f"{digit.name}: predicted {label} with probability {float(probs.max()):.3f}")
    learn.export(args.out)
    print(f"reloaded export predicts {load_learner(args.out).predict(digit)[0]}")


if __name__ == "__main__":
    main()
