"""Overhead suite: the cost of the training loop itself, with the data already made and on the device.

Every contender trains the same model (same init), with the same optimizer (AdamW, lr 1e-3, weight decay
0.01 on every parameter, fused on CUDA), on the same list of pre-made batches:

- `plain`: forward, loss, backward, step, zero_grad(set_to_none=True);
- `lamina`: `Learner.fit` with its default callbacks (Recorder + ProgressCallback) over the same batches,
  handed over by a `lamina.data.DataLoader` subclass that yields them as they are (pure loop overhead);
- `plain:dl` / `lamina:dsets` (fp32): the per-item paths, a torch `DataLoader(TensorDataset)` in the
  plain loop against `DataLoaders.from_dsets` (what a user writes without a DataBlock), both shuffled,
  num_workers=0, collating CPU items per batch and moving them (pinned on CUDA); `lamina:dsets` also
  reports its ratio against `plain:dl` (`x_plain:dl`), its like-for-like reference;
- `lamina:tty` (cpu-mlp only): `lamina` with stdout a terminal, so the rich progress bar is live;
- `fastai` / `lightning` when importable, on the same batches (their default callbacks, no logger).

Configs `small` and `large` report training img/s over the steps after the warm-up steps; `cpu-mlp`
(always on the CPU) reports the wall time of a whole epoch (train + validation) with the default callbacks,
against a plain epoch that also sums its train and valid losses on the device and prints one row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from benchmarks._common import (
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
    optional_import,
    peak_memory_mb,
    quiet,
    reset_peak_memory,
    seconds,
    sync,
)
from lamina.data import DataLoader, DataLoaders
from lamina.train import Callback, Learner

__all__ = ["OverheadConfig", "Variant", "run_suite"]

Batch = tuple[Tensor, Tensor]
Mode = Literal["steady", "epoch"]
LR, WD = 1e-3, 0.01


@dataclass(frozen=True)
class OverheadConfig:
    """One model and batch size; `steady`: img/s after `n_warm` steps; `epoch`: seconds per epoch."""

    name: str
    arch: str  # "mlp", "tinycnn" or a torchvision model name
    size: int  # image side, or the MLP's input features
    bs: int
    n_warm: int
    n_steps: int
    n_valid: int = 0  # validation batches (of 2 * bs), epoch mode
    mode: Mode = "steady"
    force_cpu: bool = False
    n_classes: int = 10
    reps: int = 5  # recorded repetitions (3 with --quick)


@dataclass(frozen=True)
class Variant:
    """Precision, memory format and compilation applied alike to every contender."""

    name: str
    bf16: bool = False
    channels_last: bool = False
    # "auto": lamina's Compile(mode="auto") against the plain loop left eager (the choice it must beat)
    compile_mode: Literal["default", "reduce-overhead", "auto"] | None = None
    extra_warm: int = 0  # more untimed steps (auto: the trial of eager, default and reduce-overhead)


FP32 = Variant("fp32")
AUTO_TRIAL = (2, 5)  # warm-up and timed steps per mode of lamina's auto trial in this suite
CUDA_VARIANTS = (
    FP32,
    Variant("bf16-cl", bf16=True, channels_last=True),
    Variant("bf16-cl-compile", bf16=True, channels_last=True, compile_mode="default"),
    Variant("bf16-cl-compile-ro", bf16=True, channels_last=True, compile_mode="reduce-overhead"),
    Variant(
        "bf16-cl-auto", bf16=True, channels_last=True, compile_mode="auto", extra_warm=3 * sum(AUTO_TRIAL)
    ),
)


def configs(opts: Options) -> list[OverheadConfig]:
    """The configs to run: `small` and `cpu-mlp` by default; `large` on CUDA or when asked for."""
    cuda, q = opts.device == "cuda", opts.quick
    if cuda:
        small = OverheadConfig("small", "resnet18", 32, 512, n_warm=3 if q else 5, n_steps=10 if q else 30)
        large = OverheadConfig("large", "resnet50", 224, 128, n_warm=2 if q else 5, n_steps=5 if q else 20)
    else:
        # 2 CPU cores run resnet18 at batch 512 in ~10 s a step: the CPU small config is scaled down
        small = (
            OverheadConfig("small", "tinycnn", 32, 16, n_warm=1, n_steps=4)
            if q
            else OverheadConfig("small", "resnet18", 32, 64, n_warm=2, n_steps=6)
        )
        large = OverheadConfig("large", "resnet50", 224, 8 if q else 16, n_warm=1, n_steps=2 if q else 4)
    mlp = OverheadConfig(
        "cpu-mlp",
        "mlp",
        32,
        64,
        n_warm=0,
        n_steps=40 if q else 300,
        n_valid=10 if q else 40,
        mode="epoch",
        force_cpu=True,
        reps=15,
    )
    every = {c.name: c for c in (small, large, mlp)}
    names = opts.configs or (("small", "large", "cpu-mlp") if cuda else ("small", "cpu-mlp"))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"overhead: unknown config(s) {unknown}; choose from {sorted(every)}")
    return [every[n] for n in names]


def make_model(cfg: OverheadConfig, seed: int = 0) -> nn.Module:
    """The config's model, with the same initial weights every time."""
    torch.manual_seed(seed)
    if cfg.arch == "mlp":
        return nn.Sequential(
            nn.Linear(cfg.size, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, cfg.n_classes)
        )
    if cfg.arch == "tinycnn":  # --quick on the CPU: two conv-BN-ReLU blocks and a linear head
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, cfg.n_classes),
        )  # fmt: skip
    import torchvision

    factory: Callable[..., nn.Module] = getattr(torchvision.models, cfg.arch)
    return factory(num_classes=cfg.n_classes)


def _shape(cfg: OverheadConfig) -> tuple[int, ...]:
    return (cfg.size,) if cfg.arch == "mlp" else (3, cfg.size, cfg.size)


def make_data(
    cfg: OverheadConfig, n: int, bs: int, device: torch.device, v: Variant, seed: int
) -> tuple[Tensor, Tensor]:
    """`n` random items as one (x, y) pair of tensors on `device` (channels_last when the variant says so)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n * bs, *_shape(cfg), generator=g)
    y = torch.randint(0, cfg.n_classes, (n * bs,), generator=g)
    if v.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(device), y.to(device)


def as_batches(x: Tensor, y: Tensor, bs: int) -> list[Batch]:
    return list(zip(x.split(bs), y.split(bs), strict=True))


def _autocast(device: torch.device, v: Variant) -> contextlib.AbstractContextManager[Any]:
    if v.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _prepare(model: nn.Module, device: torch.device, v: Variant) -> nn.Module:
    model = model.to(device)
    if v.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _adamw(params: Any, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=LR, weight_decay=WD, fused=True if device.type == "cuda" else None)


# --------------------------------------------------------------------------------------------------------
# the contenders


class PlainLoop:
    """The baseline: the loop everyone writes; `transfer=True` moves each batch to the device (for loaders
    that yield CPU batches)."""

    def __init__(
        self,
        cfg: OverheadConfig,
        model: nn.Module,
        train: Iterable[Batch],
        valid: Iterable[Batch],
        device: torch.device,
        v: Variant,
        transfer: bool = False,
    ) -> None:
        self.cfg, self.device, self.v, self.train, self.valid = cfg, device, v, train, valid
        self.transfer = transfer
        self.model = _prepare(model, device, v)
        self.opt = _adamw(self.model.parameters(), device)
        compiled = v.compile_mode not in (None, "auto")  # auto: the plain loop stays eager
        self.step_model: Callable[[Tensor], Tensor] = (
            torch.compile(self.model, mode=v.compile_mode) if compiled else self.model
        )

    def steady(self) -> Sample:
        """img/s over the batches after the warm-up steps."""
        model, opt, n_warm, train = self.step_model, self.opt, self.cfg.n_warm, self.train
        reset_peak_memory(self.device)
        self.model.train()
        t0 = seconds()
        for i, (x, y) in enumerate(train):
            if i == n_warm:
                sync(self.device)
                t0 = seconds()
            if self.transfer:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with _autocast(self.device, self.v):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(self.device)
        return Sample(self.cfg.n_steps * self.cfg.bs / (seconds() - t0), peak_memory_mb(self.device))

    def epoch(self) -> Sample:
        """Seconds for one epoch: training, validation, the epoch's mean losses printed."""
        model, opt, train, valid = self.step_model, self.opt, self.train, self.valid
        t0 = seconds()
        self.model.train()
        tr_sum, tr_n = torch.zeros((), device=self.device), 0
        for x, y in train:
            if self.transfer:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with _autocast(self.device, self.v):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            tr_sum += loss.detach() * len(y)
            tr_n += len(y)
        self.model.eval()
        va_sum, va_n = torch.zeros((), device=self.device), 0
        with torch.no_grad():
            for x, y in valid:
                if self.transfer:
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                with _autocast(self.device, self.v):
                    loss = F.cross_entropy(model(x), y)
                va_sum += loss * len(y)
                va_n += len(y)
        with quiet():  # printed, like the Learner's row, into the same sink
            print(f"{float(tr_sum / tr_n):.6f}  {float(va_sum / max(1, va_n)):.6f}", flush=True)
        sync(self.device)
        return Sample(seconds() - t0)


class DeviceBatches(DataLoader):
    """A lamina DataLoader over batches already made and on the device: yields them as they are."""

    def __init__(self, batches: list[Batch], device: torch.device) -> None:
        super().__init__(batches, bs=1, num_workers=0, device=device, n_inp=1)
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _StepTimer(Callback):
    """Reads the clock when training batch `n_warm` starts and when the training phase ends."""

    order = -100  # before every other callback: the Recorder's epoch-end sync is timed, its setup not

    def __init__(self, n_warm: int, device: torch.device) -> None:
        self.n_warm, self.device = n_warm, device
        self.t0 = self.t1 = 0.0

    def before_batch(self) -> None:
        if self.learn.training and self.learn.iter == self.n_warm:
            sync(self.device)
            self.t0 = seconds()

    def after_train(self) -> None:
        sync(self.device)
        self.t1 = seconds()


def _lamina_variant(learn: Learner, v: Variant) -> str | None:
    """Apply the variant through lamina's own callbacks (MixedPrecision via `to_bf16`, ChannelsLast,
    Compile); a reason to skip the column when one of them is not importable."""
    if v.bf16:
        try:
            learn.to_bf16()
        except ImportError as e:
            return f"lamina.train.callbacks.precision (learn.to_bf16) not importable: {e}"
    if v.channels_last or v.compile_mode:
        try:
            from lamina.train.callbacks.hardware import ChannelsLast, Compile
        except ImportError as e:
            return f"lamina.train.callbacks.hardware not importable: {e}"
        if v.channels_last:
            learn.add_cb(ChannelsLast())
        if v.compile_mode == "auto":
            learn.add_cb(Compile(mode="auto", warmup_steps=AUTO_TRIAL[0], trial_steps=AUTO_TRIAL[1]))
        elif v.compile_mode:
            learn.add_cb(Compile(mode=v.compile_mode))
    return None


class LaminaLoop:
    """`Learner.fit(1)` with the default callbacks; `tty=True` makes the progress bar live."""

    def __init__(
        self,
        learn: Learner,
        cfg: OverheadConfig,
        device: torch.device,
        tty: bool = False,
        notes: list[str] | None = None,
    ) -> None:
        self.learn, self.cfg, self.device, self.tty = learn, cfg, device, tty
        self.notes = notes  # where to say what Compile(mode="auto") measured and chose
        self.timer = _StepTimer(cfg.n_warm, device)
        if cfg.mode == "steady":  # the epoch mode times the whole fit call: no extra callback
            learn.add_cb(self.timer)

    def steady(self) -> Sample:
        reset_peak_memory(self.device)
        with quiet(self.tty):
            self.learn.fit(1)
        n_img = (self.cfg.n_steps) * self.cfg.bs
        self._note_compile_choice()
        return Sample(n_img / (self.timer.t1 - self.timer.t0), peak_memory_mb(self.device))

    def _note_compile_choice(self) -> None:
        from lamina.train.callbacks.hardware import Compile

        for cb in self.learn.cbs:
            if self.notes is not None and isinstance(cb, Compile) and cb.mode == "auto":
                times = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in cb.step_times.items())
                note = f"lamina Compile(mode='auto') chose {cb.chosen} (per step: {times})"
                if note not in self.notes and cb.step_times:
                    self.notes.append(note)

    def epoch(self) -> Sample:
        t0 = seconds()
        with quiet(self.tty):
            self.learn.fit(1)
        sync(self.device)
        return Sample(seconds() - t0)


def _lamina_learner(dls: DataLoaders, model: nn.Module) -> Learner:
    # torch's AdamW with its defaults and weight decay on every parameter, as the plain loop
    return Learner(
        dls,
        model,
        loss_func=nn.CrossEntropyLoss(),
        opt_func=torch.optim.AdamW,
        lr=LR,
        wd=WD,
        wd_bn_bias=True,
    )


class FastaiLoop:
    """fastai's Learner on the same batches, with torch's AdamW through `OptimWrapper`."""

    def __init__(
        self,
        cfg: OverheadConfig,
        model: nn.Module,
        train: list[Batch],
        valid: list[Batch],
        device: torch.device,
        v: Variant,
    ) -> None:
        from fastai.callback.core import Callback as FCallback
        from fastai.data.core import DataLoaders as FDataLoaders
        from fastai.learner import Learner as FLearner
        from fastai.optimizer import OptimWrapper

        self.cfg, self.device = cfg, device
        fused = True if device.type == "cuda" else None
        opt_func = partial(OptimWrapper, opt=partial(torch.optim.AdamW, fused=fused))
        n_warm = cfg.n_warm

        class Timer(FCallback):
            order = -100

            def before_fit(self) -> None:
                self.t0 = self.t1 = 0.0

            def before_batch(self) -> None:
                if self.learn.training and self.learn.iter == n_warm:
                    sync(device)
                    self.t0 = seconds()

            def after_train(self) -> None:
                sync(device)
                self.t1 = seconds()

        self.timer = Timer()
        dls = FDataLoaders(train, valid)
        self.learn = FLearner(
            dls,
            _prepare(model, device, v),
            loss_func=nn.CrossEntropyLoss(),
            opt_func=opt_func,
            lr=LR,
            wd=WD,
            wd_bn_bias=True,
            cbs=[self.timer],
        )
        if v.bf16:
            import fastai.callback.fp16  # noqa: F401  (adds Learner.to_bf16)

            self.learn.to_bf16()

    def steady(self) -> Sample:
        reset_peak_memory(self.device)
        with quiet():
            self.learn.fit(1)
        return Sample(
            self.cfg.n_steps * self.cfg.bs / (self.timer.t1 - self.timer.t0), peak_memory_mb(self.device)
        )

    def epoch(self) -> Sample:
        t0 = seconds()
        with quiet():
            self.learn.fit(1)
        sync(self.device)
        return Sample(seconds() - t0)


class _Iterable:
    """The batches as one iterable (Lightning reads a list as a list of loaders)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LightningLoop:
    """A LightningModule around the same model; a fresh Trainer per repetition, timed by a callback.

    Lightning's per-fit set-up (Trainer, strategy, data checks) is outside the timed span in both modes.
    """

    def __init__(
        self,
        cfg: OverheadConfig,
        model: nn.Module,
        train: list[Batch],
        valid: list[Batch],
        device: torch.device,
        v: Variant,
    ) -> None:
        import lightning as L

        self.L, self.cfg, self.device, self.v = L, cfg, device, v
        self.train, self.valid = train, valid
        fused = True if device.type == "cuda" else None
        prepared = _prepare(model, device, v)

        class Module(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.model = prepared

            def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
                loss = F.cross_entropy(self.model(batch[0]), batch[1])
                self.log("train_loss", loss)
                return loss

            def validation_step(self, batch: Batch, batch_idx: int) -> None:
                self.log("valid_loss", F.cross_entropy(self.model(batch[0]), batch[1]))

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=WD, fused=fused)

        self.module = Module()
        n_warm, mode = cfg.n_warm, cfg.mode

        class Timer(L.Callback):
            t0 = t1 = 0.0

            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                if mode == "epoch":
                    sync(device)
                    self.t0 = seconds()

            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                if mode == "steady" and batch_idx == n_warm:
                    sync(device)
                    self.t0 = seconds()

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # after validation
                sync(device)
                self.t1 = seconds()

        self.timer = Timer()
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def _fit(self) -> None:
        trainer = self.L.Trainer(
            accelerator="gpu" if self.device.type == "cuda" else "cpu",
            devices=1,
            max_epochs=1,
            precision="bf16-mixed" if self.v.bf16 else "32-true",
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[self.timer],
        )
        with quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(
                self.module,
                train_dataloaders=_Iterable(self.train),
                val_dataloaders=_Iterable(self.valid) if self.valid else None,
            )

    def steady(self) -> Sample:
        reset_peak_memory(self.device)
        self._fit()
        return Sample(
            self.cfg.n_steps * self.cfg.bs / (self.timer.t1 - self.timer.t0), peak_memory_mb(self.device)
        )

    def epoch(self) -> Sample:
        self._fit()
        return Sample(self.timer.t1 - self.timer.t0)


# --------------------------------------------------------------------------------------------------------
# the suite


def _fresh_dynamo() -> None:
    """Forget earlier compilations and allow more: every ResNet instance (resnet18 and resnet50 share
    `ResNet.forward`) compiled by each contender and variant is a recompilation of the same code, and past
    dynamo's recompile limit (8) it would silently run eager."""
    import torch._dynamo

    torch._dynamo.reset()
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, int(getattr(torch._dynamo.config, name))))


def _contenders(
    cfg: OverheadConfig, v: Variant, device: torch.device, result: ConfigResult
) -> list[Contender]:
    n_train = cfg.n_warm + cfg.n_steps
    x, y = make_data(cfg, n_train, cfg.bs, device, v, seed=1)
    train = as_batches(x, y, cfg.bs)
    valid: list[Batch] = []
    xv = yv = None
    if cfg.n_valid:
        xv, yv = make_data(cfg, cfg.n_valid, 2 * cfg.bs, device, v, seed=2)
        valid = as_batches(xv, yv, 2 * cfg.bs)
    steady = cfg.mode == "steady"

    def pick(obj: Any) -> Callable[[], Sample]:
        return obj.steady if steady else obj.epoch

    out = [Contender("plain", pick(PlainLoop(cfg, make_model(cfg), train, valid, device, v)))]

    # the model goes in as it is made: lamina's ChannelsLast callback converts it (the batches are
    # channels_last for every contender already, so its per-batch conversion is a no-op)
    learn = _lamina_learner(
        DataLoaders(DeviceBatches(train, device), DeviceBatches(valid, device)), make_model(cfg).to(device)
    )
    why = _lamina_variant(learn, v)
    if why:
        result.notes.append(f"lamina skipped: {why}")
    else:
        out.append(
            Contender("lamina", pick(LaminaLoop(learn, cfg, device, notes=result.notes)), optional=v != FP32)
        )

    if v == FP32:
        # the per-item paths, plain (TensorDataset + torch DataLoader) and lamina (from_dsets): items on
        # the CPU, collated per batch and moved (pinned on CUDA: CUDA tensors cannot be pinned)
        cpu, cuda = torch.device("cpu"), device.type == "cuda"
        xc, yc = x.to(cpu), y.to(cpu)
        tdl = torch.utils.data.DataLoader
        t_train = tdl(TensorDataset(xc, yc), batch_size=cfg.bs, shuffle=True, drop_last=True, pin_memory=cuda)
        t_valid: Iterable[Batch] = []
        items = list(zip(xc, yc, strict=True))
        if xv is not None and yv is not None:
            xvc, yvc = xv.to(cpu), yv.to(cpu)
            t_valid = tdl(TensorDataset(xvc, yvc), batch_size=2 * cfg.bs, pin_memory=cuda)
            v_items = list(zip(xvc, yvc, strict=True))
        else:  # a lamina DataLoader refuses an empty dataset: one item, validated outside the timed span
            v_items = items[:1]
        plain_dl = PlainLoop(cfg, make_model(cfg), t_train, t_valid, device, v, transfer=True)
        out.append(Contender("plain:dl", pick(plain_dl)))
        result.refs["lamina:dsets"] = "plain:dl"
        dls = DataLoaders.from_dsets(items, v_items, bs=cfg.bs, num_workers=0, device=device)
        out.append(
            Contender("lamina:dsets", pick(LaminaLoop(_lamina_learner(dls, make_model(cfg)), cfg, device)))
        )
        if cfg.name == "cpu-mlp":
            tty_learn = _lamina_learner(
                DataLoaders(DeviceBatches(train, device), DeviceBatches(valid, device)), make_model(cfg)
            )
            out.append(
                Contender("lamina:tty", pick(LaminaLoop(tty_learn, cfg, device, tty=True)), optional=True)
            )

    if v.compile_mode is None:
        if optional_import("fastai.learner") is not None:
            out.append(
                Contender(
                    "fastai", pick(FastaiLoop(cfg, make_model(cfg), train, valid, device, v)), optional=True
                )
            )
        if optional_import("lightning") is not None:
            out.append(
                Contender(
                    "lightning",
                    pick(LightningLoop(cfg, make_model(cfg), train, valid, device, v)),
                    optional=True,
                )
            )
    return out


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("overhead")
    if optional_import("fastai.learner") is None:
        suite.note("fastai not installed: no fastai column (pip install -e '.[bench]')")
    if optional_import("lightning") is None:
        suite.note("lightning not installed: no Lightning column (pip install -e '.[bench]')")
    known = {v.name for v in CUDA_VARIANTS}
    unknown = [n for n in opts.variants if n not in known]
    if unknown:
        raise ValueError(f"overhead: unknown variant(s) {unknown}; choose from {sorted(known)}")
    dev = opts.torch_device
    for cfg in configs(opts):
        device = torch.device("cpu") if cfg.force_cpu else dev
        if device.type == "cuda" and not cfg.force_cpu:
            variants: tuple[Variant, ...] = CUDA_VARIANTS
        elif opts.all_variants and cfg.arch != "mlp":
            variants = CUDA_VARIANTS
        else:
            variants = (FP32,)
            if cfg.arch != "mlp" and device.type == "cpu":
                suite.note(
                    f"{cfg.name}: bf16 / channels_last / compile variants run on CUDA only "
                    "(--all-variants forces them)"
                )
        if opts.variants:
            variants = tuple(v for v in variants if v.name in opts.variants)
        base = cfg
        for v in variants:
            cfg = dataclasses.replace(base, n_warm=base.n_warm + v.extra_warm)
            if v.compile_mode:
                _fresh_dynamo()
            steady = cfg.mode == "steady"
            result = ConfigResult(
                name=f"{cfg.name}/{v.name}",
                unit="img/s" if steady else "s/epoch",
                lower_is_better=not steady,
                baseline="plain",
                params={
                    "arch": cfg.arch,
                    "size": cfg.size,
                    "bs": cfg.bs,
                    "warmup_steps": cfg.n_warm,
                    "timed_steps": cfg.n_steps,
                    "valid_batches": cfg.n_valid,
                    "valid_bs": 2 * cfg.bs,
                    "mode": cfg.mode,
                    "device": str(device),
                    "variant": v.name,
                    "optimizer": "AdamW lr=1e-3 wd=0.01",
                },
            )
            log(f"overhead {result.name} on {device}")
            reps = opts.n_reps(full=cfg.reps, quick=3)
            interleave(result, _contenders(cfg, v, device, result), reps=reps, warmup=1)
            suite.configs.append(result)
    return suite
