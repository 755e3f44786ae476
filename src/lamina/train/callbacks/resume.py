"""ResumeCallback: checkpoint the whole training state every epoch, and pick an interrupted `fit` up from it.

>>> learn.fit_one_cycle(10, 1e-3, cbs=ResumeCallback("run1"))   # doctest: +SKIP

Run the same line again after a crash, a Ctrl-C or a lost machine: it continues with the epoch after
the last one checkpointed and ends with the weights the uninterrupted run would have had. The
checkpoint (`learn.path/learn.model_dir/run1.safetensors`) holds the weights, the optimizer state, the
epoch and schedule position, the Recorder's history (and that of any callback with `resume_state()` /
`load_resume_state()`), the data loaders' epoch counters, and the random states of torch (CPU and CUDA),
Python's `random` and NumPy, one row per process. It is written atomically, so an interruption while
writing leaves the previous one intact; a `fit` that ends normally deletes it (`keep=True` keeps it).

Give the callback to the `fit` call it protects (`cbs=`), not to the Learner: another fit (`lr_find`,
`fine_tune`'s first phase) would otherwise try to resume from it.

`every_batches=N` also checkpoints every N training batches within an epoch (long epochs): a resumed fit
then replays that epoch from the next batch, without building the batches already trained. It needs a
seeded training loader (`seed=`), whose order and augmentation depend on the epoch alone, so it does not
depend on the loader's `num_workers` either (a restart may use another); gradients accumulated but not yet
stepped (`GradientAccumulation`) are saved with the rest. In a distributed run every process skips the
same batches of its own shard; resuming with another number of processes is refused (the shards and the
per-process random states are those of the run that wrote the file). Under FSDP every process gathers the
full weights and optimizer state to write (the file is the one a single process would write) and resuming
spreads them over the shards again.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lamina.data import DataLoader
from lamina.train.callback import Callback
from lamina.train.checkpoint import apply_checkpoint, checkpoint_path, read_checkpoint, save_checkpoint
from lamina.train.distributed import is_sharded_model, unwrap_model

__all__ = ["ResumeCallback"]


class ResumeCallback(Callback):
    """Saves everything needed to continue training every `every` epochs (and every `every_batches`
    training batches) to `fname`; when `fit` starts and that file exists (and `resume`), restores it and
    continues from where it was written.

    The file must come from a fit with the same number of epochs and batches per epoch; anything else is
    refused with an error rather than silently starting over.
    """

    order = 95  # after every callback has finished its epoch (Recorder, trackers), so their state is final

    def __init__(
        self,
        fname: str | Path = "resume",
        every: int = 1,
        resume: bool = True,
        keep: bool = False,
        every_batches: int | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(
                f"ResumeCallback: every must be >= 1 epoch, got {every}.\nhelp: every=1 saves each epoch"
            )
        if every_batches is not None and every_batches < 1:
            raise ValueError(
                f"ResumeCallback: every_batches must be >= 1 or None, got {every_batches}.\n"
                "help: e.g. every_batches=500 also saves every 500 training batches within an epoch"
            )
        self.fname, self.every, self.resume, self.keep = fname, every, resume, keep
        self.every_batches = every_batches
        self.resumed_from: int | None = None  # the epoch of the checkpoint resumed from
        self.resumed_at_batch = 0  # > 0: it was written after that many training batches of that epoch

    @property
    def path(self) -> Path:
        return checkpoint_path(self.learn, self.fname)

    def before_fit(self) -> None:
        self.resumed_from, self.resumed_at_batch = None, 0
        if self.every_batches is not None:
            self._check_mid_epoch_possible()
        if self.resume and self.path.exists():
            self._restore()

    def after_batch(self) -> None:
        learn = self.learn
        done = learn.iter + 1  # training batches of this epoch, this one included
        if self.every_batches and learn.training and done % self.every_batches == 0 and done < learn.n_iter:
            self._save(batches_done=done)

    def _check_mid_epoch_possible(self) -> None:
        learn = self.learn
        dl = learn.dls.train
        if not isinstance(dl, DataLoader) or dl.seed is None:
            raise ValueError(
                "ResumeCallback: every_batches needs a seeded training loader, so that an epoch can be "
                "replayed from its middle (same order, same augmentation).\n"
                "help: build the DataLoaders with seed=..., or save per epoch only (every_batches=None)"
            )

    def after_epoch(self) -> None:
        learn = self.learn
        if (learn.epoch + 1) % self.every == 0 or learn.epoch + 1 == learn.n_epoch:
            self._save()

    def after_fit(self) -> None:
        # the fit ended (or was stopped on purpose): nothing left to resume
        if not self.keep and self.learn.is_main_process and self.path.exists():
            self.path.unlink()

    # -- saving and restoring ------------------------------------------------------------------------------
    def _save(self, batches_done: int = 0) -> None:
        """A checkpoint at the end of an epoch, or after `batches_done` training batches of it."""
        learn = self.learn
        rng = _gather_rng(learn)  # a collective in a distributed run: every process takes part
        sharded = is_sharded_model(unwrap_model(learn.model))
        if sharded and any(p.grad is not None for p in learn.model.parameters()):
            raise ValueError(
                "ResumeCallback: under FSDP a checkpoint cannot hold gradients added up but not stepped yet "
                "(each process holds its own until the stepping batch).\n"
                "help: make every_batches a multiple of GradientAccumulation's steps, or save per epoch"
            )
        # gradients added up but not stepped yet (GradientAccumulation) must survive the interruption too
        grads = {
            f"grad.{i}": p.grad.detach().cpu().contiguous()
            for i, p in enumerate(learn.model.parameters())
            if p.grad is not None
        }
        # under FSDP every process gathers the full weights and optimizer state; the main one writes them
        with learn.run.gathered(learn, with_opt=True) as opt_state:
            if learn.is_main_process:
                self._write(batches_done, opt_state, {**rng, **grads})

    def _write(self, batches_done: int, opt_state: dict[str, Any] | None, tensors: dict[str, Tensor]) -> None:
        learn = self.learn
        train_epoch = _loader_epoch(learn.dls.train)
        if batches_done and train_epoch is not None:
            train_epoch -= 1  # its iteration over this epoch has begun: replaying it needs the epoch before
        state = {
            "epoch": learn.epoch,
            "batches_done": batches_done,
            "n_epoch": learn.n_epoch,
            "n_iter": learn.n_iter,
            "train_iter": learn.train_iter + (1 if batches_done else 0),
            "n_trainable": _n_trainable(learn),
            "world_size": learn.run.world,
            "loaders": {"train": train_epoch, "valid": _loader_epoch(learn.dls.valid)},
            "callbacks": {
                cb.name: cb.resume_state()  # type: ignore[attr-defined]
                for cb in learn.cbs
                if callable(getattr(cb, "resume_state", None))
            },
        }
        extra = {"resume": state}
        save_checkpoint(learn, self.fname, extra=extra, extra_tensors=tensors, opt_state=opt_state)

    def _restore(self) -> None:
        learn = self.learn
        path = self.path
        tensors, meta = read_checkpoint(path)
        state = (meta.get("extra") or {}).get("resume")
        if not isinstance(state, dict):
            raise ValueError(
                f"ResumeCallback: {str(path)!r} is a checkpoint but not a resume checkpoint.\n"
                "help: give ResumeCallback its own fname (learn.save files cannot resume a fit)"
            )
        world = state.get("world_size", 1)
        if world != learn.run.world:
            raise ValueError(
                f"ResumeCallback: {str(path)!r} was written by a run of {world} process(es); this one has "
                f"{learn.run.world}.\n"
                f"help: resume with {world} process(es) (each process's shard of the data and random state "
                "are saved for that number), or delete the file (or pass resume=False) to start over"
            )
        saved = (state.get("n_epoch"), state.get("n_iter"), state.get("n_trainable", _n_trainable(learn)))
        if saved != (learn.n_epoch, learn.n_iter, _n_trainable(learn)):
            raise ValueError(
                f"ResumeCallback: {str(path)!r} was written by a fit of {saved[0]} epochs of {saved[1]} "
                f"batches training {saved[2]} tensors; this fit has {learn.n_epoch} epochs of {learn.n_iter}"
                f" training {_n_trainable(learn)}.\n"
                "help: rerun the interrupted fit unchanged, or delete the file (or pass resume=False) to "
                "start over"
            )
        apply_checkpoint(learn, tensors, meta, with_opt=True)
        epoch, done = int(state["epoch"]), int(state.get("batches_done", 0))
        learn.epoch, learn.train_iter = epoch, int(state["train_iter"])
        learn.start_epoch = epoch if done else epoch + 1  # mid-epoch: that epoch again, from batch `done`
        learn.start_iter = done
        loaders = state.get("loaders") or {}
        _set_loader_epoch(learn.dls.train, loaders.get("train"))
        _set_loader_epoch(learn.dls.valid, loaders.get("valid"))
        if done:
            learn.dls.train.skip_batches(done)
        for i, p in enumerate(learn.model.parameters()):
            g = tensors.get(f"extra.grad.{i}")
            p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype)
        saved_cbs = state.get("callbacks") or {}
        for cb in learn.cbs:
            load = getattr(cb, "load_resume_state", None)
            if callable(load) and cb.name in saved_cbs:
                load(saved_cbs[cb.name])
        _set_rng(tensors, learn.run.rank)  # last: nothing draws after
        self.resumed_from, self.resumed_at_batch = epoch, done


def _n_trainable(learn: Any) -> int:
    """How many parameter tensors train (tells a frozen phase from an unfrozen one)."""
    return sum(p.requires_grad for p in learn.model.parameters())


# -- random states ------------------------------------------------------------------------------------------
def _process_rng() -> dict[str, Tensor]:
    """This process's random states as tensors (int64 for Python's and NumPy's Mersenne Twisters)."""
    out = {"torch": torch.get_rng_state()}
    version, words, gauss = random.getstate()
    out["python"] = torch.tensor([version, *words], dtype=torch.int64)
    out["python_gauss"] = torch.tensor([float("nan") if gauss is None else gauss], dtype=torch.float64)
    np_state: Any = np.random.get_state(
        legacy=True
    )  # ("MT19937", keys (624,) uint32, pos, has_gauss, cached)
    _, keys, pos, has_gauss, cached = np_state
    out["numpy"] = torch.tensor(
        [*np.asarray(keys, dtype=np.int64).tolist(), pos, has_gauss], dtype=torch.int64
    )
    out["numpy_gauss"] = torch.tensor([cached], dtype=torch.float64)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return out


def _gather_rng(learn: Any) -> dict[str, Tensor]:
    """`rng.<kind>` tensors with one row per process."""
    mine = _process_rng()
    run = learn.run
    out = {}
    for k, t in mine.items():
        rows = run.all_gather(t.unsqueeze(0))
        out[f"rng.{k}"] = torch.cat([r.cpu() for r in rows])
    return out


def _set_rng(tensors: dict[str, Tensor], rank: int) -> None:
    def row(kind: str) -> Tensor | None:
        t = tensors.get(f"extra.rng.{kind}")
        return None if t is None or len(t) == 0 else t[rank % len(t)].clone()  # a copy: no storage offset

    if (t := row("torch")) is not None:
        torch.set_rng_state(t.to(torch.uint8))
    if (t := row("python")) is not None and (g := row("python_gauss")) is not None:
        gauss = float(g[0])
        words = tuple(int(v) for v in t[1:].tolist())
        random.setstate((int(t[0]), words, None if math.isnan(gauss) else gauss))
    if (t := row("numpy")) is not None and (g := row("numpy_gauss")) is not None:
        v = t.tolist()
        np.random.set_state(
            ("MT19937", np.array(v[:-2], dtype=np.uint32), int(v[-2]), int(v[-1]), float(g[0]))
        )
    if (t := row("cuda")) is not None and torch.cuda.is_available():
        for i in range(min(len(t), torch.cuda.device_count())):
            torch.cuda.set_rng_state(t[i].clone().to(torch.uint8), i)


# -- data loaders' epoch counters ----------------------------------------------------------------------------
def _loader_epoch(dl: Any) -> int | None:
    """The epoch a seeded lamina DataLoader draws next (its order and item seeds follow from it), or None."""
    return dl.epoch if isinstance(dl, DataLoader) else None


def _set_loader_epoch(dl: Any, epoch: Any) -> None:
    if isinstance(dl, DataLoader) and isinstance(epoch, int):
        dl.epoch = epoch
