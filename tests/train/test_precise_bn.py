"""PreciseBN: the running statistics describe the final weights, the training order is left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import Learner, PreciseBN
from lamina.train.callbacks import refresh_batchnorm, with_precise_bn


def _dls(seed: int | None = 0) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g) * 3 + 1
    y = (x[:, 0] > 1).long()
    train = list(zip(x[:192], y[:192], strict=True))
    valid = list(zip(x[192:], y[192:], strict=True))
    return DataLoaders.from_dsets(train, valid, bs=32, shuffle=True, num_workers=0, device="cpu", seed=seed)


def _learner(cbs: list[PreciseBN]) -> Learner:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    return Learner(_dls(), model, loss_func=CrossEntropyLossFlat(), lr=0.1, cbs=cbs, default_cbs=False)


def _exact_stats(learn: Learner) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) variance of the BatchNorm's input over every training batch, in train mode."""
    lin = learn.model[0]
    feats = torch.cat([lin(xb) for xb, _ in learn.dls.train.new()]).detach()
    return feats.mean(0), feats.var(0)


def test_running_statistics_are_those_of_the_final_weights() -> None:
    learn = _learner([PreciseBN()])
    learn.fit(2)
    bn = learn.model[1]
    mean, var = _exact_stats(learn)
    assert torch.allclose(bn.running_mean, mean, atol=1e-4)
    # averaged per batch (unbiased within each batch), as BatchNorm does
    assert torch.allclose(bn.running_var, var, rtol=0.05)
    assert bn.momentum == 0.1  # put back for the next fit

    plain = _learner([])
    plain.fit(2)
    assert not torch.allclose(plain.model[1].running_mean, _exact_stats(plain)[0], atol=1e-2)


def test_the_training_order_and_weights_are_left_alone() -> None:
    with_cb, without = _learner([PreciseBN(every_epoch=True)]), _learner([])
    with_cb.fit(3)
    without.fit(3)
    for a, b in zip(with_cb.model.parameters(), without.model.parameters(), strict=True):
        assert torch.equal(a, b)  # the same batches in the same order: only the buffers differ


def test_a_cancelled_phase_is_not_followed_by_a_refresh() -> None:
    learn = _learner([PreciseBN()])
    learn.lr_find(num_it=10)
    assert learn.get_cb(PreciseBN).batches_used == 0
    learn.fit(1)
    assert learn.get_cb(PreciseBN).batches_used == 6  # 192 items / bs 32


def test_layers_in_eval_mode_and_models_without_batchnorm_are_left_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    model[1].eval()
    before = model[1].running_mean.clone()
    assert refresh_batchnorm(model, [(torch.randn(8, 4),)], 1, 5) == 0
    assert torch.equal(model[1].running_mean, before)
    assert with_precise_bn(nn.Linear(2, 2), ()) == []
    assert len(with_precise_bn(model, ())) == 1 and len(with_precise_bn(model, [PreciseBN()])) == 1
    with pytest.raises(ValueError, match="n_items"):
        PreciseBN(n_items=0)
