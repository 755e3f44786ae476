"""Clean suite: how well `lamina.clean` finds planted data errors, beside simpler rules and cleanlab.

Four configurations, in one run:

- `mnist-flip10-oof<k>`: the 5,000-digit MNIST sample with 10% of the labels flipped at random (seed 42) to
  another class; `lamina.clean.out_of_fold` trains k = 5 `test_resnet` models (4 epochs, lr 1e-2) and the
  flipped items are looked for with lamina's confident learning. Time = the whole out-of-fold training;
  side figures: precision, recall and F1 on the flipped items, out-of-fold accuracy, the estimated count.
- `labels-from-oof`: the same out-of-fold probabilities handed to three rules: `plain` flags every item the
  model predicts as another class (argmax != label, the baseline), `lamina` is `find_label_issues`,
  `cleanlab` is cleanlab 2.9's `find_label_issues` (defaults) when installed (`pip install
  'cleanlab>=2.9'`; AGPL-3.0, so only ever imported here).
- `duplicates-corrupt`: 1,000 digits in class folders with planted exact copies, near copies (resized to
  36 x 36 and re-encoded as JPEG, or shrunk to 20 x 20 PNG) and corrupt files (truncated, random bytes,
  empty). `plain` hashes every file (SHA-256) and tries to decode it with Pillow; `lamina` is `find_issues`
  with the duplicate and file checks (2 folds of an MLP give it embeddings). Side figures: the share of
  each planted kind found, and the duplicates it reports that were not planted.

- `adult-flip20-oof5`: UCI Adult (48,842 rows) with 20% of the income labels flipped at random (seed 42);
  5-fold out-of-fold probabilities from `lamina-tabular` (`tabular_learner` defaults, `fit_one_cycle(4,
  1e-2)` per fold) and from `hgb` (scikit-learn's HistGradientBoostingClassifier with its defaults, the model
  cleanlab's own Adult figure used: precision 0.71 / recall 0.77). Each set of probabilities goes through
  lamina's confident learning and cleanlab's `find_label_issues`; value = the out-of-fold time.

`--quick` uses 600 digits, 2 folds of one epoch and 300 digits for duplicates: it checks the plumbing, not
the figures. Run with `--threads 2` to use both cores of a 2-core machine (the suite default is 1).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from benchmarks._common import (
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
    optional_import,
    quiet,
    seconds,
)

__all__ = ["run_suite"]


@dataclass(frozen=True)
class CleanConfig:
    n_items: int | None = None  # None: all 5,000
    folds: int = 5
    epochs: int = 4
    lr: float = 1e-2
    arch: str = "test_resnet"
    noise: float = 0.1
    seed: int = 42
    dup_items: int = 1000


def _scores(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = float((flagged & truth).sum())
    p = tp / max(1.0, float(flagged.sum()))
    r = tp / max(1.0, float(truth.sum()))
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12), "flagged": float(flagged.sum())}


def _noisy_labels(cfg: CleanConfig) -> tuple[Path, list[Path], list[str], np.ndarray]:
    from lamina.data import get_image_files, parent_label
    from lamina.data.samples import mnist_sample

    root = mnist_sample()
    files = get_image_files(root)
    rng = np.random.default_rng(cfg.seed)
    if cfg.n_items is not None:
        files = [files[i] for i in sorted(rng.choice(len(files), cfg.n_items, replace=False))]
    labels = [str(parent_label(f)) for f in files]
    flipped = np.zeros(len(files), dtype=bool)
    flip = rng.choice(len(files), int(len(files) * cfg.noise), replace=False)
    for i in flip:
        labels[i] = str((int(labels[i]) + int(rng.integers(1, 10))) % 10)
        flipped[i] = True
    return root, files, labels, flipped


def _oof(
    cfg: CleanConfig, device: torch.device, result: ConfigResult
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from lamina.clean import find_label_issues, out_of_fold
    from lamina.vision import ImageDataLoaders, vision_learner

    root, files, labels, flipped = _noisy_labels(cfg)
    dls = ImageDataLoaders.from_lists(
        root, [f.relative_to(root) for f in files], labels, valid_pct=0.2, seed=cfg.seed, bs=64,
        num_workers=0, device=device,
    )  # fmt: skip
    got: dict[str, Any] = {}

    def run() -> Sample:
        start = seconds()

        def said(msg: str) -> None:  # each fold's time as it ends (the target is <= 300 s for all 5)
            log(f"clean: mnist {msg}, {seconds() - start:.0f} s so far")

        with quiet():
            preds = out_of_fold(dls, lambda d: vision_learner(d, cfg.arch, pretrained=False), folds=cfg.folds,
                                epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed, log=said)  # fmt: skip
        took = seconds() - start
        log(f"clean: mnist {cfg.folds} folds took {took:.0f} s (torch threads: {torch.get_num_threads()})")
        res = find_label_issues(preds.targets, preds.probs)
        true = preds.targets.copy()
        true[flipped] = [int(f.parent.name) for f, fl in zip(files, flipped, strict=True) if fl]
        got.update(probs=preds.probs, targets=preds.targets)
        extra = _scores(res.is_issue, flipped)
        extra.update(
            oof_accuracy=float((preds.probs.argmax(1) == true).mean()), estimated_wrong=float(res.n_wrong)
        )
        return Sample(took, extra)

    interleave(result, [Contender("lamina", run)], reps=1, warmup=0)
    return got["probs"], got["targets"], flipped


def _label_rules(probs: np.ndarray, targets: np.ndarray, flipped: np.ndarray) -> list[Contender]:
    from lamina.clean import find_label_issues

    def timed(rule: Callable[[], np.ndarray]) -> Callable[[], Sample]:
        def run() -> Sample:
            start = seconds()
            flagged = rule()
            return Sample(max(seconds() - start, 1e-9), _scores(flagged, flipped))

        return run

    out = [
        Contender("plain", timed(lambda: probs.argmax(1) != targets)),
        Contender("lamina", timed(lambda: find_label_issues(targets, probs).is_issue)),
    ]

    try:  # imported here, so that its import time is not counted
        from cleanlab.filter import find_label_issues as cl_find
    except ImportError:
        return out

    def cleanlab_rule() -> np.ndarray:
        return np.asarray(cl_find(targets, probs))

    out.append(Contender("cleanlab", timed(cleanlab_rule), optional=True))
    return out


@dataclass(frozen=True)
class Planted:
    root: Path
    exact: set[str]
    near: set[str]
    corrupt: set[str]


def _plant(cfg: CleanConfig, n: int, where: Path) -> Planted:
    """`n` digits copied into class folders under `where`, plus planted copies and corrupt files."""
    from PIL import Image

    from lamina.data import get_image_files
    from lamina.data.samples import mnist_sample

    root = where / "clean-dups"
    shutil.rmtree(root, ignore_errors=True)
    files = get_image_files(mnist_sample())
    rng = np.random.default_rng(cfg.seed)
    pick = [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]
    for f in pick:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, root / f.parent.name / f.name)
    k = max(3, n // 100)
    src = [pick[i] for i in rng.choice(len(pick), 3 * k, replace=False)]
    exact, near, corrupt = set(), set(), set()
    for j, f in enumerate(src[:k]):
        name = f"{f.parent.name}/copy{j}.png"
        shutil.copyfile(f, root / name)
        exact.add(name)
    for j, f in enumerate(src[k : 2 * k]):
        img = Image.open(f).convert("L")
        if j % 2:
            name = f"{f.parent.name}/near{j}.jpg"
            img.resize((36, 36), Image.BICUBIC).save(root / name, quality=90)
        else:
            name = f"{f.parent.name}/near{j}.png"
            img.resize((20, 20), Image.BICUBIC).save(root / name)
        near.add(name)
    for j, f in enumerate(src[2 * k :]):
        name = f"{f.parent.name}/bad{j}.png"
        data = f.read_bytes()
        kind = j % 3
        (root / name).write_bytes(
            data[: len(data) // 2] if kind == 0 else rng.bytes(300) if kind == 1 else b""
        )
        corrupt.add(name)
    return Planted(root, exact, near, corrupt)


def _found(p: Planted, pairs: list[tuple[str, str]], broken: set[str]) -> dict[str, float]:
    """Shares of each planted kind found (a copy counts when a reported pair holds it), and the reported
    pairs that hold no planted copy (mistakes)."""
    planted = p.exact | p.near
    in_pairs = {x for pair in pairs for x in pair}
    return {
        "exact_found": len(in_pairs & p.exact) / len(p.exact),
        "near_found": len(in_pairs & p.near) / len(p.near),
        "corrupt_found": len(broken & p.corrupt) / len(p.corrupt),
        "unplanted_pairs": float(sum(not (set(pair) & planted) for pair in pairs)),
    }


def _dup_contenders(p: Planted, cfg: CleanConfig, device: torch.device) -> list[Contender]:
    def plain() -> Sample:
        from PIL import Image

        start = seconds()
        seen: dict[str, str] = {}
        pairs: list[tuple[str, str]] = []
        broken: set[str] = set()
        for f in sorted(x for x in p.root.rglob("*") if x.is_file()):
            name = f.relative_to(p.root).as_posix()
            h = hashlib.sha256(f.read_bytes()).hexdigest()
            if h in seen:
                pairs.append((name, seen[h]))
            seen.setdefault(h, name)
            try:
                with Image.open(f) as im:
                    im.load()
            except Exception:
                broken.add(name)
        pairs = [pr for pr in pairs if not set(pr) & broken]  # empty files share a hash
        return Sample(seconds() - start, _found(p, pairs, broken))

    def lamina() -> Sample:
        from torch import nn

        from lamina.clean import find_issues
        from lamina.train import Learner
        from lamina.vision import ImageDataLoaders, Resize

        def mlp(d: Any) -> Learner:
            return Learner(
                d, nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 128), nn.ReLU(), nn.Linear(128, d.c))
            )

        start = seconds()
        dls = ImageDataLoaders.from_folder(p.root, valid_pct=0.2, seed=cfg.seed, bs=64, num_workers=0,
                                           item_tfms=[Resize(28)], device=device)  # fmt: skip
        with quiet():
            issues = find_issues(dls, mlp, folds=2, epochs=2, lr=3e-3, checks=("duplicate", "file"))
        t = issues.table
        rows = t[t["issue"].isin(["duplicate", "near_duplicate", "leak"])]
        pairs = list(zip(rows["item"], rows["related"], strict=True))  # a leak flags the validation side
        broken = set(t[t["issue"] == "broken"]["item"])
        return Sample(seconds() - start, _found(p, pairs, broken))

    return [Contender("plain", plain), Contender("lamina", lamina)]


def _adult_flips(quick: bool, seed: int = 42, noise: float = 0.2) -> tuple[Any, np.ndarray]:
    """Adult, shuffled, with `noise` of its income labels swapped (the frame and the flipped mask)."""
    import pandas as pd

    from lamina.data import samples

    df = pd.read_parquet(samples.adult_sample()).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if quick:
        df = df.head(4000)
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(df), dtype=bool)
    flipped[rng.choice(len(df), int(len(df) * noise), replace=False)] = True
    swap = {"<=50K": ">50K", ">50K": "<=50K"}
    df.loc[flipped, "income"] = df.loc[flipped, "income"].map(swap)
    return df, flipped


def _both_rules(probs: np.ndarray, targets: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """Precision / recall / F1 of lamina's confident learning and (when installed) cleanlab's on `probs`."""
    from lamina.clean import find_label_issues

    out = {f"lamina_{k}": v for k, v in _scores(find_label_issues(targets, probs).is_issue, flipped).items()}
    try:
        from cleanlab.filter import find_label_issues as cl_find
    except ImportError:
        return out
    flagged = np.asarray(cl_find(targets, probs))
    return out | {f"cleanlab_{k}": v for k, v in _scores(flagged, flipped).items()}


def _adult_contenders(quick: bool, folds: int, epochs: int) -> list[Contender]:
    df, flipped = _adult_flips(quick)
    n_valid = len(df) // 5

    def lamina_tabular() -> Sample:
        from lamina.clean import out_of_fold
        from lamina.data import DataLoaders
        from lamina.tabular import TabularDataLoaders, tabular_learner
        from lamina.train import Learner

        torch.manual_seed(0)
        # the last rows validate, so item i (training rows first) is row i of the frame
        dls = TabularDataLoaders.from_df(
            df, y_names="income", valid_idx=list(range(len(df) - n_valid, len(df))), seed=42, bs=256
        )
        start = seconds()

        def said(msg: str) -> None:
            log(f"clean: adult {msg}, {seconds() - start:.0f} s so far")

        def recipe(d: DataLoaders) -> Learner:  # out_of_fold hands back the loaders' own kind
            return tabular_learner(cast(TabularDataLoaders, d))

        with quiet():
            preds = out_of_fold(dls, recipe, folds=folds, epochs=epochs, lr=1e-2, seed=42, log=said)
        took = seconds() - start
        return Sample(took, _both_rules(preds.probs, preds.targets, flipped))

    def hgb() -> Sample:
        import pandas as pd
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        x = df.drop(columns="income")
        x = x.astype({c: "category" for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])})
        vocab = sorted(df["income"].unique())
        y = df["income"].map({v: i for i, v in enumerate(vocab)}).to_numpy()
        start = seconds()
        cv = StratifiedKFold(folds, shuffle=True, random_state=42)
        model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
        probs = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
        return Sample(seconds() - start, _both_rules(probs, y, flipped))

    return [Contender("hgb", hgb), Contender("lamina-tabular", lamina_tabular)]


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("clean")
    device = opts.torch_device
    cfg = CleanConfig(n_items=600, folds=2, epochs=1, dup_items=300) if opts.quick else CleanConfig()
    log(f"clean: {cfg.folds}-fold out-of-fold predictions on {cfg.n_items or 5000} digits, 10% flipped")
    oof = ConfigResult(
        f"mnist-flip10-oof{cfg.folds}", "s", lower_is_better=True, baseline="lamina",
        params={"items": cfg.n_items or 5000, "folds": cfg.folds, "epochs": cfg.epochs, "lr": cfg.lr,
                "arch": cfg.arch, "noise": cfg.noise, "seed": cfg.seed, "threads": torch.get_num_threads(),
                "targets": "precision >= 0.9, recall >= 0.9, <= 300 s on 2 CPU cores (full run)"},
    )  # fmt: skip
    probs, targets, flipped = _oof(cfg, device, oof)
    oof.notes.append("time = all folds' training and prediction; one contender (the rules compare below)")
    suite.configs.append(oof)

    rules = ConfigResult(
        "labels-from-oof", "s", lower_is_better=True, baseline="plain",
        params={"items": len(targets), "flipped": int(flipped.sum()),
                "plain": "flag argmax != given label",
                "cleanlab": "cleanlab.filter.find_label_issues defaults"},
    )  # fmt: skip
    contenders = _label_rules(probs, targets, flipped)
    interleave(rules, contenders, reps=opts.n_reps(full=5, quick=1), warmup=0)
    if "cleanlab" not in rules.values or not rules.values["cleanlab"]:
        suite.note("cleanlab not installed: no cleanlab column (pip install 'cleanlab>=2.9')")
    suite.configs.append(rules)

    planted = _plant(cfg, cfg.dup_items, opts.cache_dir)
    dups = ConfigResult(
        "duplicates-corrupt", "s", lower_is_better=True, baseline="plain",
        params={"items": cfg.dup_items, "exact": len(planted.exact), "near": len(planted.near),
                "corrupt": len(planted.corrupt), "near_kinds": "36x36 JPEG q90, 20x20 PNG"},
    )  # fmt: skip
    interleave(dups, _dup_contenders(planted, cfg, device), reps=1, warmup=0)
    dups.notes.append("lamina's time includes training 2 MLP folds (embeddings for near copies)")
    suite.configs.append(dups)

    if optional_import("sklearn") is None:
        suite.note("scikit-learn not installed: no adult-flip20 configuration")
        return suite
    adult = ConfigResult(
        f"adult-flip20-oof{cfg.folds}", "s", lower_is_better=True, baseline="hgb",
        params={"rows": 4000 if opts.quick else 48842, "noise": 0.2, "folds": cfg.folds, "epochs": cfg.epochs,
                "target": "lamina's precision / recall >= cleanlab's 0.71 / 0.77 on gradient boosting"},
    )  # fmt: skip
    interleave(adult, _adult_contenders(opts.quick, cfg.folds, cfg.epochs), reps=1, warmup=0)
    adult.notes.append("value: time of the out-of-fold predictions; extra: each rule on those probabilities")
    suite.configs.append(adult)
    return suite
