"""find_issues: the likely label errors, duplicates, outliers and broken files of a dataset, in one table.

>>> issues = find_issues(dls, lambda d: vision_learner(d, "test_resnet", pretrained=False))  # doctest: +SKIP
>>> issues.table.head()        # item, issue, score, label, suggested, detail       # doctest: +SKIP
>>> issues.to_csv("issues.csv"); issues.review("review.html")                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from lamina.clean.confident import find_label_issues
from lamina.clean.duplicates import exact_groups, knn_outlier_scores, near_pairs, tukey_far
from lamina.clean.images import FileCheck, check_image_files, odd_shapes
from lamina.clean.oof import LearnerFactory, Predictions, all_items, learner_predictions, out_of_fold
from lamina.clean.source import DatasetSource
from lamina.core import TensorImage
from lamina.data import DataBlock, DataLoaders, Getter
from lamina.data.datasets import describe_item, get_item
from lamina.data.sources import IMAGE_EXTENSIONS
from lamina.train import Learner

if TYPE_CHECKING:
    from lamina.clean.widget import ReviewWidget

__all__ = ["CHECKS", "COLUMNS", "ISSUE_TYPES", "Issues", "find_issues"]

CHECKS = ("label", "duplicate", "outlier", "file")
ISSUE_TYPES = ("label", "duplicate", "near_duplicate", "leak", "outlier", "broken", "odd_size", "blank")
COLUMNS = ["item", "issue", "score", "label", "suggested", "detail", "related", "index", "split"]


@dataclass
class Issues:
    """What `find_issues` found: `table` (one row per item and issue, worst first; `related` names the other
    item of a duplicate pair) and the estimate of wrong labels per class pair in `noise` (rows: given label,
    columns: likely true label)."""

    table: pd.DataFrame
    noise: pd.DataFrame | None
    items: list[str]
    labels: list[str]
    vocab: list[str] | None
    source: DatasetSource | None
    paths: list[Path | None]
    predictions: Predictions | None
    notes: list[str] = field(default_factory=list)
    previews: dict[int, str] = field(default_factory=dict)  # a table's flagged rows as `col=value; ...`

    def of(self, issue: str) -> pd.DataFrame:
        """The rows of one issue type (`"label"`, `"duplicate"`, ...)."""
        if issue not in ISSUE_TYPES:
            raise ValueError(f"Issues.of: unknown issue {issue!r}.\nhelp: one of {', '.join(ISSUE_TYPES)}")
        return self.table[self.table["issue"] == issue]

    @property
    def n_wrong_labels(self) -> int:
        """The estimated number of wrong labels (the off-diagonal sum of `noise`), not just those flagged."""
        if self.noise is None:
            return int((self.table["issue"] == "label").sum())
        m = self.noise.to_numpy()
        return round(float(m.sum() - np.trace(m)))

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV (the columns of `COLUMNS`)."""
        p = Path(path)
        self.table.to_csv(p, index=False)
        return p

    def summary(self) -> str:
        """A few lines for people: counts per issue type, the estimate of wrong labels, the worst pairs."""
        counts = self.table["issue"].value_counts()
        lines = [f"{len(self.items)} items; {self.table['item'].nunique()} with at least one issue"]
        lines += [f"  {k:<15} {int(counts.get(k, 0))}" for k in ISSUE_TYPES if counts.get(k, 0)]
        if self.noise is not None:
            lines.append(f"estimated wrong labels: {self.n_wrong_labels} of {len(self.items)}")
            m = self.noise.to_numpy().copy()
            np.fill_diagonal(m, 0)
            for flat in np.argsort(-m, axis=None)[:5]:
                g, t = np.unravel_index(flat, m.shape)
                if m[g, t] >= 0.5:
                    lines.append(
                        f"  labelled {self.noise.index[g]!s} but likely {self.noise.columns[t]!s}: "
                        f"~{m[g, t]:.0f}"
                    )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def review(self, path: str | os.PathLike[str], max_items: int = 2000, thumb: int = 96) -> Path:
        """Write the self-contained review page (see `lamina.clean.review.write_review`)."""
        from lamina.clean.review import write_review

        return write_review(self, path, max_items=max_items, thumb=thumb)

    def widget(self, max_items: int = 200) -> ReviewWidget:
        """The same review in a Jupyter notebook (ipywidgets)."""
        from lamina.clean.widget import ReviewWidget

        return ReviewWidget(self, max_items=max_items)

    def __repr__(self) -> str:
        return f"Issues({len(self.table)} rows)\n{self.summary()}"


def _as_dls(data: DataLoaders | Learner | DataBlock, source: Any, bs: int, seed: int) -> DataLoaders:
    if isinstance(data, Learner):
        return data.dls
    if isinstance(data, DataBlock):
        if source is None:
            raise ValueError(
                "find_issues: got a DataBlock without `data_source`.\n"
                "help: pass data_source=<the path or table the DataBlock reads>, or DataLoaders"
            )
        return data.dataloaders(source, bs=bs, seed=seed)
    if isinstance(data, DataLoaders):
        return data
    raise TypeError(
        f"find_issues: expected DataLoaders, a DataBlock or a Learner; got {type(data).__name__}.\n"
        "help: e.g. find_issues(ImageDataLoaders.from_folder(path, valid_pct=0.2), 'test_resnet')"
    )


def _factory(
    dls: DataLoaders, learner: LearnerFactory | str | Learner | None, image_files: bool
) -> LearnerFactory:
    if callable(learner) and not isinstance(learner, Learner):
        return learner
    if isinstance(learner, str) and (image_files or _is_image_data(dls)):
        from lamina.vision import vision_learner

        arch = learner
        return lambda d: vision_learner(d, arch, pretrained=False)
    raise ValueError(
        f"find_issues: cannot build a learner from {learner!r} for these data (not image files).\n"
        "help: pass a function that builds your learner from DataLoaders, e.g. "
        "lambda dls: vision_learner(dls, 'resnet18', pretrained=False); an architecture name works for images"
    )


def _is_image_data(dls: DataLoaders) -> bool:
    return len(dls.train.dataset) > 0 and issubclass(dls.train.types[0], TensorImage)


def _sources(dls: DataLoaders) -> list[Any]:
    """What each item's input getter returns (a file path for images; the raw item otherwise)."""
    dsets = dls.dsets
    if dsets is None:  # a processed table: rows by position (training rows first)
        items = all_items(dls)
        n_train = int((~items.valid).sum())
        return [
            f"{'valid' if v else 'train'} row {i - n_train if v else i}" for i, v in enumerate(items.valid)
        ]
    p = dsets.pipelines[0]
    getter = p.tfms[0] if p.tfms and isinstance(p.tfms[0], Getter) else None
    out = []
    for i in range(len(dsets)):
        raw = get_item(dsets.items, i)
        try:
            out.append(getter(raw) if getter is not None else raw)
        except Exception:
            out.append(raw)
    return out


def _paths(sources: Sequence[Any]) -> list[Path | None]:
    out: list[Path | None] = []
    for s in sources:
        ok = isinstance(s, str | os.PathLike) and os.path.splitext(str(s))[1].lower() in IMAGE_EXTENSIONS
        out.append(Path(s) if ok else None)
    return out


def _names(sources: Sequence[Any], paths: Sequence[Path | None], root: Path | None) -> list[str]:
    out = []
    for i, (s, p) in enumerate(zip(sources, paths, strict=True)):
        if p is not None and root is not None:
            try:
                out.append(Path(os.path.abspath(p)).relative_to(root).as_posix())
                continue
            except ValueError:
                pass
        out.append(p.as_posix() if p is not None else s if isinstance(s, str) else f"#{i} {describe_item(s)}")
    return out


def _common_root(paths: Sequence[Path | None]) -> Path | None:
    files = [os.path.abspath(p) for p in paths if p is not None]
    if not files:
        return None
    return Path(os.path.commonpath([os.path.dirname(f) for f in files]))


def find_issues(
    data: DataLoaders | Learner | DataBlock,
    learner: LearnerFactory | str | Learner | None = None,
    folds: int = 5,
    epochs: int = 2,
    lr: float | None = None,
    quick: bool = False,
    checks: Sequence[str] = CHECKS,
    source: DatasetSource | None = None,
    data_source: Any = None,
    bs: int = 64,
    seed: int = 42,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Issues:
    """Rank the likely label errors, duplicates, outliers and broken files of `data`.

    `learner`: a function building the user's learner from DataLoaders (the recipe each fold trains with
    `fit_one_cycle(epochs, lr)`), or an architecture name for image data. With `quick=True`, `data` (or
    `learner`) is a trained Learner whose own predictions are used: one pass, but biased. `source` says
    where the items live on disk for `apply` (default: the folder above every file). `checks`: any of
    "label", "duplicate", "outlier", "file".

    >>> issues = find_issues(dls, "test_resnet", folds=5)   # doctest: +SKIP
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"find_issues: unknown checks {unknown}.\nhelp: any of {', '.join(CHECKS)}")
    trained = learner if isinstance(learner, Learner) else data if isinstance(data, Learner) else None
    if quick and trained is None:
        raise ValueError(
            "find_issues: quick=True uses a trained learner's predictions, but none was given.\n"
            "help: pass the trained Learner (find_issues(learn, quick=True)), or drop quick for out-of-fold"
        )
    dls = _as_dls(data, data_source, bs, seed)
    items = all_items(dls)
    valid_idx = np.flatnonzero(items.valid).tolist()
    say = log if log is not None else (lambda s: None)
    sources = _sources(dls)
    paths = _paths(sources)
    root = source.root if source is not None else _common_root(paths)
    names = _names(sources, paths, root)
    n = len(items)
    rows: list[dict[str, Any]] = []

    file_checks: list[FileCheck | None] = [None] * n
    if any(p is not None for p in paths) and ("file" in checks or "duplicate" in checks):
        say(f"checking {sum(p is not None for p in paths)} files")
        file_checks = check_image_files(paths)
    broken = [i for i, c in enumerate(file_checks) if c is not None and c.error is not None]
    if "file" in checks:
        for i in broken:
            rows.append({"index": i, "issue": "broken", "score": 1.0, "detail": file_checks[i].error})  # type: ignore[union-attr]
        for i, (issue, score, detail) in odd_shapes(file_checks).items():
            rows.append({"index": i, "issue": issue, "score": score, "detail": detail})

    preds: Predictions | None = None
    needs_model = bool({"label", "duplicate", "outlier"} & set(checks))
    if needs_model and n - len(broken) > 0:
        if quick:
            assert trained is not None
            preds = learner_predictions(trained, exclude=broken)
        else:
            factory = _factory(dls, learner, image_files=any(p is not None for p in paths))
            say(f"training {folds} models on folds of {n - len(broken)} items ({epochs} epochs each)")
            preds = out_of_fold(
                dls, factory, folds=folds, epochs=epochs, lr=lr, seed=seed, exclude=broken,
                progress=progress, log=say,
            )  # fmt: skip
    targets = preds.targets if preds is not None else None
    vocab = [str(v) for v in dls.vocab] if dls.vocab is not None else None
    labels = _label_texts(dls, targets, n)
    noise = None
    ok = np.flatnonzero(preds.predicted) if preds is not None else np.zeros(0, dtype=np.int64)
    if preds is not None and "label" in checks:
        if vocab is not None:
            li = find_label_issues(preds.targets[ok], preds.probs[ok])
            noise = pd.DataFrame(
                li.joint, index=pd.Index(vocab, name="given"), columns=pd.Index(vocab, name="true")
            )
            for k in np.flatnonzero(li.is_issue):
                i = int(ok[k])
                p_sugg = float(preds.probs[i, li.suggested[k]])
                rows.append({
                    "index": i, "issue": "label", "score": 1.0 - float(li.quality[k]),
                    "suggested": vocab[int(li.suggested[k])],
                    "detail": f"p(given) {li.quality[k]:.3f}, p(suggested) {p_sugg:.3f}",
                })  # fmt: skip
        else:
            rows += _regression_issues(preds, ok)

    if "duplicate" in checks:
        # near copies by input correlation only for images: a table row's few values correlate by chance
        near = any(p is not None for p in paths)
        rows += _duplicate_rows(preds, file_checks, ok, names, valid_idx, n, near=near)
    if preds is not None and "outlier" in checks:
        rows += _outlier_rows(preds, ok)

    table = _table(rows, names, labels, valid_idx)
    notes = list(preds.notes) if preds is not None else []
    return Issues(
        table=table, noise=noise, items=names, labels=labels, vocab=vocab,
        source=source if source is not None else (DatasetSource(root) if root is not None else None),
        paths=paths, predictions=preds, notes=notes,
        previews=_row_previews(dls, sorted({int(r["index"]) for r in rows})),
    )  # fmt: skip


def _row_previews(dls: DataLoaders, indices: Sequence[int], width: int = 400) -> dict[int, str]:
    """A processed table's rows (training rows first, as the items are) decoded back to their values as
    `col=value; ...`, so a reviewer sees the row and not only its number; {} for other data."""
    parts = [dl.dataset for dl in (dls.train, dls.valid)]
    if dls.dsets is not None or not all(hasattr(t, "cats") and hasattr(t, "conts") for t in parts):
        return {}
    n_train = len(parts[0])
    out = {}
    for dl, start, idx in ((dls.train, 0, [i for i in indices if i < n_train]),
                           (dls.valid, n_train, [i for i in indices if i >= n_train])):  # fmt: skip
        if not idx:
            continue
        table: Any = dl.dataset
        rows = torch.tensor(idx) - start
        decoded = dl.decode_batch((table.cats[rows], table.conts[rows]), max_n=len(idx))  # one call a split
        for i, item in zip(idx, decoded, strict=True):
            values: dict[str, Any] = {}
            for part in item:
                if isinstance(part, dict):
                    values.update(part)
            out[i] = "; ".join(f"{c}={v}" for c, v in values.items())[:width]
    return out


def _label_texts(dls: DataLoaders, targets: np.ndarray | None, n: int) -> list[str]:
    if targets is None:
        from lamina.clean.oof import item_targets

        targets = item_targets(dls)
    vocab = dls.vocab
    if vocab is not None:
        return [str(vocab[int(t)]) for t in targets]
    return [f"{float(t):g}" for t in targets]


def _regression_issues(preds: Predictions, ok: np.ndarray, z: float = 5.0) -> list[dict[str, Any]]:
    """Targets far from the out-of-fold prediction, in robust units of the residuals' spread."""
    pred = preds.probs[ok, 0]
    resid = pred - preds.targets[ok]
    med = np.median(resid)
    scale = max(1.4826 * float(np.median(np.abs(resid - med))), 1e-12)
    zs = np.abs(resid - med) / scale
    rows = []
    for k in np.flatnonzero(zs >= z):
        rows.append({
            "index": int(ok[k]), "issue": "label", "score": float(1.0 - 1.0 / (1.0 + zs[k] / z)),
            "suggested": f"{pred[k]:g}", "detail": f"{zs[k]:.1f} robust deviations from the prediction",
        })  # fmt: skip
    return rows


def _outlier_rows(preds: Predictions, ok: np.ndarray) -> list[dict[str, Any]]:
    """Items far from their 5 nearest neighbours in embedding space, past Tukey's far fence (at most 1%);
    neighbours are searched among the items one fold model embedded (each model has its own space)."""
    rows: list[dict[str, Any]] = []
    for f in np.unique(preds.fold[ok]):
        members = ok[preds.fold[ok] == f]
        if len(members) <= 20:
            continue
        scores = knn_outlier_scores(preds.embeddings, members)
        fence = tukey_far(scores)
        rank = scores.argsort().argsort() / max(1, len(scores) - 1)
        far = np.flatnonzero(scores > fence)
        far = far[np.argsort(-scores[far])][: max(1, len(members) // 100)]  # at most 1%: the farthest
        for k in far:
            rows.append({
                "index": int(members[k]), "issue": "outlier", "score": float(rank[k]),
                "detail": f"far from every other item (mean distance to 5 nearest {scores[k]:.3f}, "
                          f"fence {fence:.3f})",
            })  # fmt: skip
    return rows


def _duplicate_rows(
    preds: Predictions | None,
    checks: Sequence[FileCheck | None],
    ok: np.ndarray,
    names: Sequence[str],
    valid: Sequence[int],
    n: int,
    near: bool = True,
) -> list[dict[str, Any]]:
    in_valid = np.zeros(n, dtype=bool)
    in_valid[np.asarray(list(valid), dtype=np.int64)] = True
    # broken files are reported as such, not as copies of one another (two empty files share a hash)
    keys: list[str | None] = [c.sha256 if c is not None and c.error is None else None for c in checks]
    if preds is not None and all(k is None for k in keys):  # not files: the model's input itself
        keys = [None] * n
        for i in ok:
            keys[i] = preds.fingerprints[i].tobytes().hex()
    rows: list[dict[str, Any]] = []
    same: set[tuple[int, int]] = set()
    for g in exact_groups(keys):
        for c in g.copies:
            same.add((g.keep, c))
            rows.append(_dup_row(g.keep, c, 1.0, True, names, in_valid))
    if preds is not None and near:
        seen = {c for _, c in same}
        for i, j, s in near_pairs(preds.fingerprints, preds.embeddings, ok, fold=preds.fold):
            if (i, j) in same or j in seen:
                continue
            seen.add(j)
            rows.append(_dup_row(i, j, s, False, names, in_valid))
    return rows


def _dup_row(
    keep: int, copy: int, sim: float, exact: bool, names: Sequence[str], in_valid: np.ndarray
) -> dict[str, Any]:
    leak = bool(in_valid[keep]) != bool(in_valid[copy])
    flagged, other = (copy, keep) if not leak or in_valid[copy] else (keep, copy)
    what = "same bytes as" if exact else f"near copy (similarity {sim:.3f}) of"
    detail = f"{what} {names[other]}" + (" - across the train/valid split: leakage" if leak else "")
    issue = "leak" if leak else ("duplicate" if exact else "near_duplicate")
    return {"index": flagged, "issue": issue, "score": float(sim), "detail": detail, "related": names[other]}


def _table(
    rows: list[dict[str, Any]], names: Sequence[str], labels: Sequence[str], valid: Sequence[int]
) -> pd.DataFrame:
    vset = set(int(v) for v in valid)
    recs = []
    for r in rows:
        i = int(r["index"])
        recs.append({
            "item": names[i], "issue": r["issue"], "score": round(float(r["score"]), 6), "label": labels[i],
            "suggested": r.get("suggested", ""), "detail": r.get("detail", ""),
            "related": r.get("related", ""), "index": i,
            "split": "valid" if i in vset else "train",
        })  # fmt: skip
    df = pd.DataFrame.from_records(recs, columns=COLUMNS)
    return df.sort_values(["score", "index"], ascending=[False, True], kind="stable").reset_index(drop=True)
