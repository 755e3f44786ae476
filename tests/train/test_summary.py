"""learn.summary(): each layer's output shape on one batch, its parameters, trainable or frozen; totals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import Learner, LearnerSummary


def _learner() -> Learner:
    items = [(torch.randn(3, 8, 8), torch.tensor(i % 2)) for i in range(24)]
    dls = DataLoaders.from_dsets(items, items, bs=8, num_workers=0, device="cpu")
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 2)),
    )  # fmt: skip
    return Learner(dls, model, loss_func=CrossEntropyLossFlat())


def test_summary_lists_layers_shapes_parameters_and_the_training_setup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    learn = _learner()
    model = learn.model
    conv, bn = model[0], model[1]
    for p in conv.parameters():
        p.requires_grad_(False)
    stats = bn.running_mean.clone()
    model.train()

    s = learn.summary()
    assert isinstance(s, LearnerSummary)
    printed = capsys.readouterr().out
    assert printed.strip() == str(s).strip()
    assert [r.name for r in s.layers] == ["0", "1", "2", "3.0", "3.1"]
    assert [r.type for r in s.layers] == ["Conv2d", "BatchNorm2d", "ReLU", "Flatten", "Linear"]
    assert [r.output_shape for r in s.layers] == [
        "8 x 4 x 8 x 8", "8 x 4 x 8 x 8", "8 x 4 x 8 x 8", "8 x 256", "8 x 2",
    ]  # fmt: skip
    assert [r.params for r in s.layers] == [112, 8, 0, 0, 514]
    assert [r.trainable for r in s.layers] == ["frozen", "trainable", "", "", "trainable"]
    assert s.input_shapes == ("8 x 3 x 8 x 8",)
    assert (s.total_params, s.trainable_params, s.frozen_params) == (634, 522, 112)
    assert s.loss == "CrossEntropyLossFlat" and s.callbacks == ("Recorder", "ProgressCallback")
    for text in ("Conv2d", "8 x 256", "514", "frozen", "total parameters: 634", "frozen: 112"):
        assert text in printed, text
    assert "adamw" in printed and "CrossEntropyLossFlat" in printed and "Recorder" in printed
    # one forward in eval mode, without gradients: the model and its statistics are as they were
    assert model.training and torch.equal(bn.running_mean, stats)

    learn.fit(1)
    assert "AdamW" in str(learn.summary())
