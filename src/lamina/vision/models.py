"""Vision models: a timm body without its classifier, lamina's head, and loading of pretrained weights.

`create_vision_model` is a registered factory: an export names it with its arguments, and loading calls
it again (with no pretrained download) before filling in the saved weights.
"""

from __future__ import annotations

import difflib
import itertools
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from torch import nn

from lamina.core import register_model

__all__ = [
    "AdaptiveConcatPool2d",
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


@register_model("vision.classifier")
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
