"""Multi-label: from_df(label_delim=...) -> MultiCategoryBlock, BCE loss, accuracy_multi, predict, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lamina.core import MultiCategory
from lamina.data import BCEWithLogitsLossFlat
from lamina.train import Learner, accuracy_multi, load_learner
from lamina.vision import ImageDataLoaders, vision_learner


@pytest.fixture(scope="module")
def colour_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """12 images 32x32 whose labels are the colour channels switched on (one, two or three of them)."""
    import pandas as pd
    from PIL import Image

    root = tmp_path_factory.mktemp("multilabel")
    rows = []
    for i in range(12):
        img = np.zeros((32, 32, 3), np.uint8)
        labels = [name for c, name in enumerate(("red", "green", "blue")) if (i % 7 + 1) >> c & 1]
        for c, name in enumerate(("red", "green", "blue")):
            if name in labels:
                img[:, :, c] = 200
        Image.fromarray(img).save(root / f"c{i}.png")
        rows.append((f"c{i}.png", " ".join(labels)))
    return root, pd.DataFrame(rows, columns=["fname", "labels"])


def test_multilabel_trains_and_predicts_the_labels_above_the_threshold(
    colour_table: tuple[Path, Any], tmp_path: Path
) -> None:
    root, df = colour_table
    dls = ImageDataLoaders.from_df(
        df, root, fn_col="fname", label_col="labels", label_delim=" ", seed=0, bs=4, num_workers=0
    )
    assert dls.vocab == ["blue", "green", "red"] and dls.c == 3
    assert isinstance(dls.loss_func, BCEWithLogitsLossFlat)
    _, y = dls.one_batch()
    assert y.shape == (4, 3) and y.dtype == torch.float32 and set(y.unique().tolist()) <= {0.0, 1.0}

    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=accuracy_multi)
    learn.fit(1)
    valid_loss, acc = learn.recorder.values[-1][1:3]
    assert 0.0 <= acc <= 1.0 and valid_loss > 0

    labels, dec, probs = learn.predict(root / "c0.png")
    assert isinstance(labels, MultiCategory)
    assert probs.shape == (3,) and bool(((probs > 0) & (probs < 1)).all())
    assert torch.equal(dec, (probs > 0.5).float())
    assert labels == [v for v, on in zip(dls.vocab, dec.tolist(), strict=True) if on]

    # the loss's threshold decides: at 0 every label is on, at 1 none
    loss = learn.loss_func
    assert isinstance(loss, BCEWithLogitsLossFlat)
    loss.thresh = 0.0
    assert learn.predict(root / "c0.png")[0] == ["blue", "green", "red"]
    loss.thresh = 1.0
    assert learn.predict(root / "c0.png")[0] == []
    loss.thresh = 0.5

    learn2 = load_learner(learn.export(tmp_path / "multi.lamina"))
    labels2, dec2, probs2 = learn2.predict(root / "c0.png")
    assert labels2 == labels and torch.equal(dec2, dec) and torch.allclose(probs2, probs, atol=1e-6)


def test_an_empty_label_cell_means_no_labels(colour_table: tuple[Path, Any]) -> None:
    root, df = colour_table
    df = df.copy()
    df.loc[0, "labels"] = ""
    dls = ImageDataLoaders.from_df(
        df, root, fn_col="fname", label_col="labels", label_delim=" ", seed=0, bs=4, num_workers=0
    )
    assert "" not in (dls.vocab or [])


SHAPE_COLOURS = {"red": (230, 30, 30), "green": (30, 230, 30), "blue": (30, 30, 230)}


@pytest.fixture(scope="module")
def shapes_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """240 noisy 32x32 images with 0 to 3 coloured squares, one per quadrant; labels = colours present."""
    import pandas as pd
    from PIL import Image

    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        img = rng.integers(0, 90, (32, 32, 3)).astype(np.uint8)  # noisy dark background
        names = [n for n in SHAPE_COLOURS if rng.random() < 0.5]
        for name, quadrant in zip(names, rng.permutation(4), strict=False):
            s = int(rng.integers(6, 11))
            y = 16 * (quadrant // 2) + int(rng.integers(0, 16 - s + 1))
            x = 16 * (quadrant % 2) + int(rng.integers(0, 16 - s + 1))
            img[y : y + s, x : x + s] = SHAPE_COLOURS[name]
        Image.fromarray(img).save(root / f"s{i:03d}.png")
        rows.append((f"s{i:03d}.png", " ".join(names)))
    return root, pd.DataFrame(rows, columns=["fname", "labels"])


def _valid_accuracy(learn: Learner) -> tuple[float, float]:
    """accuracy_multi on the validation set and the accuracy of predicting no label at all."""
    preds, targs = learn.get_preds()[:2]  # probabilities (sigmoid applied), (N, C) 0/1 targets
    acc = float(accuracy_multi(preds, targs, sigmoid=False))
    return acc, float((targs == 0).float().mean())


@pytest.mark.slow
def test_multilabel_learns_which_colours_are_present(shapes_table: tuple[Path, Any]) -> None:
    root, df = shapes_table
    dls = ImageDataLoaders.from_df(
        df, root, fn_col="fname", label_col="labels", label_delim=" ", valid_pct=0.25, seed=0, bs=16,
        num_workers=0,
    )  # fmt: skip
    assert dls.vocab == ["blue", "green", "red"]
    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=accuracy_multi)
    # bs=16: enough steps (~55) for BatchNorm's running statistics to catch up with the trained weights
    learn.fit_one_cycle(5, 1e-2)
    acc, all_negative = _valid_accuracy(learn)
    assert abs(acc - learn.recorder.values[-1][2]) < 1e-6  # the metric the loop reports, recomputed
    assert 0.3 < all_negative < 0.7  # labels are balanced: predicting nothing is no shortcut
    assert acc >= 0.9 and acc >= all_negative + 0.3, (acc, all_negative)
