"""Checkpoints: weights and optimizer state in one safetensors file, written atomically. Never pickle.

Tensors go in the safetensors body (`model.<name>`, `opt.<param>.<key>`); everything else (optimizer
hyper-parameters, step counters, training position) is JSON in the file's metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = [
    "atomic_write_bytes",
    "checkpoint_path",
    "load_checkpoint",
    "optimizer_state",
    "read_checkpoint",
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


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call `write(tmp_path)`, then rename into `path`: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into tensors and JSON-able data."""
    sd = opt.state_dict()
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


def _load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
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
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    learn: Learner,
    name: str | Path,
    with_opt: bool = True,
    extra: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the model's weights (and optimizer state) to one safetensors file, atomically."""
    path = checkpoint_path(learn, name)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "with_opt": False}
    if with_opt and learn.opt is not None:
        opt_tensors, opt_meta = optimizer_state(learn.opt)
        tensors.update(opt_tensors)
        meta.update(with_opt=True, opt=opt_meta)
    if extra:
        meta["extra"] = extra
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    atomic_write_bytes(path, lambda tmp: save_file(tensors, tmp, metadata={"lamina": json.dumps(meta)}))
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the JSON metadata of a checkpoint file, with a clear error for anything else."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found.\nhelp: check the name given to learn.save")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("lamina")
        tensors = load_file(str(path))
    except Exception as e:
        raise ValueError(f"{str(path)!r} is not a readable safetensors checkpoint: {e}") from e
    if raw is None:
        raise ValueError(f"{str(path)!r} is a safetensors file but not a lamina checkpoint (no 'lamina' metadata)")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r}: checkpoint format {meta.get('format')!r} v{meta.get('format_version')} is not supported "
            f"(this lamina reads {FORMAT} up to v{FORMAT_VERSION}).\nhelp: upgrade lamina"
        )
    return tensors, meta


def load_checkpoint(learn: Learner, name: str | Path, with_opt: bool = True, strict: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer state) saved by `save_checkpoint`; returns the metadata."""
    path = checkpoint_path(learn, name)
    tensors, meta = read_checkpoint(path)
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    device = next(learn.model.parameters(), torch.empty(0)).device
    learn.model.load_state_dict({k: v.to(device) for k, v in model_sd.items()}, strict=strict)
    if with_opt and meta.get("with_opt"):
        if learn.opt is None:
            learn.create_opt()
        assert learn.opt is not None
        # torch's load_state_dict moves each state tensor to its parameter's device (and keeps `step` right)
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("opt.")}
        _load_optimizer_state(learn.opt, opt_tensors, meta["opt"])
    return meta
