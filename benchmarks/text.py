"""Text suite: lamina's text application on all-MiniLM-L6-v2 (shipped offline), side by side in one run.

- `quality`: the Women's Clothing reviews (`lamina.data.samples.womens_clothing_reviews()`), positive
  (rating >= 4) against negative (<= 2), reviews without text dropped, 3,000 rows drawn with seed 42: the
  first 2,000 train, the other 1,000 are the test set. `lamina` is the four-line path
  (`TextDataLoaders.from_df` + `text_classifier_learner` + `fine_tune(1)`); `frozen+logreg` is the usual
  baseline, MiniLM's mean-pooled embeddings (no training) and scikit-learn's LogisticRegression. Both are
  scored by ROC AUC on the same 1,000 test rows (`auc`); the value is the wall time.
- `speed`: training tokens per second (real tokens, padding not counted) on the same model, the same
  padded batches (lamina's length-bucketed training batches, made once) and the same AdamW: `plain` is a
  plain PyTorch loop, `lamina` is `Learner.fit(1)` with its default callbacks, `hf-trainer` is Hugging
  Face's `Trainer` (optional) over a torch DataLoader that hands it those batches.
- `padding`: the share of pad tokens in one training epoch, with length buckets (`bucketed`) and without
  (`unbucketed`: the same loader with equal sizes, i.e. plain shuffling).

On the CPU this suite uses every core (the other suites default to 1 thread): on 2 cores it takes about
10 minutes (estimated; not yet timed on an idle machine); `--quick` shrinks everything to a smoke test.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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
    sync,
)

__all__ = ["TextConfig", "reviews_split", "run_suite"]


@dataclass(frozen=True)
class TextConfig:
    n_train: int = 2000
    n_test: int = 1000
    seed: int = 42
    bs: int = 16
    max_len: int = 128  # reviews: at most ~150 tokens; MiniLM was trained on 128
    epochs: int = 1
    base_lr: float = 2e-3  # fine_tune's default
    speed_batches: int = 8
    speed_lr: float = 1e-4


def reviews_split(n_train: int, n_test: int, seed: int) -> Any:
    """The benchmark's rows: positive vs negative reviews with text, `n_train + n_test` drawn with `seed`;
    column `is_valid` marks the last `n_test`."""
    import pandas as pd

    from lamina.data import samples

    df = pd.read_parquet(samples.womens_clothing_reviews())
    df = df.dropna(subset=["Review Text"])
    df = df[(df.Rating >= 4) | (df.Rating <= 2)]
    df = df.sample(n_train + n_test, random_state=seed).reset_index(drop=True)
    df["label"] = np.where(df.Rating >= 4, "pos", "neg")
    df["is_valid"] = np.arange(len(df)) >= n_train
    return df


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _lamina_quality(df: Any, cfg: TextConfig, device: torch.device) -> Sample:
    from lamina.text import TextDataLoaders, text_classifier_learner
    from lamina.train import accuracy

    torch.manual_seed(cfg.seed)
    start = seconds()
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = TextDataLoaders.from_df(
            df,
            "Review Text",
            "label",
            valid_col="is_valid",
            seed=cfg.seed,
            bs=cfg.bs,
            max_len=cfg.max_len,
            device=device,
        )
        learn = text_classifier_learner(dls, metrics=accuracy)
        learn.fine_tune(cfg.epochs, base_lr=cfg.base_lr)
        preds, targs = learn.get_preds()
    secs = seconds() - start
    pos = dls.vocab.index("pos")
    auc = _auc((targs == pos).numpy(), preds[:, pos].numpy())
    log(f"  lamina fine_tune({cfg.epochs}): AUC {auc:.4f} in {secs:.0f} s")
    return Sample(secs, {"auc": auc})


def _frozen_logreg(df: Any, cfg: TextConfig, device: torch.device) -> Sample:
    """MiniLM's mean-pooled embeddings (no training) + logistic regression, on the same rows."""
    from sklearn.linear_model import LogisticRegression

    from lamina.core import TensorText
    from lamina.text import Tokenize, create_text_classifier
    from lamina.text.models import load_body_weights, read_config
    from lamina.text.tokenize import model_path

    start = seconds()
    folder = model_path()
    tok = Tokenize.from_pretrained(max_len=cfg.max_len)
    net = create_text_classifier(read_config(folder), 1)
    load_body_weights(net.body, folder, "MiniLM")
    body = net.body.to(device).eval()
    texts = df["Review Text"].tolist()
    ids = tok.encode_texts(texts)
    order = np.argsort([len(i) for i in ids])  # by length: little padding
    emb = np.zeros((len(texts), body.config.hidden_size), dtype=np.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            x = TensorText.collate([torch.from_numpy(ids[i]).long() for i in idx]).to(device)
            mask = x >= 0
            h = body(input_ids=x.clamp_min(0), attention_mask=mask.long()).last_hidden_state
            m = mask.unsqueeze(-1).float()
            emb[idx] = ((h * m).sum(1) / m.sum(1)).cpu().numpy()
    train, test = ~df["is_valid"].to_numpy(), df["is_valid"].to_numpy()
    y = (df["label"] == "pos").to_numpy()
    clf = LogisticRegression(max_iter=2000).fit(emb[train], y[train])
    auc = _auc(y[test], clf.predict_proba(emb[test])[:, 1])
    secs = seconds() - start
    log(f"  frozen embeddings + logistic regression: AUC {auc:.4f} in {secs:.0f} s")
    return Sample(secs, {"auc": auc})


def _quality(cfg: TextConfig, opts: Options) -> ConfigResult:
    df = reviews_split(cfg.n_train, cfg.n_test, cfg.seed)
    res = ConfigResult(
        "quality",
        unit="s",
        lower_is_better=True,
        baseline="frozen+logreg",
        params={**cfg.__dict__, "rows": len(df), "positives": int((df.label == "pos").sum())},
    )
    contenders = [
        Contender("frozen+logreg", lambda: _frozen_logreg(df, cfg, opts.torch_device)),
        Contender("lamina", lambda: _lamina_quality(df, cfg, opts.torch_device)),
    ]
    return interleave(res, contenders, reps=1, warmup=0)


# -- speed ---------------------------------------------------------------------------------------------------
def _batches(cfg: TextConfig, device: torch.device) -> tuple[Any, list[tuple[Tensor, Tensor]], float, float]:
    """lamina's training loader and its first `speed_batches` batches, plus the padding waste of one
    epoch with and without length buckets."""
    from lamina.text import TextDataLoaders, padding_waste

    df = reviews_split(cfg.n_train, cfg.n_test, cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = TextDataLoaders.from_df(
            df,
            "Review Text",
            "label",
            valid_col="is_valid",
            seed=cfg.seed,
            bs=cfg.bs,
            max_len=cfg.max_len,
            device=device,
        )
    batches = [b for _, b in zip(range(cfg.speed_batches), dls.train, strict=False)]
    bucketed = padding_waste(dls.train)
    unbucketed = padding_waste(dls.train.new(sizes=[1] * len(dls.train.dataset)))
    return dls, batches, bucketed, unbucketed


def _tokens(batches: list[tuple[Tensor, Tensor]]) -> int:
    return int(sum(int((x >= 0).sum()) for x, _ in batches))


class _Speed:
    """The three ways of training the same model on the same batches; each keeps its own copy."""

    def __init__(
        self, dls: Any, batches: list[tuple[Tensor, Tensor]], cfg: TextConfig, device: torch.device
    ) -> None:
        from lamina.text import text_classifier_learner

        self.batches, self.cfg, self.device = batches, cfg, device
        self.tokens = _tokens(batches)
        with quiet():
            learn = text_classifier_learner(dls)
        learn.unfreeze()
        self.base = learn.model.to(device)
        self.dls = dls

    def plain(self) -> Sample:
        model = copy.deepcopy(self.base).train()
        opt = torch.optim.AdamW(model.parameters(), lr=self.cfg.speed_lr, weight_decay=0.01)
        sync(self.device)
        start = seconds()
        for x, y in self.batches:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(self.device)
        return Sample(self.tokens / (seconds() - start))

    def lamina(self) -> Sample:
        from benchmarks.overhead import DeviceBatches
        from lamina.data import DataLoaders
        from lamina.train import Learner

        model = copy.deepcopy(self.base)
        dls = DataLoaders(
            DeviceBatches(self.batches, self.device),
            DeviceBatches([], self.device),
            loss_func=self.dls.loss_factory,
        )
        learn = Learner(
            dls, model, opt_func=torch.optim.AdamW, lr=self.cfg.speed_lr, wd=0.01, wd_bn_bias=True
        )
        sync(self.device)
        start = seconds()
        with quiet():
            learn.fit(1)
        sync(self.device)
        return Sample(self.tokens / (seconds() - start))

    def hf_trainer(self) -> Sample:
        transformers = optional_import("transformers")
        if transformers is None or optional_import("accelerate") is None:
            raise RuntimeError("transformers' Trainer needs accelerate")
        model = copy.deepcopy(self.base)
        batches = [{"input_ids": x, "labels": y} for x, y in self.batches]

        class Wrapped(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Tensor, labels: Tensor) -> dict[str, Tensor]:
                logits = self.inner(input_ids)
                return {"loss": F.cross_entropy(logits, labels), "logits": logits}

        class Batches(torch.utils.data.Dataset[dict[str, Tensor]]):
            def __len__(self) -> int:
                return len(batches)

            def __getitem__(self, i: int) -> dict[str, Tensor]:
                return batches[i]

        loader = torch.utils.data.DataLoader(Batches(), batch_size=None, shuffle=False)

        class BatchTrainer(transformers.Trainer):  # type: ignore[misc, name-defined]
            def get_train_dataloader(self) -> Any:
                return loader

        with tempfile.TemporaryDirectory() as out:
            args = transformers.TrainingArguments(
                output_dir=out,
                num_train_epochs=1,
                learning_rate=self.cfg.speed_lr,
                weight_decay=0.01,
                lr_scheduler_type="constant",
                optim="adamw_torch",  # the plain loop's and lamina's optimizer (its default is the fused one)
                report_to=[],
                disable_tqdm=True,
                save_strategy="no",
                logging_strategy="no",
                use_cpu=self.device.type == "cpu",
                dataloader_pin_memory=False,
                remove_unused_columns=False,
                per_device_train_batch_size=self.cfg.bs,
            )
            trainer = BatchTrainer(model=Wrapped(model), args=args, train_dataset=Batches())
            sync(self.device)
            start = seconds()
            with quiet():
                trainer.train()
            sync(self.device)
        return Sample(self.tokens / (seconds() - start))


def _speed(cfg: TextConfig, opts: Options, suite: SuiteResult) -> list[ConfigResult]:
    device = opts.torch_device
    dls, batches, bucketed, unbucketed = _batches(cfg, device)
    pad = ConfigResult(
        "padding", unit="% pad", lower_is_better=True, baseline="unbucketed", params={"bs": cfg.bs}
    )
    pad.values = {"unbucketed": [100 * unbucketed], "bucketed": [100 * bucketed]}
    log(f"  padding waste of an epoch: {100 * bucketed:.1f}% bucketed, {100 * unbucketed:.1f}% without")
    speed = _Speed(dls, batches, cfg, device)
    res = ConfigResult(
        "speed",
        unit="tok/s",
        lower_is_better=False,
        baseline="plain",
        params={"batches": len(batches), "tokens": speed.tokens, "bs": cfg.bs, "device": str(device)},
    )
    contenders = [
        Contender("plain", speed.plain),
        Contender("lamina", speed.lamina),
        Contender("hf-trainer", speed.hf_trainer, optional=True),
    ]
    interleave(res, contenders, reps=opts.n_reps(3, 1), warmup=1)
    return [res, pad]


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("text")
    cfg = TextConfig(n_train=64, n_test=64, speed_batches=2, bs=16) if opts.quick else TextConfig()
    threads = torch.get_num_threads()
    if opts.device == "cpu":
        torch.set_num_threads(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
    try:
        log(f"text: quality ({cfg.n_train} train / {cfg.n_test} test), {torch.get_num_threads()} threads")
        suite.configs.append(_quality(cfg, opts))
        log("text: speed")
        suite.configs.extend(_speed(cfg, opts, suite))
    finally:
        torch.set_num_threads(threads)
    q = suite.configs[0].summary()
    if "lamina" in q and "frozen+logreg" in q:
        suite.note(
            f"ROC AUC on the {cfg.n_test} test reviews: lamina fine_tune({cfg.epochs}) "
            f"{q['lamina']['auc']:.4f}, "
            f"frozen MiniLM embeddings + logistic regression {q['frozen+logreg']['auc']:.4f}"
        )
    return suite
