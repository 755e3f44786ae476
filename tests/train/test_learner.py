"""Tests for the Learner's loop: event order, Cancel* scopes, callbacks per call, run_train/run_valid, order,
parameter groups (discriminative lrs, freezing, weight decay), schedules, evaluation and per-step cost."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import (
    Callback,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValid,
    Learner,
    accuracy,
)
from lamina.train.callback import CANCEL_EVENTS, EVENTS

N_TRAIN, N_VALID, BS = 16, 8, 8  # 2 training batches, 1 validation batch (valid bs is 2 * BS)


def _data(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return [(x[i], y[i]) for i in range(n)]


def make_dls(
    n_train: int = N_TRAIN, bs: int = BS, seed: int | None = None, shuffle: bool = False
) -> DataLoaders:
    return DataLoaders.from_dsets(
        _data(n_train, 0), _data(N_VALID, 1), bs=bs, shuffle=shuffle, num_workers=0, device="cpu", seed=seed
    )


class Body(nn.Module):
    """A tiny two-part model: body (linear + batch norm) and head, for the splitter tests."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def two_groups(m: nn.Module) -> list[list[nn.Parameter]]:
    assert isinstance(m, Body)
    return [list(m.body.parameters()), list(m.head.parameters())]


def make_learner(
    cbs: Callback | list[Callback] = (),  # type: ignore[assignment]
    model: nn.Module | None = None,
    dls: DataLoaders | None = None,
    **kw: Any,
) -> Learner:
    torch.manual_seed(0)
    model = model if model is not None else nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(
        dls if dls is not None else make_dls(),
        model,
        loss_func=CrossEntropyLossFlat(),
        metrics=accuracy,
        cbs=cbs,
        default_cbs=kw.pop("default_cbs", True),
        **kw,
    )


class Events(Callback):
    """Records every event it sees (with `training` for batch events)."""

    def __init__(self, raise_at: Callable[[Learner, str], BaseException | None] | None = None) -> None:
        self.seen: list[str] = []
        self.raise_at = raise_at

    def _record(self, ev: str) -> None:
        self.seen.append(ev)
        if self.raise_at is not None:
            exc = self.raise_at(self.learn, ev)
            if exc is not None:
                raise exc


for _ev in (*EVENTS, *CANCEL_EVENTS):
    setattr(Events, _ev, lambda self, _e=_ev: self._record(_e))

TRAIN_BATCH = [
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
]
VALID_BATCH = ["before_batch", "after_pred", "after_loss", "after_batch"]


def one_epoch(train: list[str], valid: list[str]) -> list[str]:
    return [
        "before_epoch",
        "before_train",
        *train,
        "after_train",
        "before_validate",
        *valid,
        "after_validate",
        "after_epoch",
    ]


# -- event order and cancellation ---------------------------------------------------------------------------
def test_events_fire_in_the_documented_order() -> None:
    ev = Events()
    learn = make_learner(ev, default_cbs=False)
    learn.fit(1)
    assert ev.seen == ["before_fit", *one_epoch(TRAIN_BATCH * 2, VALID_BATCH), "after_fit"]


def test_cancel_batch_ends_only_that_batch() -> None:
    def at(learn: Learner, ev: str) -> BaseException | None:
        return CancelBatch() if ev == "after_pred" and learn.training and learn.iter == 0 else None

    ev = Events(at)
    learn = make_learner(ev, default_cbs=False)
    learn.fit(1)
    cancelled = ["before_batch", "after_pred", "after_cancel_batch", "after_batch"]
    assert ev.seen == ["before_fit", *one_epoch(cancelled + TRAIN_BATCH, VALID_BATCH), "after_fit"]


def test_cancel_step_skips_the_update() -> None:
    ev = Events(lambda learn, e: CancelStep() if e == "before_step" else None)
    learn = make_learner(ev, default_cbs=False)
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    skipped = [*TRAIN_BATCH[:6], "after_cancel_step", "after_step", "after_batch"]
    assert ev.seen == ["before_fit", *one_epoch(skipped * 2, VALID_BATCH), "after_fit"]
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("exc", "event", "next_event"),
    [
        (CancelTrain, "before_batch", "before_validate"),  # the rest of training is skipped, validation runs
        (CancelValid, "before_validate", "after_epoch"),
        (CancelEpoch, "after_train", "before_epoch"),  # the next epoch starts
    ],
)
def test_cancel_train_valid_epoch_end_only_their_scope(
    exc: type[Exception], event: str, next_event: str
) -> None:
    fired: list[str] = []

    def at(learn: Learner, ev: str) -> BaseException | None:
        if ev == event and not fired:
            fired.append(ev)
            return exc()
        return None

    ev = Events(at)
    learn = make_learner(ev, default_cbs=False)
    learn.fit(2)
    scope = {CancelTrain: "train", CancelValid: "validate", CancelEpoch: "epoch"}[exc]
    i = ev.seen.index(f"after_cancel_{scope}")
    assert ev.seen[i - 1] == event
    assert ev.seen[i + 1 : i + 3] == [f"after_{scope}", next_event]
    assert ev.seen.count("before_epoch") == 2 and ev.seen[-1] == "after_fit"
    assert ev.seen.count("after_cancel_" + scope) == 1


def test_cancel_fit_stops_training_and_still_runs_after_fit() -> None:
    ev = Events(lambda learn, e: CancelFit() if e == "before_epoch" and learn.epoch == 1 else None)
    learn = make_learner([ev])
    learn.fit(3)
    assert ev.seen.count("before_epoch") == 2 and ev.seen.count("after_epoch") == 1
    assert ev.seen[-2:] == ["after_cancel_fit", "after_fit"]
    assert len(learn.recorder.values) == 1


@pytest.mark.parametrize(
    ("exc", "event"),
    [(CancelBatch, "before_epoch"), (CancelStep, "before_train"), (CancelTrain, "before_validate")],
)
def test_cancel_outside_its_scope_is_an_error(exc: type[Exception], event: str) -> None:
    ev = Events(lambda learn, e: exc() if e == event else None)
    learn = make_learner(ev)
    with pytest.raises(exc):
        learn.fit(1)


def test_fit_cbs_are_for_one_call_only() -> None:
    ev = Events()
    learn = make_learner()
    learn.fit(1, cbs=ev)
    assert ev.seen[0] == "before_fit" and ev not in learn.cbs
    learn.fit(1)
    assert ev.seen.count("before_fit") == 1
    boom = Events(lambda learn, e: RuntimeError("boom") if e == "after_pred" else None)
    with pytest.raises(RuntimeError, match="boom"):
        learn.fit(1, cbs=[boom])
    assert boom not in learn.cbs


def test_run_train_and_run_valid_limit_batch_events_only() -> None:
    class TrainOnly(Events):
        run_valid = False

    class ValidOnly(Events):
        run_train = False

    t, v = TrainOnly(), ValidOnly()
    learn = make_learner([t, v], default_cbs=False)
    learn.fit(2)
    epoch_events = [
        "before_epoch",
        "before_train",
        "after_train",
        "before_validate",
        "after_validate",
        "after_epoch",
    ]
    for cb in (t, v):  # phase events reach both, in both epochs
        assert ["before_fit", *epoch_events * 2, "after_fit"] == [e for e in cb.seen if e not in TRAIN_BATCH]
    assert (
        t.seen.count("after_batch") == 4 and t.seen.count("before_step") == 4
    )  # 2 epochs x 2 training batches
    assert v.seen.count("after_batch") == 2 and v.seen.count("before_step") == 0  # 2 epochs x 1 valid batch


def test_callbacks_run_by_order_then_as_added() -> None:
    calls: list[str] = []

    class Named(Callback):
        def __init__(self, name: str, order: int) -> None:
            self.tag, self.order = name, order

        def before_fit(self) -> None:
            calls.append(self.tag)

    learn = make_learner([Named("late", 20), Named("early", -5), Named("mid1", 0), Named("mid2", 0)])
    learn.fit(1)
    assert calls == ["early", "mid1", "mid2", "late"]


def test_events_index_holds_only_defining_callbacks() -> None:
    class OnlyFit(Callback):
        def after_fit(self) -> None:
            pass

    cb = OnlyFit()
    learn = make_learner(cb)
    assert all(c is not cb for ev, lst in learn._events.items() if ev != "after_fit" for c, _, _ in lst)
    assert any(c is cb for c, _, _ in learn._events["after_fit"])


# -- parameter groups ---------------------------------------------------------------------------------------
def _group_lrs(learn: Learner) -> list[float]:
    assert learn.opt is not None
    by_group: dict[int, float] = {}
    for g in learn.opt.param_groups:
        by_group.setdefault(int(g["lamina_group"]), float(g["lr"]))
    return [by_group[i] for i in sorted(by_group)]


def test_lr_slice_spreads_across_groups() -> None:
    learn = make_learner(model=Body(), splitter=two_groups)
    learn.fit(1, lr=slice(1e-4, 1e-2))
    assert _group_lrs(learn) == pytest.approx([1e-4, 1e-2])
    learn.fit(1, lr=slice(1e-2))
    assert _group_lrs(learn) == pytest.approx([1e-3, 1e-2])

    def three(m: nn.Module) -> list[list[nn.Parameter]]:
        assert isinstance(m, Body)
        return [list(m.body[0].parameters()), list(m.body[1].parameters()), list(m.head.parameters())]

    learn = make_learner(model=Body(), splitter=three)
    learn.fit(1, lr=slice(1e-4, 1e-2))
    assert _group_lrs(learn) == pytest.approx([1e-4, 1e-3, 1e-2])  # geometric


def test_freeze_trains_the_head_and_batchnorm() -> None:
    learn = make_learner(model=Body(), splitter=two_groups)
    m = learn.model
    assert isinstance(m, Body)
    learn.freeze()
    assert not m.body[0].weight.requires_grad and not m.body[0].bias.requires_grad
    assert m.body[1].weight.requires_grad and m.head.weight.requires_grad  # train_bn keeps BN trainable
    lin, bn = m.body[0].weight.detach().clone(), m.body[1].weight.detach().clone()
    learn.fit(1, lr=1e-2)
    assert torch.equal(lin, m.body[0].weight) and not torch.equal(bn, m.body[1].weight)
    learn.unfreeze()
    assert all(p.requires_grad for p in m.parameters())
    learn.freeze_to(1)
    assert not m.body[0].weight.requires_grad and m.head.weight.requires_grad

    learn = make_learner(model=Body(), splitter=two_groups, train_bn=False)
    learn.freeze()
    m = learn.model
    assert isinstance(m, Body)
    assert not m.body[1].weight.requires_grad and m.head.weight.requires_grad


def test_weight_decay_skips_norm_and_bias_by_default() -> None:
    learn = make_learner(model=Body(), splitter=two_groups, wd=0.1)
    learn.create_opt()
    assert learn.opt is not None
    m = learn.model
    assert isinstance(m, Body)
    no_decay = {id(m.body[0].bias), id(m.body[1].weight), id(m.body[1].bias), id(m.head.bias)}
    for g in learn.opt.param_groups:
        ids = {id(p) for p in g["params"]}
        assert g["weight_decay"] == (0.0 if ids <= no_decay else 0.1)
        assert not ids & no_decay or ids <= no_decay
    learn.fit(1, wd=0.5)  # changing wd later only touches the decayed groups
    assert sorted({g["weight_decay"] for g in learn.opt.param_groups}) == [0.0, 0.5]

    learn = make_learner(
        model=Body(), splitter=two_groups, wd=0.0
    )  # created with no decay: can still get some
    learn.fit(1, wd=0.2)
    assert learn.opt is not None
    assert sorted({g["weight_decay"] for g in learn.opt.param_groups}) == [0.0, 0.2]

    learn = make_learner(model=Body(), splitter=two_groups, wd=0.1, wd_bn_bias=True)
    learn.create_opt()
    assert learn.opt is not None
    assert {g["weight_decay"] for g in learn.opt.param_groups} == {0.1}


# -- schedules ----------------------------------------------------------------------------------------------
def test_fit_one_cycle_lr_rises_then_falls_and_momentum_moves_opposite() -> None:
    learn = make_learner(dls=make_dls(n_train=80))  # 10 batches per epoch
    learn.fit_one_cycle(2, 1e-2, pct_start=0.25)
    lrs, moms = learn.recorder.lrs, learn.recorder.moms
    assert len(lrs) == len(moms) == 20
    peak = max(range(len(lrs)), key=lambda i: lrs[i])
    assert 3 <= peak <= 6  # 25% of 20 steps
    assert lrs[0] == pytest.approx(1e-2 / 25) and max(lrs) <= 1e-2 and lrs[-1] < lrs[0]
    assert all(a <= b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert moms[0] == pytest.approx(0.95) and min(range(len(moms)), key=lambda i: moms[i]) == peak
    assert moms[-1] > moms[peak]


def test_fine_tune_runs_both_phases() -> None:
    ev = Events()
    learn = make_learner(model=Body(), splitter=two_groups)
    learn.fine_tune(2, base_lr=1e-2, freeze_epochs=1, cbs=ev)
    assert ev.seen.count("before_fit") == 2 and ev.seen.count("after_epoch") == 3
    assert all(p.requires_grad for p in learn.model.parameters())
    assert len(learn.recorder.values) == 2  # the Recorder keeps the last fit


# -- evaluation ---------------------------------------------------------------------------------------------
def test_validate_returns_loss_and_metrics() -> None:
    learn = make_learner()
    learn.fit(1)
    res = learn.validate()
    x = torch.stack([x for x, _ in _data(N_VALID, 1)])
    y = torch.stack([y for _, y in _data(N_VALID, 1)])
    with torch.no_grad():
        out = learn.model(x)
    expected = {
        "valid_loss": F.cross_entropy(out, y).item(),
        "accuracy": (out.argmax(1) == y).float().mean().item(),
    }
    assert res == pytest.approx(expected)
    assert learn.recorder.last_valid == pytest.approx(list(expected.values()))


def test_the_learner_validates_and_reports_by_name_without_any_callback() -> None:
    """The Learner owns its metrics: with default_cbs=False (no Recorder) validate still reports."""
    learn = make_learner(default_cbs=False)
    assert learn.cbs == [] and learn.recorder is None
    learn.fit(2)
    res = learn.validate()
    assert set(res) == {"valid_loss", "accuracy"} and 0 <= res["accuracy"] <= 1
    assert res == learn.last_metrics and res["valid_loss"] == pytest.approx(learn.validate()["valid_loss"])
    x = torch.stack([x for x, _ in _data(N_VALID, 1)])
    y = torch.stack([y for _, y in _data(N_VALID, 1)])
    with torch.no_grad():
        assert res["accuracy"] == pytest.approx((learn.model(x).argmax(1) == y).float().mean().item())


def test_get_preds_shapes_and_order() -> None:
    learn = make_learner()
    learn.fit(1)
    x = torch.stack([x for x, _ in _data(N_VALID, 1)])
    y = torch.stack([y for _, y in _data(N_VALID, 1)])
    with torch.no_grad():
        logits = learn.model(x)
    preds, targs = learn.get_preds()
    torch.testing.assert_close(preds, logits.softmax(1))
    assert torch.equal(targs, y)
    inp, preds2, targs2, dec, losses = learn.get_preds(with_input=True, with_decoded=True, with_loss=True)
    assert isinstance(inp, tuple) and len(inp) == 1 and torch.equal(inp[0], x)
    torch.testing.assert_close(preds2, preds)
    assert torch.equal(targs2, y) and torch.equal(dec, logits.argmax(1))
    torch.testing.assert_close(losses, F.cross_entropy(logits, y, reduction="none"))
    preds3, _, losses3 = learn.get_preds(with_loss=True)
    assert losses3.shape == (N_VALID,) and preds3.shape == (N_VALID, 2)


def test_training_is_finite_and_learns() -> None:
    learn = make_learner(dls=make_dls(n_train=64, seed=0, shuffle=True))
    learn.fit_one_cycle(4, 3e-2)
    rec = learn.recorder
    assert all(math.isfinite(v) for v in rec.losses)
    assert all(math.isfinite(v) for row in rec.values for v in row)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert rec.values[-1][1] < rec.values[0][1] or rec.values[-1][2] >= rec.values[0][2]


def test_no_host_sync_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The number of host reads of device values in a fit does not grow with the number of batches.

    (SGD: torch's CPU Adam reads its step counter with `.item()`, which is the optimizer's business.)"""
    counts = {"n": 0}

    def counting(name: str) -> None:
        orig = getattr(torch.Tensor, name)

        def f(self: torch.Tensor, *a: Any, **k: Any) -> Any:
            counts["n"] += 1
            return orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, f)

    def syncs(n_train: int) -> int:
        learn = make_learner(dls=make_dls(n_train=n_train), opt_func=torch.optim.SGD)
        counts["n"] = 0
        learn.fit(1)
        return counts["n"]

    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        counting(name)
    assert syncs(16) == syncs(64)  # 2 vs 8 training batches


def test_save_load_round_trip(tmp_path: Path) -> None:
    learn = make_learner(path=tmp_path)
    learn.fit(1)
    path = learn.save("m")
    assert path == tmp_path / "models" / "m.safetensors" and path.exists()
    other = make_learner(path=tmp_path)
    other.load("m")
    for a, b in zip(learn.model.parameters(), other.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert learn.opt is not None and other.opt is not None
    sa, sb = learn.opt.state_dict(), other.opt.state_dict()
    for pid, st in sa["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["state"][pid][k]))


def test_the_default_optimizer_is_adamw_with_short_schedule_defaults() -> None:
    """beta2 0.99 and eps 1e-5 (torch's 0.999 and 1e-8 let near-zero-gradient weights move by ~lr a step)."""
    learn = make_learner()
    learn.create_opt()
    opt = learn.opt
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.99) and g["eps"] == 1e-5 for g in opt.param_groups)
    learn.fit_one_cycle(1, 1e-2)
    assert learn.opt is opt and all(g["eps"] == 1e-5 for g in opt.param_groups)


def test_no_batch_outlives_the_loop() -> None:
    """After fit, validate and get_preds the learner holds no batch, prediction or loss (nor their graph)."""
    import gc
    import weakref

    learn = make_learner()
    seen: list[weakref.ref[torch.Tensor]] = []

    class Watch(Callback):
        def after_loss(self) -> None:
            seen.append(weakref.ref(self.learn.pred))

    learn.add_cb(Watch())
    for run in (lambda: learn.fit(1), learn.validate, learn.get_preds):
        seen.clear()
        run()
        gc.collect()
        assert learn.xb == () and learn.yb == () and learn.pred is None and learn.loss.numel() == 1
        assert seen and all(r() is None for r in seen[-1:]), "the last prediction is still referenced"


def test_a_non_finite_loss_ends_the_fit_with_an_error_that_names_the_batch() -> None:
    """Without any extra callback, a NaN loss stops the fit at the end of its epoch (no silent success)."""
    from lamina.train.callbacks.tracker import NonFiniteLossError

    class PoisonAt(Callback):
        def after_loss(self) -> None:
            if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 1:
                self.learn.loss = self.learn.loss * float("nan")

    learn = make_learner(cbs=PoisonAt())
    with pytest.raises(NonFiniteLossError, match=r"(?s)became nan at epoch 1, batch 1.*help: lower"):
        learn.fit(3)
    assert len(learn.recorder.values) == 1  # the first epoch was logged, nothing after the bad one
    learn.remove_cb(PoisonAt)
    assert learn.lr_find(num_it=20).valley > 0  # lr_find diverges on purpose and still suggests


def test_a_single_class_is_refused_before_training() -> None:
    from lamina.data import CategoryBlock, DataBlock, RandomSplitter, TransformBlock

    def dls(vocab: list[str] | None) -> DataLoaders:
        return DataBlock(
            blocks=(TransformBlock, CategoryBlock(vocab=vocab)),
            get_x=lambda i: torch.tensor([float(i)]),
            get_y=lambda i: "only",
            splitter=RandomSplitter(0.2, seed=0),
        ).dataloaders(list(range(10)), bs=2, num_workers=0)

    with pytest.raises(ValueError, match=r"(?s)single class \['only'\].*at least two.*help:"):
        Learner(dls(None), nn.Linear(1, 1))
    assert Learner(dls(["only", "other"]), nn.Linear(1, 2)).dls.c == 2  # a given vocabulary is taken as is


def test_opt_is_public_none_until_created_and_ensure_opt_creates_it_once() -> None:
    learn = make_learner(model=Body(), splitter=two_groups)
    assert learn.opt is None  # nothing built before fit, freeze or create_opt
    opt = learn.ensure_opt()
    assert learn.opt is opt and learn.ensure_opt() is opt
    fresh = learn.create_opt()
    assert fresh is not opt and learn.opt is fresh and learn.n_groups == 2
