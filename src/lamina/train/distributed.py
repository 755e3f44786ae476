"""Data-parallel training on Accelerate: one process per device, DDP for the gradients, a data shard each.

Run the same script in every process (`accelerate launch train.py` or `torchrun --nproc_per_node 2
train.py`); `fit` enters `learn.distributed()` by itself when WORLD_SIZE > 1, or say it explicitly:

>>> with learn.distributed():                       # doctest: +SKIP
...     learn.fit_one_cycle(3, 1e-3)

How it works, and why:

- Accelerate starts the process group and picks the device (`cuda:<local rank>`, or the CPU with gloo).
  The model is wrapped in `DistributedDataParallel` directly rather than through `prepare_model`, so that
  `freeze`/`unfreeze` can re-wrap it and so that launch-time settings (autocast, compile) stay with
  lamina's own callbacks; `learn.accelerator.no_sync(learn.model)` and `learn.no_sync()` skip the
  gradient all-reduce (gradient accumulation).
- Every collective goes through Accelerate's public utilities (`broadcast`, `reduce`, `gather`,
  `gather_object`); nothing here calls torch.distributed directly.
- The data is sharded by the loader itself (`DataLoader.shard`), not by `prepare(dataloader)`: lamina's
  DataLoader keeps its item and batch transforms, its seeded order (exact mid-epoch resume) and its
  whole-batch tables, and every process takes every `world_size`-th item of the same order (the unseeded
  shuffled order is made the same in every process with a shared seed). `bs` is per process. The
  training shard is padded by repeating the first items (or cut with `drop_last`) so that every process
  makes the same number of steps; the validation shard is not padded, so no item counts twice.
- Validation runs on the unwrapped model (no collective per batch, shards may differ by one batch); the
  loss sums are summed across processes, each metric's torchmetrics state is synced (`Metric.sync()`,
  torchmetrics' `dist_reduce_fx`), and `get_preds` gathers the items back into the loader's order.
- Only the main process prints progress or writes checkpoints and exports.
- Inside `distributed()`, call `validate`/`get_preds` on the validation set from every process: they gather.

FSDP: `strategy="fsdp"` (`lamina train --strategy fsdp`) shards the model instead of copying it: torch's
FSDP2 `fully_shard` on each child module that holds parameters and on the root, so every process holds
1/world of the parameters, gradients and optimizer state (the optimizer is built again over the shards);
the data is sharded as for DDP. Accelerate 1.16 applies its FSDP plugin only on GPUs (on CPUs its state
stays MULTI_CPU and `prepare_model` returns DDP), so lamina calls `fully_shard` itself, on the process
group Accelerate started: the same call on a CPU (gloo) as on GPUs. Validation gathers the parameters once
per pass (`evaluating`), so processes with different numbers of validation batches never wait on each
other. `mixed_precision="bf16"` (FSDP2's MixedPrecisionPolicy) gathers the parameters and computes in
bfloat16 while the shards, the optimizer and the gradient reduction stay float32 (it runs on gloo too).
`learn.no_sync()` (GradientAccumulation) skips the reduce-scatter with FSDP2's
`set_requires_gradient_sync` (`accelerator.no_sync` does nothing for an FSDP2 module).
`learn.export` and `learn.save` inside the block gather the full weights (and optimizer state) in
every process, then rank 0 writes the file a single process would; on leaving the block the full
parameters are gathered into a plain copy of the model (kept on the CPU meanwhile), so `export`,
`predict` and `save` work as after a single-process run. The optimizer's state is not carried out of the
block (a later fit starts a new one). Not supported yet, and refused with an error: `learn.load` into the
sharded model (load after the block) and `ResumeCallback` (refused when the fit starts; resume with DDP).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import gc
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lamina.data import DataLoader

if TYPE_CHECKING:
    from accelerate import Accelerator

    from lamina.train.learner import Learner
    from lamina.train.metrics import Metric

__all__ = [
    "FSDP_PRECISIONS",
    "LOCAL_RUN",
    "STRATEGIES",
    "DistributedRun",
    "LocalRun",
    "PeerLostError",
    "Run",
    "env_world_size",
    "is_main_process",
    "is_sharded_model",
    "unwrap_model",
]

_DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
)
_MAX_DIMS = 8


# what gloo / NCCL / the TCP store say when the process at the other end is gone
_PEER_LOST = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Connection refused",
    "communicator was aborted",
    "Socket Timeout",
)


class PeerLostError(RuntimeError):
    """Another process of a distributed run stopped (crashed, killed, machine lost): this one stops too."""


def peer_lost(e: BaseException, rank: int, world: int) -> PeerLostError | None:
    """A `PeerLostError` saying what happened and what to do, when `e` is a collective failing for that
    reason; None otherwise."""
    msg = str(e)
    if not any(p in msg for p in _PEER_LOST):
        return None
    first = msg.strip().splitlines()[0][:300] if msg.strip() else type(e).__name__
    return PeerLostError(
        f"lamina: process {rank} of {world} lost contact with another process of this distributed run "
        f"({first}): it stopped, crashed or was killed. This process stops too; checkpoints and exports are "
        "written whole or not at all, so the last one is intact.\n"
        "help: read the other processes' logs for the cause, then rerun the same command (with "
        "ResumeCallback it continues from its last checkpoint, with the same number of processes)"
    )


@functools.cache
def _leave_group_at_exit() -> None:
    """Once per process: destroy the process group before the interpreter exits. Left to the interpreter's
    teardown, gloo's threads sometimes outlive it and the process ends with `terminate called without an
    active exception` (a non-zero exit after a run that succeeded)."""

    def leave() -> None:
        from accelerate import PartialState

        # a DDP wrapper left in a reference cycle holds the group: freed first, or its gloo threads end
        # in the teardown all the same (2-process runs: 0 aborts in 60 with, 2 in 48 without)
        gc.collect()
        with contextlib.suppress(Exception):
            PartialState().destroy_process_group()

    atexit.register(leave)


#: `Learner.distributed(strategy=...)`: DDP (a whole model per process) or FSDP (everything sharded)
STRATEGIES = ("ddp", "fsdp")
#: `Learner.distributed(mixed_precision=...)` under FSDP: float32, or bfloat16 compute over float32 shards
FSDP_PRECISIONS = ("no", "bf16")


def env_world_size() -> int:
    """WORLD_SIZE as set by `torchrun` / `accelerate launch` (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def is_main_process() -> bool:
    """Rank 0 of an initialized process group, else what RANK says (a single process is the main one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") in ("", "0")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DDP / DataParallel / `torch.compile` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
            continue
        orig = getattr(model, "_orig_mod", None)
        if isinstance(orig, nn.Module):
            model = orig
            continue
        return model


class DistributedRun:
    """What `Learner.distributed()` sets up (process group, DDP, data shards) and undoes on exit."""

    def __init__(
        self,
        accelerator: Accelerator,
        find_unused_parameters: bool,
        strategy: str = "ddp",
        mixed_precision: str = "no",
    ) -> None:
        self.accelerator = accelerator
        self.strategy = strategy
        self.mixed_precision = mixed_precision
        self._plain: nn.Module | None = None  # FSDP: an unsharded copy (on the CPU), filled again at stop
        self.rank: int = accelerator.process_index
        self.world: int = accelerator.num_processes
        self.device: torch.device = accelerator.device
        self.find_unused_parameters = find_unused_parameters
        self._shards: dict[int, DataLoader] = {}

    is_distributed = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- entering and leaving --------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        learn: Learner,
        find_unused_parameters: bool = False,
        strategy: str = "ddp",
        mixed_precision: str = "no",
    ) -> DistributedRun:
        """Join the process group, wrap the model in DDP (or shard it with FSDP) and shard the training and
        validation sets."""
        if strategy not in STRATEGIES:
            raise ValueError(
                f"Learner.distributed: strategy {strategy!r} is not one of {list(STRATEGIES)}.\n"
                "help: 'ddp' (a whole model per process) or 'fsdp' (parameters, gradients and optimizer "
                "state sharded across the processes)"
            )
        if mixed_precision not in FSDP_PRECISIONS or (mixed_precision != "no" and strategy != "fsdp"):
            raise ValueError(
                f"Learner.distributed: mixed_precision {mixed_precision!r} with strategy {strategy!r}; "
                f"expected one of {list(FSDP_PRECISIONS)}, and 'bf16' only with strategy='fsdp'.\n"
                "help: distributed(strategy='fsdp', mixed_precision='bf16') computes in bfloat16 over "
                "float32 shards; for DDP (or fp16 with loss scaling) use learn.to_bf16() / learn.to_fp16()"
            )
        try:
            from accelerate import Accelerator
        except ImportError as e:
            raise ImportError(
                "Learner.distributed: needs the `accelerate` package.\n"
                "help: pip install 'lamina[distributed]' (or pip install accelerate)"
            ) from e
        # lamina's callbacks own precision and compilation: keep Accelerate from applying launch settings
        acc = Accelerator(cpu=learn.dls.device.type == "cpu", mixed_precision="no", dynamo_backend="no")
        _leave_group_at_exit()
        run = cls(acc, find_unused_parameters, strategy, mixed_precision)
        raw = unwrap_model(learn.model)
        raw.to(run.device)
        if learn.opt is not None:
            _move_opt_state(learn.opt, run.device)
        if run.world > 1:
            if strategy == "fsdp":
                learn.model = run._fully_shard(raw)
                learn.opt = None  # its parameters were replaced by shards: the fit builds a new one over them
            else:
                learn.model = run._wrap(raw)
            # both strategies are data-parallel: each process trains on its own part of every epoch
            seed = run._shared_seed()
            run._shard(learn.dls.train, even=True, seed=seed)
            run._shard(learn.dls.valid, even=False, seed=seed)
        if run.is_main:  # said once, so a run is never distributed (or not) without the user knowing
            how = "FSDP-sharded" if strategy == "fsdp" and run.world > 1 else "data-parallel"
            print(
                f"lamina: {how} run over {run.world} process(es) on {run.device.type} "
                f"({acc.distributed_type}); bs is per process",
                flush=True,
            )
        return run

    def stop(self, learn: Learner, failed: bool = False) -> None:
        """Put back the plain model and the unsharded loaders (buffers synced from rank 0 first, unless the
        run `failed`: the other processes may be gone or elsewhere, and a collective would wait for them)."""
        if self.world > 1 and not failed:
            self.sync_buffers(learn.model)
        if self._plain is not None:
            learn.model = self._unshard_model(learn.model, failed)
            learn.opt = None  # it holds the shards; a later fit builds a new optimizer
        learn.model = self.local_model(learn.model)
        for dl in self._shards.values():
            dl.unshard()
        self._shards = {}

    def _wrap(self, raw: nn.Module) -> nn.Module:
        if not any(p.requires_grad for p in raw.parameters()):
            return raw  # nothing to synchronize
        ddp = nn.parallel.DistributedDataParallel
        if self.device.type == "cuda":
            idx = self.device.index
            return ddp(
                raw, device_ids=[idx], output_device=idx, find_unused_parameters=self.find_unused_parameters
            )
        return ddp(raw, find_unused_parameters=self.find_unused_parameters)

    def _fully_shard(self, raw: nn.Module) -> nn.Module:
        """Shard `raw` in place with torch's FSDP2 (`fully_shard`): each child holding parameters, then the
        root, so a forward gathers one child's parameters at a time. A CPU copy is kept to come back to."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # the run's own device: FSDP's default mesh is CUDA whenever CUDA exists, even for a CPU (gloo) run
        mesh = init_device_mesh(self.device.type, (self.world,))

        # bf16: the gathered parameters and the computation in bfloat16, the shards (what the optimizer
        # updates, what export writes) and the gradient reduction in float32
        bf16 = self.mixed_precision == "bf16"
        mp = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if bf16
            else MixedPrecisionPolicy()
        )
        self._plain = copy.deepcopy(raw).cpu()
        for child in raw.children():
            if any(True for _ in child.parameters()):
                fully_shard(child, mesh=mesh, mp_policy=mp)
        fully_shard(raw, mesh=mesh, mp_policy=mp)
        return raw

    def _unshard_model(self, model: nn.Module, failed: bool) -> nn.Module:
        """The plain module again, holding the full parameters gathered from every process."""
        plain, self._plain = self._plain, None
        assert plain is not None
        if failed:
            return plain.to(self.device)  # the others may be gone: no collective; the weights are the start's
        _load_full(plain, model)
        return plain.to(self.device)

    @contextlib.contextmanager
    def gathered(self, learn: Learner, with_opt: bool = False) -> Iterator[dict[str, Any] | None]:
        """FSDP: inside, `learn.model` is the plain model (on the CPU) holding the full parameters gathered
        from every process, so `export` and `save` write what a single process would; yields the optimizer's
        state_dict with its state gathered the same way when `with_opt` (else None). Every process must
        enter it (collectives). DDP: nothing to gather, yields None."""
        if self._plain is None:
            yield None
            return
        sharded = learn.model
        _load_full(self._plain, sharded)
        opt_state = _full_optimizer_state(learn.opt) if with_opt and learn.opt is not None else None
        learn.model = self._plain
        try:
            yield opt_state
        finally:
            learn.model = sharded

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[None]:
        """Validation or prediction: an FSDP model's parameters are gathered once (every process at once)
        and kept for every batch, so that processes with different numbers of batches never wait on each
        other; for DDP, nothing (validation runs on the unwrapped model)."""
        from torch.distributed.fsdp import FSDPModule

        mods = [m for m in model.modules() if isinstance(m, FSDPModule)] if self.strategy == "fsdp" else []
        for m in mods:
            m.set_reshard_after_forward(False, recurse=False)
            m.unshard()
        try:
            yield
        finally:
            for m in mods:
                m.reshard()
                m.set_reshard_after_forward(True, recurse=False)

    @contextlib.contextmanager
    def no_sync(self, model: nn.Module) -> Iterator[None]:
        """Backward passes inside keep their gradients local (gradient accumulation): Accelerate's `no_sync`
        for DDP; for FSDP2 (no `no_sync` of its own, so Accelerate's would sync anyway) the module's
        `set_requires_gradient_sync(False)`, the full gradients kept until a synced backward."""
        from torch.distributed.fsdp import FSDPModule

        if not isinstance(model, FSDPModule):
            with self.accelerator.no_sync(model):
                yield
            return
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def rewrap(self, learn: Learner) -> None:
        """Wrap the model again after its trainable parameters changed (freeze / unfreeze)."""
        if self.world <= 1 or self.strategy == "fsdp":  # FSDP2 takes frozen parameters as they come
            return
        raw = unwrap_model(learn.model)
        learn.model = raw
        gc.collect()  # the old DDP's reducer hooks go with it
        learn.model = self._wrap(raw)

    def _shared_seed(self) -> int:
        from accelerate.utils import broadcast

        t = torch.tensor([int.from_bytes(os.urandom(7), "little")], dtype=torch.int64, device=self.device)
        return int(broadcast(t, from_process=0).item())

    def _shard(self, dl: Any, even: bool, seed: int) -> None:
        if not isinstance(dl, DataLoader) or id(dl) in self._shards:
            return
        # the loader keeps its transforms and its order; it draws every world-th item of it from now on
        dl.shard(self.rank, self.world, even=even, seed=seed, device=self.device)
        self._shards[id(dl)] = dl

    # -- queries ---------------------------------------------------------------------------------------------
    def is_sharded(self, dl: Any) -> bool:
        return id(dl) in self._shards

    def n_batches(self, dl: Any) -> int | None:
        """Batches in this process's shard of `dl`, or None when `dl` is not sharded."""
        return len(dl) if id(dl) in self._shards else None

    def local_model(self, model: nn.Module) -> nn.Module:
        """`model` without its DDP wrapper (for validation: no collective in the forward pass)."""
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

    # -- collectives -----------------------------------------------------------------------------------------
    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm statistics) to every process."""
        if self.world <= 1:
            return
        from accelerate.utils import broadcast

        for b in unwrap_model(model).buffers():
            t = broadcast(b.data.to(self.device), from_process=0)
            if t is not b.data:
                b.data.copy_(t)

    def all_reduce_sum(self, t: Tensor | float) -> Tensor:
        """The sum over the processes of `t` (a number becomes a float64 tensor), on this run's device."""
        from accelerate.utils import reduce

        out = torch.as_tensor(t, dtype=torch.float64 if not isinstance(t, Tensor) else None)
        out = out.detach().to(self.device).clone()
        return reduce(out, reduction="sum") if self.world > 1 else out

    def all_gather(self, t: Tensor, pad: float = 0) -> list[Tensor]:
        """Every process's `t`, in rank order; dim 0 may differ, and a process with no items may send any
        empty tensor (it takes the others' trailing shape and dtype). Other dims may differ too (texts
        padded to each batch's longest): every part is then padded at the end with `pad` to the largest."""
        from accelerate.utils import gather, gather_object

        t = t.detach()
        if t.ndim == 0:
            t = t.reshape(1)
        if t.ndim > _MAX_DIMS or t.dtype not in _DTYPES:
            raise ValueError(
                f"distributed gather: got a {t.dtype} tensor of shape {tuple(t.shape)}; expected at most "
                f"{_MAX_DIMS} dims and one of {[str(d) for d in _DTYPES]}.\n"
                "help: gather plain numeric tensors (flatten or convert the others first)"
            )
        if self.world <= 1:
            return [t]
        # each process's dtype and shape first (Accelerate's object gather), so that uneven, ragged and
        # empty shards line up; then one padded tensor gather, cut back to each process's items
        shapes = [(int(dt), tuple(sh)) for dt, sh in gather_object([(_DTYPES.index(t.dtype), list(t.shape))])]
        full = [(dt, sh) for dt, sh in shapes if sh and sh[0] > 0]
        ref_dtype, ref_shape = full[0] if full else shapes[self.rank]
        for dt, sh in full:
            if dt != ref_dtype or len(sh) != len(ref_shape):
                raise ValueError(
                    f"distributed gather: processes hold {_DTYPES[dt]} {sh[1:]} and {_DTYPES[ref_dtype]} "
                    f"{ref_shape[1:]} items; expected the same dtype and number of dims everywhere.\n"
                    "help: every process must produce items of the same kind"
                )
        trailing = tuple(max(sh[d] for _, sh in full) for d in range(1, len(ref_shape))) if full else ()
        dtype = _DTYPES[ref_dtype]
        sizes = [sh[0] if sh else 0 for _, sh in shapes]
        if t.shape[0] == 0:
            t = torch.zeros((0, *trailing), dtype=dtype)
        wire = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool collectives
        padded = torch.full((max(sizes), *trailing), pad, dtype=wire, device=self.device)
        padded[tuple(slice(0, n) for n in t.shape)] = t.to(self.device, wire)
        if max(sizes) == 0:
            return [padded.to(dtype) for _ in sizes]
        parts = gather(padded).split(max(sizes))  # (world * max, ...) in rank order
        return [p[:n].to(dtype) for p, n in zip(parts, sizes, strict=True)]

    def gather_cat(self, t: Tensor) -> Tensor:
        """Every process's items concatenated (rank order)."""
        return torch.cat(self.all_gather(t))

    def gather_items(self, t: Tensor, pad: float = 0) -> Tensor:
        """A sharded pass's items back in the loader's order (rank r held items r, r + world, ...)."""
        parts = self.all_gather(t, pad)
        n = sum(len(p) for p in parts)
        out = parts[0].new_empty((n, *parts[0].shape[1:]))
        for r, p in enumerate(parts):
            if len(range(r, n, self.world)) != len(p):
                raise RuntimeError(
                    f"distributed get_preds: process {r} returned {len(p)} of {n} items; expected "
                    f"{len(range(r, n, self.world))}.\n"
                    "help: do not cancel batches of a sharded validation pass"
                )
            out[r :: self.world] = p
        return out

    def gather_preds(
        self,
        preds: Tensor,
        targs: Tensor | tuple[Tensor, ...] | None,
        inputs: tuple[Tensor, ...],
        losses: Tensor | None,
        input_pads: Sequence[float] = (),
        target_pads: Sequence[float] = (),
    ) -> tuple[Tensor, Tensor | tuple[Tensor, ...] | None, tuple[Tensor, ...], Tensor | None]:
        """`get_preds`' pieces with every process's items, in order, on the CPU. `input_pads` and
        `target_pads`: each element's padding value (e.g. -1 for token ids), for items of ragged length."""

        def items(t: Tensor, pads: Sequence[float] = (), k: int = 0) -> Tensor:
            return self.gather_items(t, pads[k] if k < len(pads) else 0).cpu()

        if isinstance(targs, tuple):
            targs = tuple(items(t, target_pads, k) for k, t in enumerate(targs))
        elif targs is not None:
            targs = items(targs, target_pads)
        return (
            items(preds),
            targs,
            tuple(items(x, input_pads, k) for k, x in enumerate(inputs)),
            items(losses) if losses is not None else None,
        )

    def reduce_metric(self, m: Metric) -> None:
        """Combine a metric's state across processes: torchmetrics' `sync` (each state's `dist_reduce_fx`)."""
        if self.world > 1:
            m.sync()


def is_sharded_model(model: nn.Module) -> bool:
    """True when `model` holds FSDP shards (DTensor parameters) rather than whole tensors."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False  # shards need a process group
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _load_full(plain: nn.Module, sharded: nn.Module) -> None:
    """Copy `sharded`'s full state (gathered from every process: a collective) into `plain`, same names."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    plain.load_state_dict({k: v.detach().cpu() for k, v in full.items() if isinstance(v, Tensor)})


def _full_optimizer_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """`opt.state_dict()` with every sharded state tensor gathered whole (on the CPU; a collective, in the
    same order in every process): the layout a single-process optimizer over the plain model has."""
    from torch.distributed.tensor import DTensor

    sd = opt.state_dict()
    state = {
        pid: {k: v.full_tensor().cpu() if isinstance(v, DTensor) else v for k, v in sorted(st.items())}
        for pid, st in sorted(sd["state"].items())
    }
    return {"state": state, "param_groups": sd["param_groups"]}


def _move_opt_state(opt: torch.optim.Optimizer, device: torch.device) -> None:
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, Tensor) and v.device != device and k != "step":
                st[k] = v.to(device)


class LocalRun:
    """The single-process stand-in for `DistributedRun`: the same questions and collectives, answered for one
    process, so the Learner and callbacks ask `learn.run` without a distributed branch of their own."""

    is_distributed = False
    accelerator: Accelerator | None = None
    rank, world = 0, 1

    @property
    def is_main(self) -> bool:
        return is_main_process()  # a process a launcher started, outside learn.distributed()

    def rewrap(self, learn: Learner) -> None:
        """Nothing to re-wrap without DDP."""

    def is_sharded(self, dl: Any) -> bool:
        return False

    def n_batches(self, dl: Any) -> int | None:
        return None

    def local_model(self, model: nn.Module) -> nn.Module:
        return model

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[None]:
        """Nothing to gather in one process."""
        yield

    def sync_buffers(self, model: nn.Module) -> None:
        """One process: its buffers are everyone's."""

    def all_reduce_sum(self, t: Tensor | float) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64 if not isinstance(t, Tensor) else None)

    def all_gather(self, t: Tensor, pad: float = 0) -> list[Tensor]:
        return [t]

    def gather_preds(
        self,
        preds: Tensor,
        targs: Tensor | tuple[Tensor, ...] | None,
        inputs: tuple[Tensor, ...],
        losses: Tensor | None,
        input_pads: Sequence[float] = (),
        target_pads: Sequence[float] = (),
    ) -> tuple[Tensor, Tensor | tuple[Tensor, ...] | None, tuple[Tensor, ...], Tensor | None]:
        return preds, targs, inputs, losses

    def reduce_metric(self, m: Metric) -> None:
        """One process: the metric's state is already the whole."""

    @contextlib.contextmanager
    def gathered(self, learn: Learner, with_opt: bool = False) -> Iterator[dict[str, Any] | None]:
        """One process: the model is whole already."""
        yield None


Run = DistributedRun | LocalRun
LOCAL_RUN = LocalRun()
