"""Learner: joins data, model, loss and optimizer, and runs the training loop through callbacks.

>>> learn = Learner(dls, model, metrics=accuracy)    # loss and output size read from the data
>>> learn.fit_one_cycle(3, 3e-3)                     # doctest: +SKIP
>>> label, idx, probs = learn.predict("digit.png")   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lamina.data import CrossEntropyLossFlat, DataLoader, DataLoaders
from lamina.train.callback import (
    CANCEL_EVENTS,
    EVENTS,
    Callback,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValid,
)
from lamina.train.distributed import LOCAL_RUN, Run, env_world_size, unwrap_model
from lamina.train.metrics import Metric, as_metric
from lamina.train.optim import (
    LrLike,
    OptFactory,
    adamw,
    default_splitter,
    make_optimizer,
    norm_and_bias_params,
    spread_lr,
)
from lamina.train.validation import ValidationTally

if TYPE_CHECKING:
    from accelerate import Accelerator
    from matplotlib.figure import Figure
    from pandas import DataFrame

    from lamina.train.distributed import DistributedRun
    from lamina.train.summary import LearnerSummary

__all__ = ["Learner"]

_BN = nn.modules.batchnorm._BatchNorm
Splitter = Callable[[nn.Module], Sequence[Sequence[nn.Parameter]]]
MetricLike = Metric | Callable[[Tensor, Tensor], Tensor] | Any
AnyLoader = DataLoader | Iterable[tuple[Tensor, ...]]

# events of one batch: only these honour a callback's run_train / run_valid
_BATCH_EVENTS = frozenset(
    {
        "before_batch",
        "after_pred",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_step",
        "after_step",
        "after_batch",
        "after_cancel_batch",
        "after_cancel_step",
    }
)
_ALL_EVENTS = frozenset(EVENTS) | frozenset(CANCEL_EVENTS)


def _refuse_single_class(dls: DataLoaders, loss_func: Callable[..., Tensor]) -> None:
    """A classifier over one class cannot learn anything (loss 0, accuracy 1): say so before training."""
    if getattr(dls, "c", None) == 1 and isinstance(loss_func, CrossEntropyLossFlat | nn.CrossEntropyLoss):
        vocab = getattr(getattr(dls, "target_tfm", None), "vocab", None)
        raise ValueError(
            f"Learner: the data has a single class {vocab or ''}; a classifier needs at least two "
            "(with one, the loss is always 0 and accuracy always 1).\n"
            "help: check get_y and the splitter (a class may have gone to validation only), or list the "
            "classes with CategoryBlock(vocab=[...])"
        )


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, list | tuple):
        return list(x)
    return [x]


class _Picked(Sequence[Any]):
    """Some items of a dataset, by position (the items `show_results` draws)."""

    def __init__(self, dataset: Sequence[Any], idxs: Sequence[int]) -> None:
        self.dataset, self.idxs = dataset, list(idxs)

    def __len__(self) -> int:
        return len(self.idxs)

    def __getitem__(self, i: Any) -> Any:
        return self.dataset[self.idxs[i]]

    def describe(self, i: int) -> str:
        describe = getattr(self.dataset, "describe", None)
        return describe(self.idxs[i]) if callable(describe) else f"item {self.idxs[i]}"


class Learner:
    """Trains `model` on `dls`; every extension of the loop is a callback.

    `loss_func` defaults to the loss the data's target block brings. `splitter` cuts the model into
    parameter groups (for `freeze` and `lr=slice(lo, hi)`). `wd` is decoupled weight decay; with
    `wd_bn_bias=False` normalization layers and biases get none.
    """

    def __init__(
        self,
        dls: DataLoaders,
        model: nn.Module,
        loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
        opt_func: OptFactory = adamw,
        lr: float = 1e-3,
        wd: float = 0.01,
        wd_bn_bias: bool = False,
        train_bn: bool = True,
        metrics: MetricLike | Sequence[MetricLike] = (),
        cbs: Callback | Sequence[Callback] = (),
        splitter: Splitter = default_splitter,
        path: str | Path = ".",
        model_dir: str | Path = "models",
        default_cbs: bool = True,
    ) -> None:
        self.dls = dls
        self.model: nn.Module = model.to(dls.device)
        if loss_func is None:
            loss_func = dls.loss_func
            if loss_func is None:
                raise ValueError(
                    "Learner: no loss_func given and the data does not bring one.\n"
                    "help: pass loss_func=..., e.g. torch.nn.CrossEntropyLoss()"
                )
        self.loss_func = loss_func
        _refuse_single_class(dls, loss_func)
        self.opt_func, self.lr, self.wd = opt_func, lr, wd
        self.wd_bn_bias, self.train_bn = wd_bn_bias, train_bn
        self.splitter = splitter
        self.metrics: list[Metric] = [as_metric(m) for m in _as_list(metrics)]
        # the last validation's results by name ({"valid_loss": ..., "accuracy": ...}); {} without targets
        self.last_metrics: dict[str, float] = {}
        self._tally: ValidationTally | None = None
        self.path, self.model_dir = Path(path), Path(model_dir)
        self.opt: torch.optim.Optimizer | None = None
        # loop state, read and written by callbacks
        self.epoch, self.n_epoch, self.start_epoch, self.iter, self.n_iter = 0, 1, 0, 0, 0
        self.start_iter = 0  # the first training phase of a fit starts at this batch (a mid-epoch resume)
        self.train_iter, self.pct_train, self.training = 0, 0.0, False
        self.dl: AnyLoader = dls.train
        self.xb: tuple[Tensor, ...] = ()
        self.yb: tuple[Tensor, ...] = ()
        self.pred: Any = None
        self.loss: Tensor = torch.zeros(())
        # the training step's contract with callbacks: each sets what it owns, none needs another's order
        self.autocast: contextlib.AbstractContextManager[Any] | None = None  # around forward + loss
        self.grad_scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling for backward and step
        self.loss_weight = 1.0  # backward runs on loss * loss_weight (gradient accumulation); per batch
        self.step_now = True  # False skips this batch's optimizer step (accumulation); per batch
        self._unscaled = False
        self.cbs: list[Callback] = []
        self._events: dict[str, list[tuple[Callback, Callable[[], None], bool]]] = {}
        self._dist: DistributedRun | None = None
        if default_cbs:
            from lamina.train.callbacks.progress import ProgressCallback
            from lamina.train.callbacks.recorder import Recorder

            self.add_cbs([Recorder(), ProgressCallback()])
        self.add_cbs(_as_list(cbs))

    # -- callbacks -------------------------------------------------------------------------------------------
    def add_cb(self, cb: Callback | type[Callback]) -> Learner:
        """Add a callback (a class is instantiated); callbacks run in increasing `order`, then as added."""
        if isinstance(cb, type):
            cb = cb()
        cb.learn = self
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: c.order)
        self._index_events()
        return self

    def add_cbs(self, cbs: Sequence[Callback | type[Callback]]) -> Learner:
        for cb in cbs:
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type[Callback]) -> Learner:
        """Remove a callback, or every callback of a class."""
        if isinstance(cb, type):
            self.cbs = [c for c in self.cbs if not isinstance(c, cb)]
        else:
            self.cbs = [c for c in self.cbs if c is not cb]
        self._index_events()
        return self

    def remove_cbs(self, cbs: Sequence[Callback | type[Callback]]) -> Learner:
        for cb in cbs:
            self.remove_cb(cb)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Sequence[Callback] | None) -> Iterator[None]:
        """Callbacks for the duration of one call (`fit(..., cbs=...)`)."""
        extra = _as_list(cbs)
        self.add_cbs(extra)
        try:
            yield
        finally:
            self.remove_cbs(extra)

    def get_cb(self, cls: type[Callback]) -> Any:
        """The first callback of class `cls`, or None."""
        return next((c for c in self.cbs if isinstance(c, cls)), None)

    @property
    def recorder(self) -> Any:
        from lamina.train.callbacks.recorder import Recorder

        return self.get_cb(Recorder)

    def _index_events(self) -> None:
        # per event, only the callbacks that define it: nothing is called for events a callback ignores
        self._events = {}
        for cb in self.cbs:
            for ev in dir(type(cb)):
                if ev in _ALL_EVENTS and callable(getattr(type(cb), ev, None)):
                    self._events.setdefault(ev, []).append((cb, getattr(cb, ev), ev in _BATCH_EVENTS))

    def __call__(self, event: str) -> None:
        """Fire `event` on the callbacks that define it; batch events honour `run_train` / `run_valid`."""
        for cb, f, per_batch in self._events.get(event, ()):
            if not per_batch or (cb.run_train if self.training else cb.run_valid):
                f()

    def _with_events(self, f: Callable[[], None], name: str, cancel: type[Exception]) -> None:
        try:
            self(f"before_{name}")
            f()
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    # -- optimizer and parameter groups ----------------------------------------------------------------------
    def param_groups(self) -> list[list[nn.Parameter]]:
        """The splitter's groups of the (unwrapped) model, body first, head last."""
        return [list(g) for g in self.splitter(unwrap_model(self.model))]

    def create_opt(self) -> torch.optim.Optimizer:
        """A fresh optimizer over the splitter's groups, all at `self.lr` (also `self.opt`)."""
        groups = self.param_groups()
        model = unwrap_model(self.model)
        no_decay = set() if self.wd_bn_bias else norm_and_bias_params(model)
        self.opt = make_optimizer(self.opt_func, groups, no_decay, [self.lr] * len(groups), self.wd)
        # a group takes weight decay when its parameters may: also when wd is 0 now and set later
        for g in self.opt.param_groups:
            g["lamina_wd"] = not any(id(p) in no_decay for p in g["params"])
        return self.opt

    @property
    def n_groups(self) -> int:
        return 1 + max(int(g["lamina_group"]) for g in self.ensure_opt().param_groups)

    def ensure_opt(self) -> torch.optim.Optimizer:
        """`self.opt`, created first (`create_opt`) when there is none yet; `fit` creates it anyway."""
        return self.opt if self.opt is not None else self.create_opt()

    def set_hyper(self, name: str, values: Sequence[Any]) -> None:
        """Set a hyper-parameter (lr, mom, weight_decay, or any key of the torch groups) per model group."""
        for g in self.ensure_opt().param_groups:
            v = values[int(g["lamina_group"])]
            if name == "weight_decay" and not g["lamina_wd"]:
                continue
            if name == "mom":
                if "betas" in g:
                    g["betas"] = (v, g["betas"][1])
                elif "momentum" in g:
                    g["momentum"] = v
                continue
            g[name] = v

    def set_lr(self, lr: LrLike) -> None:
        self.set_hyper("lr", spread_lr(lr, self.n_groups))

    def freeze_to(self, n: int) -> None:
        """Train only the groups from `n` on (negative counts from the end); norm layers stay trainable
        when `train_bn` (they adapt the frozen body to the new data at almost no cost)."""
        groups = self.param_groups()
        n = n % len(groups) if n < 0 else min(n, len(groups))
        model = unwrap_model(self.model)
        bn_ids = (
            {id(p) for m in model.modules() if isinstance(m, _BN) for p in m.parameters(recurse=False)}
            if self.train_bn
            else set()
        )
        for i, g in enumerate(groups):
            for p in g:
                p.requires_grad_(i >= n or id(p) in bn_ids)
        self.create_opt()
        self.run.rewrap(self)  # DDP fixes the set of trainable parameters when it wraps the model

    def freeze(self) -> None:
        """Train only the last group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    # -- distributed -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def distributed(
        self, find_unused_parameters: bool = False, strategy: str = "ddp", mixed_precision: str = "no"
    ) -> Iterator[Learner]:
        """Data-parallel training across the processes of `accelerate launch` / `torchrun` (Accelerate + DDP,
        or `strategy="fsdp"`: parameters, gradients and optimizer state sharded with torch's FSDP2, with
        `mixed_precision="bf16"` computing in bfloat16 over float32 shards).

        Inside, `learn.model` is the DDP-wrapped model, each process gets its own shard of the training and
        validation sets (`bs` is per process), metrics and `get_preds` gather every process's items, and
        only the main process prints and writes files. In a single process it changes nothing. `fit`
        enters it by itself when the environment says WORLD_SIZE > 1; see `lamina.train.distributed`.

        >>> with learn.distributed():   # doctest: +SKIP
        ...     learn.fit_one_cycle(3, 1e-3)
        """
        if self._dist is not None:
            yield self
            return
        from lamina.train.distributed import DistributedRun, peer_lost

        run = DistributedRun.start(
            self,
            find_unused_parameters=find_unused_parameters,
            strategy=strategy,
            mixed_precision=mixed_precision,
        )
        self._dist = run
        failed = True
        try:
            yield self
            failed = False
        except RuntimeError as e:
            lost = peer_lost(e, run.rank, run.world)
            if lost is not None:
                raise lost from e
            raise
        finally:
            self._dist = None
            run.stop(self, failed=failed)

    @property
    def run(self) -> Run:
        """Where this process stands: the `DistributedRun` inside `learn.distributed()`, else a `LocalRun`
        that answers the same questions (rank, world, collectives) for one process."""
        return self._dist if self._dist is not None else LOCAL_RUN

    @property
    def accelerator(self) -> Accelerator | None:
        """The Accelerate `Accelerator` inside `learn.distributed()`, else None."""
        return self.run.accelerator

    @property
    def is_main_process(self) -> bool:
        """True in a single process, and in the process of rank 0 of a distributed run."""
        return self.run.is_main

    def no_sync(self) -> contextlib.AbstractContextManager[None]:
        """No gradient all-reduce (FSDP: reduce-scatter) for the backward passes inside (gradient
        accumulation's non-stepping batches); a no-op outside `learn.distributed()`."""
        if self._dist is None:
            return contextlib.nullcontext()
        return self._dist.no_sync(self.model)

    def n_batches(self, dl: AnyLoader) -> int:
        """Batches in one pass over `dl` in this process (a shard of it in a distributed run)."""
        n = self.run.n_batches(dl)
        return n if n is not None else len(dl)  # type: ignore[arg-type]

    # -- the loop --------------------------------------------------------------------------------------------
    def fit(
        self,
        n_epoch: int,
        lr: LrLike | None = None,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        start_epoch: int = 0,
    ) -> None:
        """Train for `n_epoch` epochs at a constant learning rate (schedules are callbacks).

        `start_epoch` skips the first epochs (a `ResumeCallback` sets it from its checkpoint).
        """
        if n_epoch < 1:
            raise ValueError(f"fit: n_epoch must be >= 1, got {n_epoch}.\nhelp: train for at least one epoch")
        if self._dist is None and env_world_size() > 1:
            with self.distributed():
                self.fit(n_epoch, lr=lr, wd=wd, cbs=cbs, reset_opt=reset_opt, start_epoch=start_epoch)
            return
        with self.added_cbs(cbs):
            if reset_opt or self.opt is None:
                self.create_opt()
            if lr is not None:
                self.set_lr(lr)
            if wd is not None:
                self.wd = wd
                self.set_hyper("weight_decay", [wd] * self.n_groups)
            self.n_epoch, self.start_epoch, self.start_iter = n_epoch, start_epoch, 0
            self.n_iter = self.n_batches(self.dls.train)
            self.train_iter = start_epoch * self.n_iter
            self.autocast, self.grad_scaler = None, None  # set again by the callbacks of this fit
            try:
                self._with_events(self._do_fit, "fit", CancelFit)
            finally:
                self._release_batch()

    def _release_batch(self) -> None:
        """Drop the last batch, predictions and loss when a loop ends, so none outlives it (nor its graph)."""
        self.xb, self.yb, self.pred, self.loss = (), (), None, torch.zeros(())

    def _do_fit(self) -> None:
        for epoch in range(self.start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpoch)

    def _do_epoch(self) -> None:
        self.dl = self.dls.train
        self.training = True
        self.model.train()
        self._with_events(self._do_train, "train", CancelTrain)
        self.run.sync_buffers(self.model)
        self._run_validate(self.dls.valid)

    def _run_validate(self, dl: AnyLoader) -> None:
        self.dl = dl
        self.training = False
        self.model.eval()
        with self.run.evaluating(self.model):  # FSDP: the parameters gathered once, for every batch
            self._with_events(self._do_validate, "validate", CancelValid)

    def _do_train(self) -> None:
        total = self.n_epoch * max(1, self.n_iter)
        start, self.start_iter = self.start_iter, 0  # the loader skips those batches itself
        for i, b in enumerate(self.dl, start=start):
            self.iter = i
            self.pct_train = self.train_iter / total
            self._one_batch(b)
            self.train_iter += 1

    def _do_validate(self) -> None:
        self.last_metrics, self._tally = {}, ValidationTally(self.metrics)
        with torch.no_grad():
            for i, b in enumerate(self.dl):
                self.iter = i
                self._one_batch(b)
        self.last_metrics = self._tally.results(self.run if self.run.is_sharded(self.dl) else None)
        self._tally = None

    def _one_batch(self, b: tuple[Tensor, ...]) -> None:
        n = self.dls.n_inp
        self.xb, self.yb = tuple(b[:n]), tuple(b[n:])
        self._with_events(self._do_one_batch, "batch", CancelBatch)

    def _do_one_batch(self) -> None:
        model = self.model
        if not self.training:
            # validation shards differ in length: forward without DDP, whose forward may communicate
            model = self.run.local_model(model)
        self.loss_weight, self.step_now, self._unscaled = 1.0, True, False
        with self.autocast if self.autocast is not None else contextlib.nullcontext():
            self.pred = model(*self.xb)
            self("after_pred")
            if not self.yb:
                return
            self.loss = self.loss_func(self.pred, *self.yb)
            self("after_loss")
        if not self.training:
            if self._tally is not None:
                self._tally.add(self.pred, self.yb, self.loss)
            return
        self("before_backward")
        self.backward()
        self("after_backward")
        if self.step_now:
            self._with_events(self._do_step, "step", CancelStep)

    def backward(self) -> None:
        """Backward of `loss * loss_weight`, through `grad_scaler` when one is set (fp16); `loss` itself
        stays the real loss, the one the Recorder logs."""
        loss = self.loss * self.loss_weight if self.loss_weight != 1.0 else self.loss
        (self.grad_scaler.scale(loss) if self.grad_scaler is not None else loss).backward()

    def unscale_grads(self) -> None:
        """Divide the gradients by the fp16 loss scale now (once per step; a no-op without a scaler), for
        callbacks that read or change gradients in before_step (clipping, norms)."""
        if self.grad_scaler is not None and not self._unscaled:
            self.grad_scaler.unscale_(self.ensure_opt())
            self._unscaled = True

    def _do_step(self) -> None:
        opt = self.ensure_opt()
        if self.grad_scaler is not None:
            self.grad_scaler.step(opt)  # unscales unless unscale_grads() did; skips inf/NaN gradients
            self.grad_scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    # -- schedules -------------------------------------------------------------------------------------------
    def fit_one_cycle(
        self,
        n_epoch: int,
        lr_max: LrLike | None = None,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        wd: float | None = None,
        moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95),
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
    ) -> None:
        """1cycle: learning rate warms up from lr_max/div to lr_max, then anneals to lr_max/div_final
        (cosine), with momentum moving the other way."""
        from lamina.train.callbacks.schedule import one_cycle_scheduler

        if self.opt is None or reset_opt:
            self.create_opt()
        lrs = spread_lr(self.lr if lr_max is None else lr_max, self.n_groups)
        sched = one_cycle_scheduler(lrs, div=div, div_final=div_final, pct_start=pct_start, moms=moms)
        self.fit(n_epoch, wd=wd, cbs=[sched, *_as_list(cbs)])

    def fit_flat_cos(
        self,
        n_epoch: int,
        lr: LrLike | None = None,
        div_final: float = 1e5,
        pct_start: float = 0.75,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> None:
        """Flat learning rate for `pct_start` of training, then cosine annealing to lr/div_final."""
        from lamina.train.callbacks.schedule import flat_cos_scheduler

        if self.opt is None:
            self.create_opt()
        lrs = spread_lr(self.lr if lr is None else lr, self.n_groups)
        sched = flat_cos_scheduler(lrs, div_final=div_final, pct_start=pct_start)
        self.fit(n_epoch, wd=wd, cbs=[sched, *_as_list(cbs)])

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100,
        pct_start: float = 0.3,
        div: float = 5.0,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> None:
        """Transfer learning: train the head with the body frozen, then everything with discriminative rates.

        `cbs` are added to both fits.
        """
        self.freeze()
        self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, wd=wd, cbs=cbs)
        base_lr /= 2
        self.unfreeze()
        self.fit_one_cycle(
            epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, wd=wd, cbs=cbs
        )

    # -- conveniences over callbacks -------------------------------------------------------------------------
    def to_bf16(self) -> Learner:
        """Train in bfloat16 autocast (no loss scaling needed)."""
        from lamina.train.callbacks.precision import MixedPrecision

        self.remove_cb(MixedPrecision)
        return self.add_cb(MixedPrecision(dtype="bf16"))

    def to_fp16(self) -> Learner:
        """Train in float16 autocast with dynamic loss scaling."""
        from lamina.train.callbacks.precision import MixedPrecision

        self.remove_cb(MixedPrecision)
        return self.add_cb(MixedPrecision(dtype="fp16"))

    def to_fp32(self) -> Learner:
        """Back to full precision."""
        from lamina.train.callbacks.precision import MixedPrecision

        return self.remove_cb(MixedPrecision)

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
        stop_div: bool = True,
    ) -> Any:
        """Train briefly with an exponentially growing learning rate, restore the weights, and return
        suggested learning rates (valley, steepest, minimum); `learn.recorder.plot_lr_find()` plots them."""
        from lamina.train.callbacks.lr_find import lr_find

        return lr_find(self, start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div)

    # -- evaluation and prediction ---------------------------------------------------------------------------
    def validate(self, dl: AnyLoader | None = None) -> dict[str, float]:
        """The loss and metrics on `dl` (the validation set by default), by name:
        `{"valid_loss": 0.12, "accuracy": 0.97}`; `{}` when `dl` has no targets. Needs no callback."""
        self.autocast = None  # a precision callback sets it again in before_validate
        try:
            self._run_validate(dl if dl is not None else self.dls.valid)
        finally:
            self._release_batch()
        return dict(self.last_metrics)

    def get_preds(
        self,
        dl: AnyLoader | None = None,
        with_input: bool = False,
        with_decoded: bool = False,
        with_loss: bool = False,
        act: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Any, ...]:
        """Predictions (after the loss's activation) and targets for every item of `dl`, in order, on the CPU.

        Returns `(inputs?, preds, targs, decoded?, losses?)`: inputs (a tuple, one tensor per model input)
        first when `with_input`, decoded predictions and per-item losses last when asked for. `targs` is
        None when `dl` has no targets. In a distributed run every process gets every item once.
        """
        from lamina.train.callbacks.gather import GatherPreds

        gather = GatherPreds(with_input=with_input, with_loss=with_loss)
        dl = dl if dl is not None else self.dls.valid
        self.autocast = None  # a precision callback sets it again in before_validate
        with self.added_cbs([gather]):
            try:
                self._run_validate(dl)
            finally:
                self._release_batch()
        preds, targs = gather.preds(), gather.targets()
        inputs = gather.inputs() if with_input else ()
        losses = gather.losses() if with_loss else None
        if self.run.is_sharded(dl):
            input_pads, target_pads = gather.pads()
            preds, targs, inputs, losses = self.run.gather_preds(
                preds, targs, inputs, losses, input_pads, target_pads
            )
        activation = act or getattr(self.loss_func, "activation", None)
        if activation is not None:
            preds = activation(preds)
        out: list[Any] = [preds, targs]
        if with_decoded:
            decodes = getattr(self.loss_func, "decodes", None)
            out.append(decodes(preds) if decodes is not None else preds)
        if with_loss:
            out.append(losses)
        if with_input:
            out.insert(0, inputs)
        return tuple(out)

    def predict(self, item: Any) -> tuple[Any, Tensor, Tensor]:
        """(decoded prediction, raw decoded tensor, probabilities) for one raw item (e.g. an image path)."""
        dl = self.dls.test_dl([item], bs=1, skip_getters=True)
        inp, preds, _, dec = self.get_preds(dl=dl, with_input=True, with_decoded=True)
        n = self.dls.n_inp
        decoded = self.dls.valid.decode_batch((*inp[:n], dec), max_n=1)[0]
        target = decoded[n] if len(decoded) > n else decoded[-1]
        return target, dec[0], preds[0]

    def show_results(
        self,
        max_n: int = 9,
        dl: DataLoader | None = None,
        figsize: tuple[float, float] | None = None,
        seed: int | None = 0,
    ) -> Figure | DataFrame:
        """A grid of `max_n` validation items drawn at random (the same for the same `seed`; None: the
        first items), each input with its target and (below) the prediction."""
        from lamina.data.loader import show_decoded, show_items

        dl = dl if dl is not None else self.dls.valid
        k = min(max_n, len(dl.dataset))
        if seed is None:
            idxs = list(range(k))
        else:  # a validation set is often sorted by class: the first batch would show one class
            idxs = sorted(
                torch.randperm(len(dl.dataset), generator=torch.Generator().manual_seed(seed))[:k].tolist()
            )
        dl = dl.new(
            dataset=_Picked(dl.dataset, idxs), bs=max(1, k), shuffle=False, drop_last=False, num_workers=0
        )
        b = dl.one_batch()
        n = self.dls.n_inp
        inp, _, targs, dec = self.get_preds(dl=[b], with_input=True, with_decoded=True)
        actual = dl.decode_batch((*inp[:n], targs), max_n=max_n)
        predicted = dl.decode_batch((*inp[:n], dec), max_n=max_n)
        if len(dl.batch_types) > n and getattr(dl.batch_types[n], "draws_over_input", False):
            # pictures as targets: target and prediction side by side, each drawn over its input
            pairs = [it for pair in zip(actual, predicted, strict=True) for it in pair]
            return show_items(pairs, ncols=2, titles=["target", "prediction"] * len(actual), figsize=figsize)
        titles = [f"pred: {p[n] if len(p) > n else p[-1]}" for p in predicted]
        return show_decoded(actual, titles=titles, figsize=figsize)

    def summary(self) -> LearnerSummary:
        """Print (and return) a table of the model's layers on one batch of the data: output shapes,
        parameters, trainable or frozen; totals, the optimizer, the loss and the callbacks."""
        from lamina.train.summary import summarize

        s = summarize(self)
        if self.is_main_process:
            print(s)
        return s

    def tta(
        self, dl: DataLoader | None = None, n: int = 4, beta: float = 0.25, use_max: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Test-time augmentation: (preds, targs) mixing the plain predictions (weight `beta`) with the mean
        over `n` passes with the training augmentations; see `lamina.train.tta`."""
        from lamina.train.tta import tta

        return tta(self, dl=dl, n=n, beta=beta, use_max=use_max)

    # -- persistence -----------------------------------------------------------------------------------------
    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Checkpoint the weights (and optimizer state) to `path/model_dir/name.safetensors`, atomically.

        In a distributed run only the main process writes (the others return the same path); under FSDP
        every process first gathers the full weights and optimizer state (same file as a single process).
        """
        from lamina.train.checkpoint import checkpoint_path, save_checkpoint

        with self.run.gathered(self, with_opt=with_opt) as opt_state:
            if not self.is_main_process:
                return checkpoint_path(self, name)
            return save_checkpoint(self, name, with_opt=with_opt, opt_state=opt_state)

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load a checkpoint written by `save` (under FSDP every process calls it: the full weights and
        optimizer state are spread over the shards)."""
        from lamina.train.checkpoint import load_checkpoint

        load_checkpoint(self, name, with_opt=with_opt, strict=strict)
        return self

    def export(self, path: str | Path = "export.lamina") -> Path:
        """Write a portable, pickle-free file (safetensors weights + a JSON recipe) for `load_learner`.

        In a distributed run only the main process writes; under FSDP every process first gathers the full
        weights, so the file is the one a single process would write.
        """
        from lamina.train.export import export_learner

        with self.run.gathered(self):
            if not self.is_main_process:
                return Path(path)
            return export_learner(self, path)

    def __repr__(self) -> str:
        return f"Learner(model={type(unwrap_model(self.model)).__name__}, cbs={self.cbs})"
