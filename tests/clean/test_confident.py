"""Confident learning on simulated out-of-fold probabilities: found flips, the noise estimate, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.clean import confident_joint, find_label_issues


def _noisy(n: int = 3000, c: int = 6, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, ...]:
    """True classes, given labels with `noise` of them flipped, and probabilities from a ~93%-accurate model
    (it predicts the true class, not the given one, as out-of-fold models do)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, n)
    logits = rng.normal(0, 1.0, (n, c))
    logits[np.arange(n), true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flip = rng.choice(n, int(n * noise), replace=False)
    given[flip] = (true[flip] + rng.integers(1, c, len(flip))) % c
    return true, given, probs, flip


def test_finds_flipped_labels_with_high_precision_and_recall() -> None:
    true, given, probs, _ = _noisy()
    res = find_label_issues(given, probs)
    truth = given != true
    tp = int((res.is_issue & truth).sum())
    precision, recall = tp / res.is_issue.sum(), tp / truth.sum()
    assert precision >= 0.9 and recall >= 0.85, (precision, recall)
    # flagging every disagreement with the model (the naive rule) is much less precise here
    naive = probs.argmax(1) != given
    assert precision > (naive & truth).sum() / naive.sum() + 0.05
    # ranked worst first: the top of the list is almost all real flips
    assert truth[res.ranked[:100]].mean() >= 0.97


def test_noise_estimate_counts_wrong_labels_per_pair() -> None:
    true, given, probs, _ = _noisy(n=4000, c=3, noise=0.15, seed=1)
    res = find_label_issues(given, probs)
    actual = int((given != true).sum())
    assert abs(res.n_wrong - actual) <= 0.2 * actual, (res.n_wrong, actual)
    joint = res.joint
    assert joint.sum() == pytest.approx(len(given))
    np.testing.assert_allclose(joint.sum(1), np.bincount(given, minlength=3), rtol=1e-6)
    for g in range(3):
        for t in range(3):
            if g != t:  # each pair's estimate within 40% of the truth (about 100 each)
                n_pair = int(((given == g) & (true == t)).sum())
                assert abs(joint[g, t] - n_pair) <= 0.4 * n_pair, (g, t, joint[g, t], n_pair)


def test_clean_labels_give_few_issues() -> None:
    true, _, probs, _ = _noisy(noise=0.0)
    res = find_label_issues(true, probs)
    assert res.is_issue.sum() <= 0.03 * len(true)
    assert not (res.is_issue & (probs.argmax(1) == true)).any()  # never flags an item predicted as labelled


def test_confident_joint_uncalibrated_counts_confident_items_only() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.5, 0.5]])
    # thresholds: class 0: mean(0.9, 0.2) = 0.55; class 1: mean(0.9, 0.5) = 0.7
    cj = confident_joint(labels, probs, calibrate=False)
    assert cj.tolist() == [[1.0, 1.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("labels", "probs", "says"),
    [
        (np.array([0, 0]), np.array([[1.0], [1.0]]), "at least 2"),
        (np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]), "class indices"),
        (np.array([0, 1]), np.array([[np.nan, 0.5], [0.5, 0.5]]), "NaN"),
        (np.array([0, 1, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]), "shape"),
    ],
)
def test_bad_input_is_refused_with_help(labels: np.ndarray, probs: np.ndarray, says: str) -> None:
    with pytest.raises(ValueError, match=says) as e:
        find_label_issues(labels, probs)
    assert "help:" in str(e.value)
