"""Confident learning: which given labels the model's out-of-fold probabilities say are wrong.

Written in lamina (cleanlab, the reference implementation, is AGPL-3.0): per-class thresholds from the
average self-confidence, the confident joint of given and likely-true labels, calibrated to the class
counts, then, for every pair of classes, the items with the largest margin pruned up to the estimated
number of wrong labels. Items are ranked by label quality (the probability of the given label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelIssues", "check_probs", "confident_joint", "find_label_issues"]


def check_probs(labels: np.ndarray, probs: np.ndarray, where: str = "find_label_issues") -> None:
    """Refuse probabilities that cannot be read as one distribution per item over the classes."""
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(
            f"{where}: expected labels of shape (N,) and probabilities of shape (N, C); got "
            f"{tuple(labels.shape)} and {tuple(probs.shape)}.\n"
            "help: give one row of class probabilities per item, in the order of the labels"
        )
    c = probs.shape[1]
    if c < 2:
        raise ValueError(
            f"{where}: the probabilities have {c} class; finding wrong labels needs at least 2.\n"
            "help: a dataset with one class has no label to get wrong; check the labelling function"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(
            f"{where}: labels must be class indices in [0, {c}); got values from {labels.min()} to "
            f"{labels.max()}.\nhelp: encode the labels with the data's vocabulary"
        )
    if not np.isfinite(probs).all():
        raise ValueError(
            f"{where}: the probabilities hold NaN or infinite values.\n"
            "help: leave out the items the model could not predict (e.g. broken files) first"
        )


def _thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of class j over the items labelled j (a class without items: 1, never)."""
    c = probs.shape[1]
    counts = np.bincount(labels, minlength=c)
    sums = np.zeros(c)
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_joint(labels: np.ndarray, probs: np.ndarray, calibrate: bool = True) -> np.ndarray:
    """C[i, j]: how many items labelled i are confidently of class j (rows calibrated to the label counts).

    An item counts for the class it is confidently in: the only class whose probability reaches that
    class's threshold, or the most probable of several; an item confident in none counts nowhere."""
    check_probs(labels, probs, "confident_joint")
    n, c = probs.shape
    above = probs >= _thresholds(labels, probs)[None, :] - 1e-6  # (N, C)
    n_above = above.sum(axis=1)
    guess = np.where(n_above > 1, probs.argmax(axis=1), above.argmax(axis=1))
    keep = n_above > 0
    joint = np.zeros((c, c))
    np.add.at(joint, (labels[keep], guess[keep]), 1.0)
    if not calibrate:
        return joint
    counts = np.bincount(labels, minlength=c).astype(float)
    row = joint.sum(axis=1)
    scaled = np.where(row[:, None] > 0, joint * (counts / np.maximum(row, 1))[:, None], 0.0)
    # a class whose items were confident nowhere keeps them all on the diagonal (no evidence of noise)
    empty = (row == 0) & (counts > 0)
    scaled[empty, empty] = counts[empty]
    return scaled * (n / max(scaled.sum(), 1e-12))


@dataclass(frozen=True)
class LabelIssues:
    """The result of `find_label_issues`: a mask, scores and suggestions per item, and the noise estimate.

    `quality[i]` is the probability of item i's given label (low: likely wrong); `joint[i, j]` the
    estimated number of items labelled i whose true class is j (off the diagonal: wrong labels)."""

    is_issue: np.ndarray  # (N,) bool
    quality: np.ndarray  # (N,) float in [0, 1]
    suggested: np.ndarray  # (N,) int: the most probable class
    joint: np.ndarray  # (C, C) float

    @property
    def ranked(self) -> np.ndarray:
        """Indices of the flagged items, worst label quality first."""
        idx = np.flatnonzero(self.is_issue)
        return idx[np.argsort(self.quality[idx], kind="stable")]

    @property
    def n_wrong(self) -> int:
        """The estimated number of wrong labels in the whole dataset (off-diagonal sum of the joint)."""
        return round(float(self.joint.sum() - np.trace(self.joint)))


def find_label_issues(labels: np.ndarray, probs: np.ndarray, min_per_class: int = 1) -> LabelIssues:
    """Flag the items whose given label is likely wrong, from out-of-fold probabilities (confident learning).

    For each given class i and each other class j, the round(C[i, j]) items labelled i with the largest
    margin p_j - p_i are flagged (prune by noise rate), never leaving class i with fewer than
    `min_per_class` items; an item the model predicts as its given class is never flagged.

    >>> issues = find_label_issues(np.array([0, 0, 1]), np.array([[.9, .1], [.2, .8], [.1, .9]]))
    >>> issues.is_issue.tolist()
    [False, True, False]
    """
    labels = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    check_probs(labels, probs)
    n, c = probs.shape
    joint = confident_joint(labels, probs)
    to_prune = np.rint(joint).astype(np.int64)
    np.fill_diagonal(to_prune, 0)
    is_issue = np.zeros(n, dtype=bool)
    for i in range(c):
        members = np.flatnonzero(labels == i)
        budget = max(0, len(members) - min_per_class)
        want = to_prune[i].copy()
        if want.sum() > budget:  # scale down, keeping the largest pairs' share
            want = np.floor(want * budget / want.sum()).astype(np.int64)
        for j in np.flatnonzero(want):
            margin = probs[members, j] - probs[members, i]
            is_issue[members[np.argsort(-margin, kind="stable")[: want[j]]]] = True
    pred = probs.argmax(axis=1)
    is_issue &= pred != labels
    quality = probs[np.arange(n), labels]
    return LabelIssues(is_issue=is_issue, quality=quality, suggested=pred, joint=joint)
