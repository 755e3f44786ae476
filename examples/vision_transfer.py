"""Transfer learning with a body that lamina pretrained itself, from a local weights file.

Pretrain on the digits 0-4 of the MNIST sample, save the body as safetensors, then fine-tune on a small
labelled set of the digits 5-9 and compare with the same model trained from scratch for as many epochs.

Run: python examples/vision_transfer.py [--epochs 3] [--n-per-class 40]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from lamina.data import samples
from lamina.train import accuracy
from lamina.vision import ImageDataLoaders, vision_learner

ARCH = "test_resnet"


def subset(src: Path, dest: Path, digits: range, n_per_class: int | None) -> Path:
    """Symlink (the first n of) the images of some digits into a new class-folder tree."""
    for d in digits:
        (dest / str(d)).mkdir(parents=True)
        files = sorted((src / str(d)).glob("*.png"))
        for f in files[:n_per_class] if n_per_class else files:
            (dest / str(d) / f.name).symlink_to(f)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-per-class", type=int, default=40, help="labelled images per class for the new task")
    args = ap.parse_args()
    src = samples.mnist_sample()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # 1. pretrain a body on digits 0-4 (all their images)
        torch.manual_seed(0)
        dls_a = ImageDataLoaders.from_folder(subset(src, root / "a", range(5), None), valid_pct=0.2, seed=0)
        pre = vision_learner(dls_a, ARCH, pretrained=False, metrics=accuracy)
        pre.fit_one_cycle(3, 1e-2)
        weights = root / "body.safetensors"
        save_file({k: v.contiguous() for k, v in pre.model[0].state_dict().items()}, str(weights))

        # 2. the new task: digits 5-9, few labels; same data, same seed, same epochs for both contenders
        task = subset(src, root / "b", range(5, 10), args.n_per_class)
        results = {}
        for name, pretrained in (("from scratch", False), ("lamina-pretrained body", str(weights))):
            torch.manual_seed(0)
            dls = ImageDataLoaders.from_folder(task, valid_pct=0.5, seed=0, bs=32)
            learn = vision_learner(dls, ARCH, pretrained=pretrained, metrics=accuracy)
            if pretrained:
                learn.fine_tune(args.epochs - 1, base_lr=1e-2, freeze_epochs=1)
            else:
                learn.fit_one_cycle(args.epochs, 1e-2)
            results[name] = learn.recorder.values[-1][2]
        for name, acc in results.items():
            print(f"{name:<24} valid accuracy {acc:.3f} after {args.epochs} epochs")


if __name__ == "__main__":
    main()
