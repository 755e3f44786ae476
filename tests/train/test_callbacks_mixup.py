"""MixUp and CutMix: training inputs are blended, the loss is the blended loss, validation is untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks.mixup import CutMix, MixUp


def _learner(cbs: list[Callback], images: bool = False, int_inputs: bool = False) -> Learner:
    g = torch.Generator().manual_seed(0)
    n = 48
    x = torch.randn(n, 3, 12, 12, generator=g) if images else torch.randn(n, 4, generator=g)
    if int_inputs:
        x = (x * 10).long()
    y = (x.flatten(1)[:, 0] > 0).long()
    items = [(x[i], y[i]) for i in range(n)]
    dls = DataLoaders.from_dsets(items[:32], items[32:], bs=8, num_workers=0, seed=0)
    model: nn.Module = (
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2))
        if images
        else nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    )
    if int_inputs:
        model = nn.Sequential(nn.Embedding(40, 2), nn.Flatten(), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), cbs=cbs)


class _Watch(Callback):
    """Keeps inputs before (order 14) and after (order 16) the mix, and the loss after it."""

    order = 16

    def __init__(self) -> None:
        self.raw: list[tuple[bool, torch.Tensor]] = []
        self.seen: list[tuple[bool, torch.Tensor]] = []
        self.checks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mix: MixUp | CutMix | None = None
        self.boxes: list[tuple[tuple[int, int, int, int], torch.Tensor, float]] = []

    def before_batch(self) -> None:
        self.seen.append((self.learn.training, self.learn.xb[0].clone()))
        if isinstance(self.mix, CutMix) and self.learn.training:
            assert self.mix.perm is not None
            self.boxes.append((self.mix.box, self.mix.perm.clone(), self.mix.lam))

    def after_loss(self) -> None:
        learn, mix = self.learn, self.mix
        if not learn.training or mix is None:
            return
        assert mix.perm is not None
        y, y2 = learn.yb[0], learn.yb[0][mix.perm]
        pred = learn.pred.detach()
        if isinstance(mix, MixUp):
            assert mix.lam is not None
            lam = mix.lam
            expected = (lam * F.cross_entropy(pred, y, reduction="none")).mean() + (
                (1 - lam) * F.cross_entropy(pred, y2, reduction="none")
            ).mean()
        else:
            expected = mix.lam * F.cross_entropy(pred, y) + (1 - mix.lam) * F.cross_entropy(pred, y2)
        self.checks.append((learn.loss.detach(), expected))


class _Raw(Callback):
    order = 14

    def __init__(self, watch: _Watch) -> None:
        self.watch = watch

    def before_batch(self) -> None:
        self.watch.raw.append((self.learn.training, self.learn.xb[0].clone()))


def _run(mix: MixUp | CutMix, images: bool) -> tuple[_Watch, Learner]:
    watch = _Watch()
    watch.mix = mix
    learn = _learner([mix, _Raw(watch), watch], images=images)
    learn.fit(1)
    return watch, learn


def test_mixup_blends_training_inputs_and_the_loss_only() -> None:
    mix = MixUp(alpha=0.4)
    watch, _ = _run(mix, images=False)
    pairs = list(zip(watch.raw, watch.seen, strict=True))
    train = [(r, s) for (t, r), (_, s) in pairs if t]
    valid = [(r, s) for (t, r), (_, s) in pairs if not t]
    assert train and valid
    assert all(not torch.equal(r, s) for r, s in train)  # every training batch changed
    assert all(torch.equal(r, s) for r, s in valid)  # validation untouched
    assert len(watch.checks) == len(train)
    for got, expected in watch.checks:
        assert got == pytest.approx(float(expected), rel=1e-5)
    # the last batch: each input is lam * x + (1 - lam) * partner, with lam >= 0.5
    raw, seen = train[-1]
    assert mix.lam is not None and mix.perm is not None
    lam = mix.lam[:, None]
    assert torch.allclose(seen, lam * raw + (1 - lam) * raw[mix.perm], atol=1e-6)
    assert bool((mix.lam >= 0.5).all())


def test_cutmix_pastes_a_box_and_blends_the_loss_by_area() -> None:
    mix = CutMix(alpha=1.0)
    watch, _ = _run(mix, images=True)
    pairs = list(zip(watch.raw, watch.seen, strict=True))
    assert all(torch.equal(r, s) for (t, r), (_, s) in pairs if not t)  # validation untouched
    for got, expected in watch.checks:
        assert got == pytest.approx(float(expected), rel=1e-5)
    train = [(r, s) for (t, r), (_, s) in pairs if t]
    assert len(train) == len(watch.boxes) == 4
    for (raw, seen), ((y1, y2, x1, x2), perm, lam) in zip(train, watch.boxes, strict=True):
        inside = torch.zeros(12, 12, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        assert torch.equal(seen[..., inside], raw[perm][..., inside])  # the partner's box
        assert torch.equal(seen[..., ~inside], raw[..., ~inside])  # the rest is the image's own
        assert lam == pytest.approx(1 - inside.sum().item() / 144)  # lam is the share kept
    assert any(box[0] < box[1] and box[2] < box[3] for box, _, _ in watch.boxes)


def test_mixup_refuses_integer_inputs() -> None:
    learn = _learner([MixUp()], int_inputs=True)
    with pytest.raises(TypeError, match="help:"):
        learn.fit(1)


def test_cutmix_refuses_non_image_inputs() -> None:
    learn = _learner([CutMix()])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        learn.fit(1)


def test_alpha_must_be_positive() -> None:
    with pytest.raises(ValueError, match="help:"):
        MixUp(alpha=0.0)
