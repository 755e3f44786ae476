"""A tiny registered model, a registered input transform and a data recipe for the export tests, and the
script that (re)writes the golden v1 export used to prove that old files keep loading:

    python tests/train/_export_fixture.py

writes `fixtures/export_v1.lamina` and `fixtures/export_v1_expected.json` (the loaded learner's predictions
on fixed inputs). Only regenerate it when the format version changes, as a new file (export_v2...).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lamina.core import Transform, register_model, register_transform
from lamina.data import CategoryBlock, DataBlock, IndexSplitter, TransformBlock
from lamina.train import Learner, load_learner
from lamina.train.callbacks import ProgressCallback

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "export_v1.lamina"
EXPECTED = FIXTURES / "export_v1_expected.json"
INPUTS = [[0.5, -1.0, 2.0, 0.0], [-2.0, 1.5, 0.25, 1.0], [1.0, 1.0, -1.0, -0.5], [0.0, 0.0, 0.0, 3.0]]


@register_model("test.tiny_mlp")
def tiny_mlp(n_in: int = 4, n_hidden: int = 8, n_out: int = 3) -> nn.Module:
    """The model the export tests train and export."""
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))


@register_transform("test.ToFloatTensor")
class ToFloatTensor(Transform):
    """A list of numbers -> a float tensor, times `scale` (an input transform with plain-data config)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
            raise ValueError(f"ToFloatTensor: scale must be a finite number, got {scale!r}")
        self.scale = scale

    def encodes(self, o: list) -> torch.Tensor:  # type: ignore[type-arg]
        return torch.tensor(o, dtype=torch.float32) * self.scale

    def to_config(self) -> dict[str, Any]:
        return {"scale": self.scale}


def items(n: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of 4 numbers labelled by which of the first three is the largest."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    names = ["ant", "bee", "cat"]
    return [{"x": x[i].tolist(), "y": names[int(x[i, :3].argmax())]} for i in range(n)]


def get_x(row: dict[str, Any]) -> list[float]:
    return list(row["x"])


def get_y(row: dict[str, Any]) -> str:
    return str(row["y"])


def make_learner(path: Path, n: int = 60) -> Learner:
    """A learner over `items(n)` (the last 12 for validation) with the registered model and transform."""
    dblock = DataBlock(
        blocks=(TransformBlock(type_tfms=[ToFloatTensor(scale=0.5)]), CategoryBlock),
        get_x=get_x,
        get_y=get_y,
        splitter=IndexSplitter(range(n - 12, n)),
    )
    dls = dblock.dataloaders(items(n), bs=16, num_workers=0, device="cpu", seed=0)
    torch.manual_seed(0)
    return Learner(dls, tiny_mlp(n_out=dls.c or 3), path=path, cbs=[], default_cbs=True)


def main() -> None:
    """Train briefly, export to the golden file, and record what the loaded learner predicts."""
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        learn = make_learner(Path(tmp))
        learn.remove_cb(ProgressCallback)
        learn.fit(5, lr=3e-2)
        learn.export(GOLDEN)
    loaded = load_learner(GOLDEN)
    labels, probs = [], []
    for x in INPUTS:
        label, _, p = loaded.predict(x)
        labels.append(str(label))
        probs.append(p.tolist())
    EXPECTED.write_text(json.dumps({"inputs": INPUTS, "labels": labels, "probs": probs}) + "\n")
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes) and {EXPECTED}")


if __name__ == "__main__":
    main()
