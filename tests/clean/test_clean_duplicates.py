"""Blockwise near-duplicate search: the same pairs as one full similarity matrix, whatever the block size."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.clean.duplicates import knn_outlier_scores, near_pairs


def _items(n: int = 300, d: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """Random fingerprints with 12 planted noisy copies (and embeddings that agree on them)."""
    rng = np.random.default_rng(seed)
    fp = rng.normal(size=(n, d)).astype(np.float32)
    em = rng.normal(size=(n, 16)).astype(np.float32)
    planted = set()
    for k in range(12):
        a, b = 2 * k, n - 1 - 3 * k
        fp[b] = fp[a] + rng.normal(0, 0.05, d)
        em[b] = em[a] + rng.normal(0, 0.05, 16)
        planted.add((a, b))
    return fp, em, planted


def _brute(fp: np.ndarray, em: np.ndarray, sure: float = 0.995, threshold: float = 0.97, ratio: float = 0.35,
           emb: float = 0.9) -> list[tuple[int, int]]:  # fmt: skip
    """The same rule on the whole N x N matrix at once (numpy, float64)."""
    x = fp - fp.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    e = em / np.linalg.norm(em, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -2.0)
    out = []
    for i, j in zip(*np.nonzero(np.triu(sim >= threshold, 1)), strict=True):
        v = sim[i, j]
        nxt_i = np.sort(np.delete(sim[i], j))[-1]
        nxt_j = np.sort(np.delete(sim[j], i))[-1]
        ok = v >= sure or (1 - v) <= ratio * (1 - nxt_i) or (1 - v) <= ratio * (1 - nxt_j)
        if ok and float(e[i] @ e[j]) >= emb:
            out.append((int(i), int(j)))
    return sorted(out)


@pytest.mark.parametrize("block", [1, 7, 64, None])
def test_blockwise_pairs_equal_brute_force(block: int | None) -> None:
    fp, em, planted = _items()
    got = near_pairs(fp, em, np.arange(len(fp)), block=block)
    pairs = sorted((i, j) for i, j, _ in got)
    assert pairs == _brute(fp, em)
    assert set(pairs) == planted  # every planted copy, and nothing else, on this data
    assert all(0.97 <= s <= 1.0 + 1e-5 for _, _, s in got)


def test_pairs_on_a_subset_name_the_original_items() -> None:
    fp, em, planted = _items()
    idx = np.arange(0, len(fp), 1)[::-1].copy()  # any order, original positions come back
    got = {(min(i, j), max(i, j)) for i, j, _ in near_pairs(fp, em, idx, block=5)}
    assert got == planted


@pytest.mark.parametrize("block", [3, None])
def test_knn_outlier_scores_equal_brute_force(block: int | None) -> None:
    fp, _, _ = _items(n=200)
    got = knn_outlier_scores(fp, np.arange(len(fp)), k=5, block=block)
    u = fp / np.linalg.norm(fp, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -2.0)
    want = (1.0 - np.sort(sim, axis=1)[:, -5:]).mean(1)
    np.testing.assert_allclose(got, want, atol=1e-5)
