"""Vision models: a timm body without its classifier, lamina's head, and loading of pretrained weights.

`create_vision_model` is a registered factory: an export names it with its arguments, and loading calls
it again (with no pretrained download) before filling in the saved weights.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from torch import nn

from lamina.core import register_model

__all__ = [
    "MAX_ARCH_LEN",
    "AdaptiveConcatPool2d",
    "check_arch_name",
    "create_body",
    "create_head",
    "create_vision_model",
    "load_pretrained_body",
    "num_features",
    "vision_splitter",
]


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling side by side: (B, C, H, W) -> (B, 2C, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], dim=1)


def create_head(
    nf: int, n_out: int, lin_ftrs: int | None = 512, ps: float = 0.5, concat_pool: bool = True
) -> nn.Sequential:
    """Pool, flatten, then BatchNorm-Dropout-Linear blocks: (B, nf, H, W) -> (B, n_out)."""
    pool: nn.Module = AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1)
    n_in = nf * 2 if concat_pool else nf
    layers: list[nn.Module] = [pool, nn.Flatten()]
    sizes = [n_in, lin_ftrs, n_out] if lin_ftrs else [n_in, n_out]
    drops = [ps / 2, ps] if lin_ftrs else [ps]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.BatchNorm1d(a), nn.Dropout(drops[i]), nn.Linear(a, b)]
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def create_body(arch: str, n_in: int = 3, pretrained: bool = False) -> nn.Module:
    """A timm model without classifier or pooling: (B, n_in, H, W) -> (B, C, h, w) features."""
    import timm

    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=0, global_pool="", in_chans=n_in)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "Unknown" in str(e):
            close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
            raise ValueError(
                f"vision_learner: unknown architecture {arch!r}; closest timm names: {close}.\n"
                "help: pass a name from timm.list_models(), an nn.Module, or a callable returning one"
            ) from e
        raise


def num_features(body: nn.Module, n_in: int = 3) -> int:
    """Channels of the body's output, measured with one dummy input (some timm bodies add a conv head after
    their `num_features`, so the attribute alone can be wrong)."""
    cfg = getattr(body, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (n_in, 64, 64))[1:] if cfg.get("fixed_input_size") else (64, 64)
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            p = next(body.parameters(), None)
            x = torch.zeros(1, n_in, *size, device=p.device if p is not None else "cpu")
            out = body(x)
    finally:
        body.train(was_training)
    if out.ndim != 4:
        raise ValueError(
            f"vision_learner: the body returns shape {tuple(out.shape)}, "
            "expected a feature map (B, C, H, W).\n"
            "help: pass a body without its pooling/classifier (timm: num_classes=0, global_pool='')"
        )
    return int(out.shape[1])


MAX_ARCH_LEN = 128
_ARCH_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")


def check_arch_name(arch: object) -> str:
    """`arch` if it is a timm architecture name as `timm.list_models()` lists it (optionally with a
    pretrained tag: 'resnet18.a1_in1k'); a name that would make timm read the network or the disk
    ('hf-hub:...', 'local-dir:...', a path) is refused with ValueError."""
    import timm

    if not isinstance(arch, str) or not 0 < len(arch) <= MAX_ARCH_LEN or not _ARCH_CHARS.fullmatch(arch):
        shown = repr(arch)[:60] + ("..." if len(repr(arch)) > 60 else "")
        raise ValueError(
            f"architecture {shown} is not a plain timm name (letters, digits, '_', '.', '-', at most "
            f"{MAX_ARCH_LEN} characters; no 'hf-hub:', 'local-dir:' or paths)"
        )
    base = arch.split(".", 1)[0]
    if base not in set(timm.list_models()):
        raise ValueError(f"architecture {arch!r} is not one that timm.list_models() knows")
    return arch


def _positive_int(kwargs: Mapping[str, Any], key: str, default: int | None = None) -> int:
    v = kwargs.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{key}={v!r} is not a positive integer")
    return v


def _check_n_in(n_in: int, shapes: Mapping[str, tuple[int, ...]], prefix: str) -> None:
    """Some convolution of the body must take `n_in` channels (its stem)."""
    if not any(k.startswith(prefix) and len(s) == 4 and s[1] == n_in for k, s in shapes.items()):
        raise ValueError(f"n_in={n_in} but no convolution in the weights takes {n_in} channels")


def _check_classifier_recipe(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """A `create_vision_model` recipe against the weights' shapes, before anything is built."""
    check_arch_name(kwargs.get("arch"))
    n_out, n_in = _positive_int(kwargs, "n_out"), _positive_int(kwargs, "n_in", 3)
    lin_ftrs, ps = kwargs.get("lin_ftrs", 512), kwargs.get("ps", 0.5)
    if lin_ftrs is not None and (not isinstance(lin_ftrs, int) or isinstance(lin_ftrs, bool) or lin_ftrs < 0):
        raise ValueError(f"lin_ftrs={lin_ftrs!r} is not None or a non-negative integer")
    if not isinstance(ps, (int, float)) or isinstance(ps, bool) or not (math.isfinite(ps) and 0 <= ps <= 1):
        raise ValueError(f"ps={ps!r} is not a dropout probability in [0, 1]")
    if not isinstance(kwargs.get("concat_pool", True), bool):
        raise ValueError(f"concat_pool={kwargs.get('concat_pool')!r} is not a boolean")
    # the head's Linear layers, in order: 1.<i>.weight of rank 2
    linears = sorted(
        (int(m.group(1)), s)
        for k, s in shapes.items()
        if (m := re.fullmatch(r"1\.(\d+)\.weight", k)) and len(s) == 2
    )
    if not linears or linears[-1][1][0] != n_out:
        got = linears[-1][1][0] if linears else None
        raise ValueError(f"n_out={n_out} but the head's last layer in the weights has {got} outputs")
    if lin_ftrs and (len(linears) != 2 or linears[0][1][0] != lin_ftrs):
        raise ValueError(f"lin_ftrs={lin_ftrs} does not match the head's layers in the weights")
    _check_n_in(n_in, shapes, "0.")


@register_model("vision.classifier", check=_check_classifier_recipe)
def create_vision_model(
    arch: str,
    n_out: int,
    n_in: int = 3,
    lin_ftrs: int | None = 512,
    ps: float = 0.5,
    concat_pool: bool = True,
) -> nn.Sequential:
    """`nn.Sequential(body, head)` for a timm architecture name (randomly initialised)."""
    body = create_body(arch, n_in=n_in)
    return nn.Sequential(body, create_head(num_features(body, n_in), n_out, lin_ftrs, ps, concat_pool))


def vision_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two groups, body then head, for `freeze()` and `lr=slice(lo, hi)`."""
    return [list(model[0].parameters()), list(model[1].parameters())]  # type: ignore[index]


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # a timm / torch checkpoint: read with weights_only=True, which refuses arbitrary pickled objects
    sd: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def load_pretrained_body(
    body: nn.Module, source: str | Path | bool, arch: str | None = None, n_in: int = 3
) -> tuple[float, ...] | None:
    """Fill `body` with pretrained weights: `True` uses timm's own download (hub); a path loads a local
    safetensors or timm checkpoint file. The classifier in the file is dropped; every other body tensor
    must be there with the right shape. Returns the weights' normalization stats (mean + std) if known."""
    if source is False:
        return None
    if source is True:
        if arch is None:
            raise ValueError("pretrained=True needs a timm architecture name")
        ref = _timm_pretrained(arch, n_in)
        body.load_state_dict(ref.state_dict())
        cfg: dict[str, Any] = dict(getattr(ref, "pretrained_cfg", None) or {})
        return (*cfg.get("mean", ()), *cfg.get("std", ()))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"pretrained weights {str(path)!r} not found.\nhelp: check the path, or pretrained=False"
        )
    sd = _read_weights(path)
    own = body.state_dict()
    usable = {k: v for k, v in sd.items() if k in own}
    missing = [k for k in own if k not in usable]
    wrong = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in usable.items()
        if v.shape != own[k].shape
    ]
    if missing or wrong:
        raise ValueError(
            f"pretrained weights {str(path)!r} do not fit the body"
            f"{' (' + arch + ')' if arch else ''}: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            f"{'; wrong shapes ' + str(wrong[:3]) if wrong else ''}.\n"
            "help: the file must hold weights for the same architecture (its classifier may differ)"
        )
    body.load_state_dict(usable)
    return None


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm_pretrained(arch: str, n_in: int) -> nn.Module:
    """timm's pretrained body: from the local Hugging Face cache when the weights are there (no network),
    else downloaded; an unreachable hub fails at once with the ways out instead of a minute of retries."""
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(arch)
    hub_id = getattr(cfg, "hf_hub_id", None)
    cached = next(
        (p for f in _WEIGHT_FILES if hub_id and isinstance(p := try_to_load_from_cache(hub_id, f), str)), None
    )
    where = f"{arch!r} ({hub_id or 'timm'})"
    if cached is None and hub_id and not _reachable(constants.ENDPOINT):
        raise ValueError(
            f"vision_learner: pretrained=True needs timm's weights for {where}, which are not in the local "
            f"cache ({constants.HF_HUB_CACHE}), and the hub {constants.ENDPOINT} cannot be reached.\n"
            "help: pass pretrained='weights.safetensors' (a local file for the same architecture), "
            "pretrained=False to train from scratch, or download the weights once on a machine with network"
        )
    overlay = {"file": cached} if cached is not None else None
    try:
        return timm.create_model(
            arch,
            pretrained=True,
            num_classes=0,
            global_pool="",
            in_chans=n_in,
            pretrained_cfg_overlay=overlay,
        )
    except (OSError, RuntimeError) as e:
        raise ValueError(
            f"vision_learner: could not load timm's pretrained weights for {where}: {type(e).__name__}: "
            f"{str(e)[:300]}\n"
            "help: pass pretrained='weights.safetensors' (a local file for the same architecture), "
            "or pretrained=False to train from scratch"
        ) from e


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
