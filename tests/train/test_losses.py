"""LabelSmoothingCrossEntropy equals torch's label-smoothed cross entropy, exports by name, and trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lamina.core import lookup_loss, registered_name
from lamina.data import DataLoaders
from lamina.train import Learner
from lamina.train.losses import LabelSmoothingCrossEntropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_matches_torch_label_smoothing(eps: float) -> None:
    pred, targ = torch.randn(16, 5), torch.randint(0, 5, (16,))
    for reduction in ("mean", "sum"):
        got = LabelSmoothingCrossEntropy(eps=eps, reduction=reduction)(pred, targ)
        expected = F.cross_entropy(pred, targ, label_smoothing=eps, reduction=reduction)
        assert torch.allclose(got, expected, atol=1e-6), reduction
    per_item = LabelSmoothingCrossEntropy(eps=eps, reduction="none")(pred, targ)
    assert torch.allclose(
        per_item, F.cross_entropy(pred, targ, label_smoothing=eps, reduction="none"), atol=1e-6
    )


def test_segmentation_shaped_outputs() -> None:
    pred, targ = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    got = LabelSmoothingCrossEntropy(eps=0.1)(pred, targ)
    assert torch.allclose(got, F.cross_entropy(pred, targ, label_smoothing=0.1), atol=1e-6)
    assert LabelSmoothingCrossEntropy(reduction="none")(pred, targ).shape == (2,)  # one loss per item
    assert LabelSmoothingCrossEntropy().decodes(pred).shape == (2, 4, 4)


def test_activation_decodes_and_export_recipe() -> None:
    loss = LabelSmoothingCrossEntropy(eps=0.2, reduction="sum")
    x = torch.tensor([[1.0, 3.0, 0.0]])
    assert torch.allclose(loss.activation(x).sum(1), torch.ones(1))
    assert loss.decodes(loss.activation(x)).tolist() == [1]
    assert registered_name(loss) == "train.LabelSmoothingCrossEntropy"
    rebuilt = lookup_loss("train.LabelSmoothingCrossEntropy")(**loss.to_config())
    assert rebuilt.eps == 0.2 and rebuilt.reduction == "sum"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="help:"):
        LabelSmoothingCrossEntropy(eps=1.0)
    with pytest.raises(ValueError, match="reduction"):
        LabelSmoothingCrossEntropy(reduction="avg")


def test_trains_a_classifier() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    items = [(x[i], y[i]) for i in range(64)]
    dls = DataLoaders.from_dsets(items[:48], items[48:], bs=8, num_workers=0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    learn = Learner(dls, model, loss_func=LabelSmoothingCrossEntropy(), lr=1e-2)
    learn.fit(3)
    assert learn.recorder.values[-1][1] < learn.recorder.values[0][1]
