"""Duplicates and outliers: exact copies by content hash, near copies by the model's input, far items by
the model's embedding.

Near-duplicates need both: a pooled copy of what the model sees that correlates very highly, or is far
closer than any other item (a resized or re-encoded copy is; two different photos of one class are not)
and embeddings that agree.
The search is a blockwise all-pairs product on torch: O(N^2) time, but memory bounded by one block of
rows x N similarities (`_rows`: at most ~64 MB of them), so 100k items fit; see benchmarks/README.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DuplicateGroup", "exact_groups", "knn_outlier_scores", "near_pairs", "tukey_far"]

_SIM_BUDGET = 1 << 24  # similarities held at once (float32: 64 MB)


def _rows(m: int, budget: int = _SIM_BUDGET) -> int:
    """Rows per block so that a block of rows x `m` similarities stays within `budget` (1 to 4,096)."""
    return max(1, min(4096, budget // max(m, 1)))


@dataclass(frozen=True)
class DuplicateGroup:
    """Items that are copies of one another: `keep` is the first, `copies` the rest, with similarities."""

    keep: int
    copies: tuple[int, ...]
    similarity: tuple[float, ...]
    exact: bool


def exact_groups(keys: Sequence[str | None]) -> list[DuplicateGroup]:
    """Groups of items with the same key (a file's SHA-256); None keys are never grouped."""
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            by_key.setdefault(k, []).append(i)
    return [
        DuplicateGroup(g[0], tuple(g[1:]), (1.0,) * (len(g) - 1), True) for g in by_key.values() if len(g) > 1
    ]


def _unit(x: np.ndarray, center: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if center:
        t = t - t.mean(dim=1, keepdim=True)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _top2(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's best and second-best similarity to another row, and the best one's position."""
    best, second, arg = torch.empty(len(x)), torch.empty(len(x)), torch.empty(len(x), dtype=torch.long)
    for s in range(0, len(x), block):
        sim = x[s : s + block] @ x.T  # (b, M)
        sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -2.0  # not itself
        top = sim.topk(min(2, len(x) - 1), dim=1)
        best[s : s + block], arg[s : s + block] = top.values[:, 0], top.indices[:, 0]
        second[s : s + block] = top.values[:, -1]
    return best, second, arg


def near_pairs(
    fingerprints: np.ndarray,
    embeddings: np.ndarray,
    idx: np.ndarray,
    fold: np.ndarray | None = None,
    sure: float = 0.995,
    threshold: float = 0.97,
    ratio: float = 0.35,
    emb_threshold: float = 0.9,
    block: int | None = None,
) -> list[tuple[int, int, float]]:
    """(i, j, similarity) with i < j among items `idx` whose inputs correlate at least `sure`, or at least
    `threshold` while being each other's nearest by far: 1 - r(i, j) <= `ratio` x (1 - r(i, next nearest))
    (MNIST, 1,000 digits: planted copies 0.03-0.23, the closest pairs of different digits 1 above 0.46)
    from either side (Lowe's ratio test: a copy is much closer than any look-alike, as in a class of
    similar items, two different digits 1, are all close to each other). Embeddings must agree too when
    one model embedded both (the same `fold`; out-of-fold models each have their own embedding space).
    `block` rows are compared with all at once (default: as many as fit in ~64 MB of similarities)."""
    if len(idx) < 3:
        return []
    fp = _unit(fingerprints[idx], center=True)  # (M, F): cosine of centred values = correlation
    em = _unit(embeddings[idx], center=False)  # (M, D)
    block = block or _rows(len(idx))
    best, second, arg = _top2(fp, block)
    out: list[tuple[int, int, float]] = []
    for s in range(0, len(idx), block):
        sim = fp[s : s + block] @ fp.T  # (b, M)
        rows, cols = torch.nonzero(sim >= threshold, as_tuple=True)
        keep = cols > rows + s  # each pair once, never an item with itself
        rows, cols = rows[keep], cols[keep]
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i, v = r + s, float(sim[r, c])
            ok = v >= sure
            for a, b in ((i, c), (c, i)):
                nxt = float(second[a]) if int(arg[a]) == b else float(best[a])
                ok = ok or (1.0 - v) <= ratio * (1.0 - nxt)
            same_model = fold is None or fold[idx[i]] == fold[idx[c]]
            if ok and (not same_model or float((em[i] * em[c]).sum()) >= emb_threshold):
                out.append((int(idx[i]), int(idx[c]), v))
    return out


def knn_outlier_scores(
    embeddings: np.ndarray, idx: np.ndarray, k: int = 5, block: int | None = None
) -> np.ndarray:
    """Mean cosine distance from each item of `idx` to its `k` nearest other items (high: far from all);
    `block` rows at a time as in `near_pairs`."""
    if len(idx) <= k:
        return np.zeros(len(idx))
    em = _unit(embeddings[idx], center=False)
    out, block = np.empty(len(idx)), block or _rows(len(idx))
    for s in range(0, len(idx), block):
        sim = em[s : s + block] @ em.T  # (b, M)
        sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -2.0  # not itself
        top = sim.topk(k, dim=1).values
        out[s : s + block] = (1.0 - top).mean(dim=1).numpy()
    return out


def tukey_far(scores: np.ndarray, factor: float = 3.0) -> float:
    """Tukey's "far out" fence: Q3 + factor x IQR (a robust line above which a score is an outlier)."""
    if len(scores) == 0:
        return float("inf")
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q3 + factor * max(q3 - q1, 1e-6))
