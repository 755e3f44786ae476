"""Tests for lamina.train.metrics: values against scikit-learn (when installed) and hand-worked examples,
weighting over uneven batches, no device sync in accumulate, and torchmetrics' sync across two ranks."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

from lamina.train.metrics import (
    AccumMetric,
    AvgMetric,
    Dice,
    DistSyncFn,
    F1Score,
    FBeta,
    JaccardCoeff,
    Metric,
    Perplexity,
    Precision,
    R2Score,
    Recall,
    RocAuc,
    accuracy,
    accuracy_multi,
    as_metric,
    error_rate,
    foreground_acc,
    mae,
    mse,
    rmse,
    top_k_accuracy,
)

Batches = list[tuple[Tensor, Tensor]]


def _sk(name: str, **kwargs: Any) -> Callable[..., Any]:
    """A scikit-learn metric function (the test is skipped without scikit-learn)."""
    skm = pytest.importorskip("sklearn.metrics")
    return functools.partial(getattr(skm, name), **kwargs)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batches(pred: Tensor, targ: Tensor, sizes: tuple[int, ...] = (7, 50, 3, 40)) -> Batches:
    """Split into uneven batches (sizes are cycled until the data runs out)."""
    out, i, k = [], 0, 0
    while i < len(pred):
        s = sizes[k % len(sizes)]
        out.append((pred[i : i + s], targ[i : i + s]))
        i, k = i + s, k + 1
    return out


def _run(metric: Metric, batches: Batches) -> float:
    metric.reset()
    for p, t in batches:
        metric.accumulate(p, t)
    return metric.value()


def _multiclass(n: int = 300, c: int = 5, seed: int = 0, unused_class: bool = False) -> tuple[Tensor, Tensor]:
    g = _gen(seed)
    pred = torch.randn(n, c, generator=g)
    targ = torch.randint(0, c, (n,), generator=g)
    pred[torch.arange(n), targ] += 1.0  # better than chance
    if unused_class:  # the last class is neither a target nor a prediction
        pred[:, -1] = -100.0
        targ = targ.clamp(max=c - 2)
    return pred, targ


def _binary(n: int = 300, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = _gen(seed)
    targ = torch.randint(0, 2, (n,), generator=g)
    pred = torch.randn(n, generator=g) + (targ.float() - 0.5)
    return pred, targ


def _multilabel(n: int = 300, c: int = 4, seed: int = 2) -> tuple[Tensor, Tensor]:
    g = _gen(seed)
    targ = (torch.rand(n, c, generator=g) < 0.4).long()
    pred = torch.randn(n, c, generator=g) + (targ.float() - 0.5) * 1.5
    return pred, targ


# ----------------------------------------------------------------------------------------------------
# functions


def test_accuracy_classification_and_sequences() -> None:
    pred = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    targ = torch.tensor([0, 1, 0, 1])
    assert accuracy(pred, targ).item() == pytest.approx(0.5)
    assert error_rate(pred, targ).item() == pytest.approx(0.5)
    seq = torch.randn(2, 6, 4, generator=_gen())  # (B, T, C)
    seq_targ = torch.randint(0, 4, (2, 6), generator=_gen(1))
    expected = (seq.argmax(-1) == seq_targ).float().mean()
    assert accuracy(seq, seq_targ).item() == pytest.approx(expected.item())


def _seg_logits(labels: Tensor, n_classes: int) -> Tensor:
    """(B, H, W) labels -> (B, C, H, W) logits whose argmax is those labels."""
    return F.one_hot(labels, n_classes).permute(0, 3, 1, 2).float() * 5


def test_segmentation_accuracy_and_foreground_acc() -> None:
    labels = torch.tensor([[[0, 1], [1, 1]]])  # (1, 2, 2)
    targ = torch.tensor([[[0, 1], [0, 1]]])
    pred = _seg_logits(labels, 2)  # (1, 2, 2, 2)
    assert accuracy(pred, targ).item() == pytest.approx(3 / 4)
    assert foreground_acc(pred, targ).item() == pytest.approx(1.0)
    assert foreground_acc(pred, targ, bkg_idx=1).item() == pytest.approx(1 / 2)


def test_top_k_accuracy() -> None:
    pred = torch.tensor(
        [[0.1, 0.5, 0.3, 0.1], [0.9, 0.05, 0.03, 0.02], [0.2, 0.3, 0.4, 0.1], [0.2, 0.3, 0.4, 0.1]]
    )
    targ = torch.tensor([2, 3, 0, 1])
    assert top_k_accuracy(pred, targ, k=2).item() == pytest.approx(2 / 4)
    assert top_k_accuracy(pred, targ, k=4).item() == pytest.approx(1.0)
    assert top_k_accuracy(pred, targ, k=1).item() == pytest.approx(accuracy(pred, targ).item())
    with pytest.raises(ValueError, match=r"k=5 but pred has 4 classes.*help:"):
        top_k_accuracy(pred, targ)


def test_accuracy_multi_with_and_without_sigmoid() -> None:
    logits = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
    targ = torch.tensor([[1, 0], [0, 0]])
    assert accuracy_multi(logits, targ).item() == pytest.approx(3 / 4)
    probs = torch.tensor([[0.9, 0.2], [0.1, 0.6]])
    targ2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert accuracy_multi(probs, targ2, sigmoid=False).item() == pytest.approx(1.0)
    assert accuracy_multi(probs, targ2, thresh=0.7, sigmoid=False).item() == pytest.approx(3 / 4)


def test_regression_functions_match_sklearn() -> None:
    g = _gen(3)
    pred, targ = torch.randn(64, 1, generator=g), torch.randn(64, generator=g)
    p, t = pred[:, 0].numpy(), targ.numpy()
    assert mse(pred, targ).item() == pytest.approx(_sk("mean_squared_error")(t, p), rel=1e-5)
    assert mae(pred, targ).item() == pytest.approx(_sk("mean_absolute_error")(t, p), rel=1e-5)
    assert rmse(pred, targ).item() == pytest.approx(math.sqrt(_sk("mean_squared_error")(t, p)), rel=1e-5)


def test_mismatched_shapes_are_clear_errors() -> None:
    m = as_metric(accuracy)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5,\).*batch size.*help:"):
        m.accumulate(torch.randn(4, 3), torch.randint(0, 3, (5,)))
    with pytest.raises(ValueError, match=r"one more dimension.*help:"):
        accuracy(torch.randn(4, 3), torch.randint(0, 3, (4, 2)))
    with pytest.raises(ValueError, match=r"same shape.*help:"):
        accuracy_multi(torch.randn(4, 3), torch.randint(0, 2, (4, 2)))
    with pytest.raises(ValueError, match=r"one prediction per target.*help:"):
        mse(torch.randn(4, 2), torch.randn(4))
    with pytest.raises(ValueError, match="help:"):
        F1Score().accumulate(torch.randn(4, 3), torch.randint(0, 3, (3,)))


# ----------------------------------------------------------------------------------------------------
# AvgMetric, rmse, Perplexity


def test_avg_metric_weights_uneven_batches_by_size() -> None:
    pred, targ = _multiclass()
    batches = _batches(pred, targ)
    assert len({len(t) for _, t in batches}) > 1
    m = as_metric(accuracy)
    assert isinstance(m, AvgMetric) and m.name == "accuracy"
    assert _run(m, batches) == pytest.approx(accuracy(pred, targ).item(), abs=1e-7)
    mean_of_batches = np.mean([accuracy(p, t).item() for p, t in batches])
    assert not math.isclose(mean_of_batches, accuracy(pred, targ).item())  # the weighting matters here


def test_rmse_over_uneven_batches_is_global() -> None:
    g = _gen(4)
    pred, targ = torch.randn(100, generator=g) * 3, torch.randn(100, generator=g)
    m = as_metric(rmse)
    assert m.name == "rmse" and not isinstance(m, AvgMetric)
    batches = _batches(pred, targ)
    expected = math.sqrt(_sk("mean_squared_error")(targ.numpy(), pred.numpy()))
    assert _run(m, batches) == pytest.approx(expected, rel=1e-6)
    assert not math.isclose(np.mean([rmse(p, t).item() for p, t in batches]), expected, rel_tol=1e-4)
    with pytest.raises(ValueError, match=r"as_metric\(rmse\)"):
        AvgMetric(rmse)


def test_perplexity_is_exp_of_mean_token_cross_entropy() -> None:
    g = _gen(5)
    b1 = (torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g))
    b2 = (torch.randn(3, 2, 7, generator=g), torch.randint(0, 7, (3, 2), generator=g))
    b2[1][0, 1] = -100  # padding
    logits = torch.cat([b1[0].reshape(-1, 7), b2[0].reshape(-1, 7)])
    tokens = torch.cat([b1[1].reshape(-1), b2[1].reshape(-1)])
    expected = F.cross_entropy(logits, tokens, ignore_index=-100).exp().item()
    m = Perplexity()
    assert m.name == "perplexity"
    assert _run(m, [b1, b2]) == pytest.approx(expected, rel=1e-6)


def test_value_before_any_batch_is_nan() -> None:
    for m in (as_metric(accuracy), as_metric(rmse), Perplexity(), F1Score(), RocAuc(), R2Score(), Dice()):
        m.reset()
        assert math.isnan(m.value()), m.name


# ----------------------------------------------------------------------------------------------------
# F-family against scikit-learn

F_FAMILY: list[tuple[Callable[[str], Metric], str, dict[str, float]]] = [
    (lambda avg: Precision(average=avg), "precision_score", {}),  # type: ignore[arg-type]
    (lambda avg: Recall(average=avg), "recall_score", {}),  # type: ignore[arg-type]
    (lambda avg: F1Score(average=avg), "f1_score", {}),  # type: ignore[arg-type]
    (lambda avg: FBeta(0.5, average=avg), "fbeta_score", {"beta": 0.5}),  # type: ignore[arg-type]
    (lambda avg: FBeta(2, average=avg), "fbeta_score", {"beta": 2}),  # type: ignore[arg-type]
]
F_IDS = ["precision", "recall", "f1", "f0.5", "f2"]


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("unused_class", [False, True])
@pytest.mark.parametrize(("make", "sk_name", "sk_kw"), F_FAMILY, ids=F_IDS)
def test_f_family_multiclass_matches_sklearn(
    make: Callable[[str], Metric], sk_name: str, sk_kw: dict[str, float], average: str, unused_class: bool
) -> None:
    sk = _sk(sk_name, **sk_kw)
    pred, targ = _multiclass(c=5, unused_class=unused_class)
    expected = sk(targ.numpy(), pred.argmax(1).numpy(), average=average, zero_division=0)
    assert _run(make(average), _batches(pred, targ)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("pos_label", [0, 1])
@pytest.mark.parametrize("two_scores", [False, True])
@pytest.mark.parametrize(("make", "sk_name", "sk_kw"), F_FAMILY, ids=F_IDS)
def test_f_family_binary_matches_sklearn(
    make: Callable[[str], Metric], sk_name: str, sk_kw: dict[str, float], pos_label: int, two_scores: bool
) -> None:
    sk = _sk(sk_name, **sk_kw)
    logit, targ = _binary()
    pred = torch.stack([-logit / 2, logit / 2], dim=1) if two_scores else logit  # (N, 2) or (N,)
    m = make("binary")
    assert isinstance(m, Precision | Recall | FBeta)
    m.pos_label = pos_label
    expected = sk(targ.numpy(), (logit > 0).long().numpy(), average="binary", pos_label=pos_label)
    assert _run(m, _batches(pred, targ)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize(("make", "sk_name", "sk_kw"), F_FAMILY, ids=F_IDS)
def test_f_family_multilabel_matches_sklearn(
    make: Callable[[str], Metric], sk_name: str, sk_kw: dict[str, float], average: str
) -> None:
    sk = _sk(sk_name, **sk_kw)
    pred, targ = _multilabel()
    expected = sk(targ.numpy(), (pred > 0).long().numpy(), average=average, zero_division=0)
    assert _run(make(average), _batches(pred, targ)) == pytest.approx(expected, abs=1e-9)


def test_f1_on_segmentation_with_ignore_index() -> None:
    g = _gen(6)
    pred = torch.randn(4, 3, 5, 6, generator=g)  # (B, C, H, W)
    targ = torch.randint(0, 3, (4, 5, 6), generator=g)
    targ[0, 0, :] = -100  # void pixels are left out
    keep = targ.reshape(-1) != -100
    expected = _sk("f1_score")(
        targ.reshape(-1)[keep].numpy(), pred.argmax(1).reshape(-1)[keep].numpy(), average="macro"
    )
    assert _run(F1Score(), _batches(pred, targ, (1, 3))) == pytest.approx(expected, abs=1e-9)


def test_f_family_errors() -> None:
    with pytest.raises(ValueError, match=r"average='samples'.*help:"):
        F1Score(average="samples")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"beta=0.*help:"):
        FBeta(0)
    pred, targ = _multiclass(c=5)
    m = F1Score(average="binary")
    m.accumulate(pred, targ)
    with pytest.raises(ValueError, match=r"two-class problem but got 5 classes.*help:"):
        m.value()
    m = F1Score()
    m.accumulate(pred, targ)
    with pytest.raises(ValueError, match=r"has 3 classes but earlier batches had 5.*help:"):
        m.accumulate(pred[:, :3], targ.clamp(max=2))


def test_names_are_snake_case() -> None:
    names = [
        F1Score().name,
        FBeta(2).name,
        Precision().name,
        Recall().name,
        RocAuc().name,
        R2Score().name,
        Dice().name,
        Dice(multi=True).name,
        JaccardCoeff().name,
        Perplexity().name,
    ]
    assert names == [
        "f1_score",
        "fbeta_score",
        "precision",
        "recall",
        "roc_auc",
        "r2_score",
        "dice",
        "dice_multi",
        "jaccard_coeff",
        "perplexity",
    ]
    assert F1Score(average="micro", name="f1_micro").name == "f1_micro"


# ----------------------------------------------------------------------------------------------------
# ROC AUC and R² against scikit-learn


def test_roc_auc_binary_with_ties_matches_sklearn() -> None:
    logit, targ = _binary()
    logit = logit.round(decimals=1)  # many ties
    expected = _sk("roc_auc_score")(targ.numpy(), logit.numpy())
    # torchmetrics builds the ROC curve in float32
    assert _run(RocAuc(), _batches(logit, targ)) == pytest.approx(expected, abs=1e-6)
    assert _run(RocAuc(), _batches(logit[:, None], targ)) == pytest.approx(expected, abs=1e-6)


def test_roc_auc_binary_two_scores_matches_sklearn() -> None:
    g = _gen(7)
    targ = torch.randint(0, 2, (200,), generator=g)
    pred = torch.randn(200, 2, generator=g) + F.one_hot(targ, 2) * 0.5
    expected = _sk("roc_auc_score")(targ.numpy(), pred.softmax(1)[:, 1].numpy())
    assert _run(RocAuc(), _batches(pred, targ)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("multi_class", "average"),
    [("ovr", "macro"), ("ovr", "weighted"), ("ovr", "micro"), ("ovo", "macro"), ("ovo", "weighted")],
)
def test_roc_auc_multiclass_matches_sklearn(multi_class: str, average: str) -> None:
    pred, targ = _multiclass(c=4, seed=8)
    targ[:150] = targ[:150].clamp(max=1)  # imbalanced, so "weighted" differs from "macro"
    probs = pred.double().softmax(1).numpy()
    expected = _sk("roc_auc_score")(targ.numpy(), probs, multi_class=multi_class, average=average)
    m = RocAuc(average=average, multi_class=multi_class)  # type: ignore[arg-type]
    assert _run(m, _batches(pred, targ)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
def test_roc_auc_multilabel_matches_sklearn(average: str) -> None:
    pred, targ = _multilabel()
    expected = _sk("roc_auc_score")(targ.numpy(), pred.double().sigmoid().numpy(), average=average)
    assert _run(RocAuc(average=average), _batches(pred, targ)) == pytest.approx(expected, abs=1e-6)  # type: ignore[arg-type]


def test_roc_auc_undefined_and_bad_arguments() -> None:
    assert math.isnan(_run(RocAuc(), [(torch.randn(10), torch.ones(10))]))
    with pytest.raises(ValueError, match=r"micro.*ovo.*help:"):
        RocAuc(average="micro", multi_class="ovo")
    with pytest.raises(ValueError, match="help:"):
        RocAuc(average="samples")  # type: ignore[arg-type]


def test_r2_score_matches_sklearn() -> None:
    g = _gen(9)
    targ = torch.randn(120, generator=g)
    pred = (targ + 0.5 * torch.randn(120, generator=g))[:, None]  # (N, 1) output for (N,) targets
    expected = _sk("r2_score")(targ.numpy(), pred[:, 0].numpy())
    assert _run(R2Score(), _batches(pred, targ)) == pytest.approx(expected, rel=1e-6)
    targ3 = torch.randn(120, 3, generator=g) * torch.tensor([1.0, 10.0, 0.1])
    pred3 = targ3 + torch.randn(120, 3, generator=g)
    expected3 = _sk("r2_score")(targ3.numpy(), pred3.numpy())
    assert _run(R2Score(), _batches(pred3, targ3)) == pytest.approx(expected3, rel=1e-6)


def test_r2_score_constant_target_like_sklearn() -> None:
    targ = torch.full((10,), 2.0)
    for pred in (targ.clone(), targ + torch.linspace(-1, 1, 10)):
        expected = _sk("r2_score")(targ.numpy(), pred.numpy())
        assert _run(R2Score(), [(pred, targ)]) == pytest.approx(expected)


# ----------------------------------------------------------------------------------------------------
# Dice and Jaccard (hand-worked)


def test_dice_and_jaccard_binary_by_hand() -> None:
    labels = torch.tensor([[[0, 1], [1, 1]]])  # predicted foreground: 3 pixels
    targ = torch.tensor([[[0, 1], [0, 1]]])  # target foreground: 2 pixels, 2 in common
    for pred in (_seg_logits(labels, 2), (labels.float() * 2 - 1) * 3):  # (B, 2, H, W) or (B, H, W) logits
        assert _run(Dice(), [(pred, targ)]) == pytest.approx(2 * 2 / (3 + 2))
        assert _run(JaccardCoeff(), [(pred, targ)]) == pytest.approx(2 / (3 + 2 - 2))


def test_dice_and_jaccard_multi_by_hand() -> None:
    labels = torch.tensor([[[0, 1], [2, 2]]])
    targ = torch.tensor([[[0, 1], [1, 2]]])
    pred = _seg_logits(labels, 4)  # class 3 appears nowhere: left out
    # class 0: 1 of 1+1; class 1: 1 common, 1 + 2; class 2: 1 common, 2 + 1
    assert _run(Dice(multi=True), [(pred, targ)]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert _run(JaccardCoeff(multi=True), [(pred, targ)]) == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)


def test_dice_is_computed_over_all_pixels_not_per_batch() -> None:
    b1 = (_seg_logits(torch.tensor([[[1, 1], [1, 1]]]), 2), torch.tensor([[[1, 0], [0, 0]]]))  # 2*1/(4+1)
    b2 = (_seg_logits(torch.tensor([[[1, 0], [0, 0]]]), 2), torch.tensor([[[1, 0], [0, 0]]]))  # 2*1/(1+1)
    assert _run(Dice(), [b1, b2]) == pytest.approx(2 * 2 / (5 + 2))


def test_dice_errors_and_empty() -> None:
    pred = _seg_logits(torch.tensor([[[0, 1], [2, 2]]]), 3)
    m = Dice()
    m.accumulate(pred, torch.tensor([[[0, 1], [1, 2]]]))
    with pytest.raises(ValueError, match=r"multi=False.*3 classes.*help: use Dice\(multi=True\)"):
        m.value()
    nothing = torch.zeros(1, 2, 2, dtype=torch.long)
    assert math.isnan(_run(Dice(), [(_seg_logits(nothing, 2), nothing)]))


# ----------------------------------------------------------------------------------------------------
# AccumMetric


def test_accum_metric_activation_argmax_thresh_flatten() -> None:
    pred, targ = _multiclass()

    def acc(p: Tensor, t: Tensor) -> Tensor:
        return (p == t).float().mean()

    m = AccumMetric(acc, activation="softmax", argmax=True)
    assert m.name == "acc"
    assert _run(m, _batches(pred, targ)) == pytest.approx(accuracy(pred, targ).item())
    mp, mt = _multilabel()
    m = AccumMetric(acc, activation="sigmoid", thresh=0.5)
    assert _run(m, _batches(mp, mt)) == pytest.approx(accuracy_multi(mp, mt).item())
    with pytest.raises(ValueError, match=r"flatten=False.*argmax=True"):
        _run(AccumMetric(acc), [(pred, targ)])
    with pytest.raises(ValueError, match="help:"):
        AccumMetric(acc, activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"argmax=True and thresh.*help:"):
        AccumMetric(acc, argmax=True, thresh=0.5)


# ----------------------------------------------------------------------------------------------------
# no sync in accumulate; torchmetrics' sync across two ranks


def _cases() -> list[tuple[Callable[[], Metric], Tensor, Tensor]]:
    mc, mt = _multiclass()
    bl, bt = _binary()
    ml, mlt = _multilabel()
    g = _gen(10)
    reg_p, reg_t = torch.randn(100, 1, generator=g), torch.randn(100, generator=g)
    seg_p, seg_t = torch.randn(6, 3, 4, 4, generator=g), torch.randint(0, 3, (6, 4, 4), generator=g)
    lm_p, lm_t = torch.randn(6, 5, 11, generator=g), torch.randint(0, 11, (6, 5), generator=g)
    return [
        (lambda: as_metric(accuracy), mc, mt),
        (lambda: as_metric(functools.partial(top_k_accuracy, k=2)), mc, mt),
        (lambda: as_metric(mae), reg_p, reg_t),
        (lambda: as_metric(rmse), reg_p, reg_t),
        (lambda: R2Score(), reg_p, reg_t),
        (lambda: Perplexity(), lm_p, lm_t),
        (lambda: F1Score(), mc, mt),
        (lambda: Precision(average="weighted"), mc, mt),
        (lambda: Recall(average="binary"), bl, bt),
        (lambda: FBeta(2, average="micro"), ml, mlt),
        (lambda: RocAuc(), mc, mt),
        (lambda: RocAuc(), bl, bt),
        (lambda: RocAuc(multi_class="ovo"), mc, mt),
        (lambda: Dice(multi=True), seg_p, seg_t),
        (lambda: JaccardCoeff(multi=True), seg_p, seg_t),
        (lambda: AccumMetric(mse), reg_p, reg_t),
        (lambda: as_metric(foreground_acc), seg_p, seg_t),
    ]


@contextmanager
def _no_host_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every way of reading a tensor's value on the host raise."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a tensor was read on the host during accumulate")

    with monkeypatch.context() as mp:
        for attr in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"):
            mp.setattr(torch.Tensor, attr, boom)
        yield


def test_accumulate_never_reads_values_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for make, pred, targ in _cases():
        m = make()
        m.reset()
        with _no_host_sync(monkeypatch):
            for p, t in _batches(pred, targ, (2, 3)):
                m.accumulate(p, t)
        assert type(m.value()) is float, m.name


def _gather_with(other: Metric) -> DistSyncFn:
    """A stand-in for the all-gather between this rank and `other`: [this rank's, other's]."""
    sums = getattr(other, "_sums", None)  # lamina's own running means (no torchmetrics state)
    if sums is not None:
        theirs = iter([sums])
    else:
        tm = other._tm  # type: ignore[attr-defined]
        assert isinstance(tm, torchmetrics.Metric)
        theirs = iter(torch.cat(v) if isinstance(v, list) else v for v in tm.metric_state.values())

    def gather(t: Tensor, group: Any = None) -> list[Tensor]:
        return [t, next(theirs)]

    return gather


@pytest.mark.parametrize("case", range(len(_cases())))
def test_state_round_trip_two_ranks(case: int) -> None:
    make, pred, targ = _cases()[case]
    batches = _batches(pred, targ, (2, 3))
    single = _run(make(), batches)
    ranks = [make(), make()]
    for rank, rank_batches in zip(
        ranks, (batches[0::2], batches[1::2]), strict=True
    ):  # whole batches per rank
        _run(rank, rank_batches)
    local = ranks[0].value()
    ranks[0].sync(dist_sync_fn=_gather_with(ranks[1]))
    assert ranks[0].value() == pytest.approx(single, rel=1e-6), ranks[0].name
    ranks[0].reset()  # the next pass starts from nothing
    _run(ranks[0], batches[0::2])
    assert ranks[0].value() == pytest.approx(local, rel=1e-6, nan_ok=True), ranks[0].name
    with pytest.raises(RuntimeError, match="help:"):
        make().sync()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_accumulate_does_not_sync_cuda() -> None:
    for make, pred, targ in _cases():
        m = make()
        m.reset()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for p, t in _batches(pred.cuda(), targ.cuda(), (2, 3)):
                m.accumulate(p, t)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert m.value() == pytest.approx(_run(make(), _batches(pred, targ, (2, 3))), rel=1e-5), m.name


# ----------------------------------------------------------------------------------------------------
# as_metric


class MeanAbsoluteError:
    """A stand-in for a torchmetrics metric: update / compute / reset."""

    def __init__(self) -> None:
        self.reset()

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.total += (preds - target).abs().sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return self.total / self.count

    def reset(self) -> None:
        self.total, self.count = torch.zeros(()), 0


def test_as_metric_function_and_metric() -> None:
    m = as_metric(error_rate)
    assert isinstance(m, AvgMetric) and m.name == "error_rate"
    assert as_metric(functools.partial(top_k_accuracy, k=2)).name == "top_k_accuracy"
    f1 = F1Score()
    assert as_metric(f1) is f1


def test_as_metric_torchmetrics_like() -> None:
    g = _gen(11)
    pred, targ = torch.randn(50, generator=g), torch.randn(50, generator=g)
    m = as_metric(MeanAbsoluteError())
    assert m.name == "mean_absolute_error"
    for _ in range(2):  # reset between passes
        assert _run(m, _batches(pred, targ)) == pytest.approx(mae(pred, targ).item(), rel=1e-6)


def test_as_metric_real_torchmetrics() -> None:
    pred, targ = _multiclass(c=5)
    m = as_metric(torchmetrics.classification.MulticlassAccuracy(num_classes=5, average="micro"))
    assert m.name == "multiclass_accuracy"
    assert _run(m, _batches(pred, targ)) == pytest.approx(accuracy(pred, targ).item(), rel=1e-6)


def test_as_metric_errors() -> None:
    with pytest.raises(TypeError, match=r"class F1Score.*help: call it, e.g. F1Score\(\)"):
        as_metric(F1Score)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="help:"):
        as_metric(3)  # type: ignore[arg-type]


def test_plain_metric_functions_do_not_import_torchmetrics() -> None:
    """accuracy & co. are running means kept by lamina: a fit with them does not pay torchmetrics' import
    (~2.5 s on top of torch here); F-scores, ROC AUC, R² and friends do import it, when first built."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from lamina.train.metrics import accuracy, as_metric, Perplexity\n"
        "for m in (as_metric(accuracy), Perplexity()):\n"
        "    m.reset(); m.accumulate(torch.randn(4, 3), torch.tensor([0, 1, 2, 1])); m.value()\n"
        "print('torchmetrics' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
