"""Checkpoints: weights and optimizer state in one safetensors file, written atomically. Never pickle.

Tensors go in the safetensors body (`model.<name>`, `opt.<param>.<key>`, `extra.<name>`); everything else
(optimizer hyper-parameters, step counters, training position) is JSON in the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from lamina.core.files import atomic_write_bytes, remove_stale_temps
from lamina.train.distributed import is_sharded_model, unwrap_model

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = [
    "apply_checkpoint",
    "atomic_write_bytes",
    "checkpoint_path",
    "load_checkpoint",
    "optimizer_state",
    "read_checkpoint",
    "remove_stale_temps",
    "save_checkpoint",
]

FORMAT = "lamina.checkpoint"
FORMAT_VERSION = 1


def checkpoint_path(learn: Learner, name: str | Path) -> Path:
    """`name` as is when it is a path with a suffix or absolute; else `path/model_dir/name.safetensors`."""
    p = Path(name)
    if p.suffix or p.is_absolute():
        return p
    return learn.path / learn.model_dir / f"{name}.safetensors"


def optimizer_state(
    opt: torch.optim.Optimizer, sd: dict[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict (or `sd`, one already taken: gathered whole under FSDP) into tensors
    and JSON-able data."""
    sd = opt.state_dict() if sd is None else sd
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _plain_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state_dict a checkpoint holds (state keyed by parameter position, as torch's is)."""
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = t
    for pid, vals in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(vals)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _load_optimizer_state(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    opt.load_state_dict(_plain_optimizer_state(tensors, meta))


def _load_into_shards(
    model: torch.nn.Module,
    model_sd: dict[str, torch.Tensor],
    opt: torch.optim.Optimizer | None,
    opt_sd: dict[str, Any] | None,
    strict: bool,
) -> None:
    """Spread a full checkpoint (weights, optimizer state by parameter position) over an FSDP model's
    shards: every process passes the whole file (collectives). The weights go through torch's distributed
    state-dict API; each optimizer state tensor shaped like its parameter is cut as the parameter is."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, strict=strict)
    set_model_state_dict(model, dict[str, Any](model_sd), options=options)
    if opt is None or opt_sd is None:
        return
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = [p for g in opt.param_groups for p in g["params"]]
    if len(opt_sd["param_groups"]) != len(opt.param_groups):
        raise ValueError(f"it has {len(opt_sd['param_groups'])} parameter groups for {len(opt.param_groups)}")
    if any(not 0 <= pid < len(params) for pid in opt_sd["state"]):
        raise ValueError(f"it has optimizer state for parameter {max(opt_sd['state'])} of {len(params)}")
    for pid in sorted(opt_sd["state"]):  # the same order in every process: distributing is a collective
        p, st = params[pid], opt_sd["state"][pid]
        for k, v in sorted(st.items()):
            if isinstance(p, DTensor) and isinstance(v, torch.Tensor) and v.shape == p.shape:
                st[k] = distribute_tensor(v.to(p.device, p.dtype), p.device_mesh, p.placements)
    opt.load_state_dict(opt_sd)


def save_checkpoint(
    learn: Learner,
    name: str | Path,
    with_opt: bool = True,
    extra: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    opt_state: dict[str, Any] | None = None,
) -> Path:
    """Write the model's weights (and optimizer state) to one safetensors file, atomically.

    `extra` is JSON data and `extra_tensors` tensors stored alongside (a `ResumeCallback` keeps the
    training position and the random states there); `opt_state`: the optimizer's state_dict when already
    taken (`learn.save` under FSDP gathers it whole first).
    """
    path = checkpoint_path(learn, name)
    model = unwrap_model(learn.model)
    _refuse_shards(model, "save_checkpoint")
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "with_opt": False}
    if with_opt and learn.opt is not None:
        opt_tensors, opt_meta = optimizer_state(learn.opt, opt_state)
        tensors.update(opt_tensors)
        meta.update(with_opt=True, opt=opt_meta)
    if extra:
        meta["extra"] = extra
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    doc = json.dumps(meta)
    atomic_write_bytes(path, lambda tmp: save_file(tensors, tmp, metadata={"lamina": doc}))
    return path


def _refuse_shards(model: torch.nn.Module, where: str) -> None:
    """An FSDP-sharded model's weights are spread over the processes: refuse rather than write or read
    one process's shard as if it were the model."""
    if is_sharded_model(model):
        raise ValueError(
            f"{where}: the model is sharded across the processes (learn.distributed(strategy='fsdp')); this "
            "process holds only its part of each weight.\n"
            "help: inside the FSDP block use learn.save (every process gathers the full weights first)"
        )


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the JSON metadata of a checkpoint file, with a clear error for anything else."""
    remove_stale_temps(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} not found.\nhelp: check the name given to learn.save"
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("lamina")
        tensors = load_file(str(path))
    except Exception as e:
        raise ValueError(
            f"{str(path)!r} is not a readable safetensors checkpoint: {e}\n"
            "help: the file is damaged or was not written by learn.save (lamina never reads pickles)"
        ) from e
    if raw is None:
        raise ValueError(
            f"{str(path)!r} is a safetensors file but not a lamina checkpoint (no 'lamina' metadata).\n"
            "help: load plain weights with safetensors.torch.load_file and model.load_state_dict"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r}: the checkpoint's metadata is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r}: not a {FORMAT} file (format field)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r}: checkpoint format v{version} is not supported "
            f"(this lamina reads {FORMAT} up to v{FORMAT_VERSION}).\nhelp: upgrade lamina"
        )
    return tensors, meta


def apply_checkpoint(
    learn: Learner,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    with_opt: bool = True,
    strict: bool = True,
) -> None:
    """Put a read checkpoint's weights (and optimizer state) into `learn`."""
    model = unwrap_model(learn.model)
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if is_sharded_model(model):
        load_opt = with_opt and bool(meta.get("with_opt"))
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("opt.")}
        try:
            _load_into_shards(
                model,
                model_sd,
                learn.ensure_opt() if load_opt else None,
                _plain_optimizer_state(opt_tensors, meta["opt"]) if load_opt else None,
                strict,
            )
        except (ValueError, KeyError, RuntimeError) as e:
            raise ValueError(
                f"checkpoint: it does not fit this sharded learner: {e}\n"
                "help: use the same model, splitter and freeze state as when saving"
            ) from e
        return
    device = next(model.parameters(), torch.empty(0)).device
    model.load_state_dict({k: v.to(device) for k, v in model_sd.items()}, strict=strict)
    if with_opt and meta.get("with_opt"):
        opt = learn.ensure_opt()
        # torch's load_state_dict moves each state tensor to its parameter's device (and keeps `step` right)
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("opt.")}
        try:
            _load_optimizer_state(opt, opt_tensors, meta["opt"])
        except (ValueError, KeyError) as e:
            raise ValueError(
                f"checkpoint: the optimizer state does not fit this learner's optimizer: {e}\n"
                "help: use the same splitter and freeze state as when saving, or load with with_opt=False"
            ) from e


def load_checkpoint(
    learn: Learner, name: str | Path, with_opt: bool = True, strict: bool = True
) -> dict[str, Any]:
    """Load weights (and optimizer state) saved by `save_checkpoint`; returns the metadata."""
    tensors, meta = read_checkpoint(checkpoint_path(learn, name))
    apply_checkpoint(learn, tensors, meta, with_opt=with_opt, strict=strict)
    return meta
