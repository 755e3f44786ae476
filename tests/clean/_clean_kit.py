"""Helpers for the clean tests: a small, learnable image dataset on disk with planted errors (flipped
labels, copies, a broken and a blank file), a tree digest for byte-for-byte checks, a fast learner."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lamina.data import DataLoaders
    from lamina.train import Learner

CLASSES = ("0", "1", "7")
PER_CLASS = 50


@dataclass(frozen=True)
class Planted:
    root: Path
    flipped: tuple[str, ...]  # items (relative paths) whose folder is not their digit
    duplicate: str  # an exact copy of another file
    near_duplicate: str  # a re-encoded, resized copy of another file
    broken: str
    blank: str


def make_digits(root: Path, mnist: Path, per_class: int = PER_CLASS) -> Planted:
    """Digits 0, 1 and 7 from the MNIST sample (copied, so they can be moved), with planted errors."""
    from PIL import Image

    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for f in sorted((mnist / c).glob("*.png"))[:per_class]:
            shutil.copyfile(f, root / c / f.name)
    flipped = []
    for k, c in enumerate(CLASSES):  # two per class, into the next class's folder
        other = CLASSES[(k + 1) % len(CLASSES)]
        for f in sorted((root / c).glob("*.png"))[3:5]:
            f.rename(root / other / f.name)
            flipped.append(f"{other}/{f.name}")
    src = sorted((root / "0").glob("*.png"))[10]
    shutil.copyfile(src, root / "0" / "copy_of_a_zero.png")
    img = Image.open(sorted((root / "1").glob("*.png"))[12]).resize((32, 32))
    img.save(root / "1" / "resized_copy.jpg", quality=95)
    (root / "7" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.new("L", (28, 28), 255).save(root / "7" / "blank.png")
    return Planted(
        root, tuple(flipped), "0/copy_of_a_zero.png", "1/resized_copy.jpg", "7/broken.png", "7/blank.png"
    )


def tree_digest(root: Path) -> dict[str, str]:
    """Every file and folder under `root`, hidden ones too: relative path -> content hash or "dir"."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def mlp_learner(dls: DataLoaders) -> Learner:
    """A one-hidden-layer MLP on the pixels: ~93% out-of-fold on these 150 digits in a couple of seconds
    (a small ResNet needs far more steps than 3 folds of 100 images give it)."""
    from torch import nn

    from lamina.train import Learner

    c = dls.c or 2
    return Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 64), nn.ReLU(), nn.Linear(64, c)))
