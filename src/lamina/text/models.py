"""Text models: a Hugging Face transformer body (built from its config, never remote code) with lamina's head.

The registered factories take the transformers config as a plain dict, so an export names the model by
its config and `load_learner` rebuilds it with the config class of an allow-listed `model_type`, then
fills in the saved weights. Inputs are (B, L) token ids padded with -1 (`TensorText.PAD`): the attention
mask is `ids >= 0`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from lamina.core import register_model

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = [
    "ALLOWED_MODEL_TYPES",
    "POOLINGS",
    "TextClassifier",
    "TextLM",
    "build_config",
    "config_dict",
    "create_text_classifier",
    "create_text_lm",
    "load_body_weights",
    "read_config",
    "read_weights",
    "text_splitter",
]

# architectures lamina builds from a config: transformers' own classes (no auto_map, no remote code)
ALLOWED_MODEL_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "gpt2",
        "gpt_neox",
        "llama",
        "mistral",
        "modernbert",
        "mpnet",
        "opt",
        "qwen2",
        "roberta",
        "xlm-roberta",
    }
)
POOLINGS = ("mean", "cls", "last")
# config keys that name files, hubs, remote code or bookkeeping: never part of a recipe
_DROPPED_KEYS = frozenset(
    {
        "_name_or_path",
        "auto_map",
        "architectures",
        "id2label",
        "label2id",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "_commit_hash",
        "custom_pipelines",
        "finetuning_task",
        "task_specific_params",
        "trust_remote_code",
        "quantization_config",
    }
)
_MAX_WIDTH = 1 << 16  # hidden sizes, layers, heads, vocabulary: sane bounds before anything is built
_MAX_VOCAB = 1 << 22


def _plain(v: Any) -> bool:
    if v is None or isinstance(v, bool | int | str):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list | tuple):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def config_dict(config: PretrainedConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A transformers config as the plain dict a recipe holds: no paths, labels, remote-code maps or
    other non-JSON values."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in d.items()
        if k not in _DROPPED_KEYS and not k.startswith("_") and _plain(v)
    }


def check_config(cfg: Any) -> str:
    """The `model_type` of a recipe's config dict, which must be plain and allow-listed; else ValueError."""
    if not isinstance(cfg, dict):
        raise ValueError(f"config must be a dict, got {type(cfg).__name__}")
    mt = cfg.get("model_type")
    if mt not in ALLOWED_MODEL_TYPES:
        raise ValueError(
            f"model_type {mt!r} is not one lamina builds (allowed: {', '.join(sorted(ALLOWED_MODEL_TYPES))})"
        )
    bad = sorted(k for k in cfg if k in _DROPPED_KEYS or not isinstance(k, str))
    if bad:
        raise ValueError(f"the config holds keys a recipe may not: {bad}")
    if not _plain(cfg):
        raise ValueError("the config holds values that are not plain JSON")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "n_embd"):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= _MAX_WIDTH):
            raise ValueError(f"config {key}={v!r} is not a positive integer <= {_MAX_WIDTH}")
    v = cfg.get("vocab_size")
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= _MAX_VOCAB):
        raise ValueError(f"config vocab_size={v!r} is not a positive integer <= {_MAX_VOCAB}")
    return str(mt)


def build_config(cfg: Mapping[str, Any]) -> PretrainedConfig:
    """The transformers config object for a recipe's dict, by the config class of its model_type."""
    from transformers import CONFIG_MAPPING

    d = dict(cfg)
    mt = check_config(d)
    if mt not in CONFIG_MAPPING:
        raise ValueError(f"this transformers version has no model_type {mt!r}")
    d.pop("model_type")
    return CONFIG_MAPPING[mt](**d)


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json as a recipe dict (refused for a model_type outside the allow-list)."""
    import json

    file = folder / "config.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"text: the model folder {str(folder)!r} has no config.json.\n"
            "help: pass a folder written by save_pretrained (config.json + weights + tokenizer.json)"
        )
    raw = json.loads(file.read_text(encoding="utf-8"))
    if raw.get("model_type") not in ALLOWED_MODEL_TYPES:
        raise ValueError(
            f"text: the model in {str(folder)!r} is of type {raw.get('model_type')!r}, which lamina does not "
            "build (it never runs a model's own code).\n"
            f"help: use one of {', '.join(sorted(ALLOWED_MODEL_TYPES))}"
        )
    return config_dict(build_config(config_dict(raw)))


def _base_model(config: PretrainedConfig) -> nn.Module:
    """transformers' bare model class for the config (BertModel, ...); without its pooler when it has one."""
    import inspect

    from transformers import MODEL_MAPPING

    cls: Any = cast(Any, MODEL_MAPPING)[type(config)]
    kwargs = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls).parameters else {}
    model: nn.Module = cls(config, **kwargs)
    return model


def _hidden_size(config: PretrainedConfig) -> int:
    for key in ("hidden_size", "dim", "d_model", "n_embd"):
        v = getattr(config, key, None)
        if isinstance(v, int):
            return v
    raise ValueError(f"text: cannot read the hidden size of a {type(config).__name__}")


class TextClassifier(nn.Module):
    """Transformer body, pooled token states, dropout and a linear head: (B, L) ids -> (B, n_out).

    `pool`: "mean" over the real tokens, "cls" the first token's state, "last" the last real token's (the
    one a causal model has read everything by)."""

    def __init__(self, body: nn.Module, n_out: int, pool: str = "mean", ps: float = 0.1) -> None:
        super().__init__()
        self.body, self.pool = body, pool
        hidden = _hidden_size(body.config)  # type: ignore[arg-type]
        self.head = nn.Sequential(nn.Dropout(ps), nn.Linear(hidden, n_out))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids >= 0  # (B, L): -1 is padding
        h = self.body(input_ids=ids.clamp_min(0), attention_mask=mask.long()).last_hidden_state  # (B, L, H)
        if self.pool == "cls":
            pooled = h[:, 0]
        elif self.pool == "last":
            last = (mask.sum(1) - 1).clamp_min(0)  # (B,)
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled)

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"


def _positive_int(kwargs: Mapping[str, Any], key: str) -> int:
    v = kwargs.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{key}={v!r} is not a positive integer")
    return v


def _check_classifier(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """A `text.classifier` recipe against the weights' shapes, before anything is built."""
    check_config(kwargs.get("config"))
    n_out = _positive_int(kwargs, "n_out")
    if kwargs.get("pool", "mean") not in POOLINGS:
        raise ValueError(f"pool={kwargs.get('pool')!r} is not one of {POOLINGS}")
    ps = kwargs.get("ps", 0.1)
    if not isinstance(ps, int | float) or isinstance(ps, bool) or not (math.isfinite(ps) and 0 <= ps <= 1):
        raise ValueError(f"ps={ps!r} is not a dropout probability in [0, 1]")
    head = shapes.get("head.1.weight")
    if head is None or len(head) != 2 or head[0] != n_out:
        raise ValueError(f"n_out={n_out} but the head in the weights is {head}")


@register_model("text.classifier", check=_check_classifier)
def create_text_classifier(
    config: dict[str, Any], n_out: int, pool: str = "mean", ps: float = 0.1
) -> TextClassifier:
    """A `TextClassifier` (randomly initialised) for a transformers config given as a plain dict."""
    if pool not in POOLINGS:
        raise ValueError(f"text classifier: pool={pool!r}; expected one of {POOLINGS}")
    return TextClassifier(_base_model(build_config(config)), n_out, pool=pool, ps=ps)


class TextLM(nn.Module):
    """A transformers language model over -1-padded ids: (B, L) -> (B, L, vocab) logits. `causal`: next
    token prediction (GPT-style); else masked tokens (BERT-style)."""

    def __init__(self, model: nn.Module, causal: bool) -> None:
        super().__init__()
        self.model, self.causal = model, causal

    @property
    def body(self) -> nn.Module:
        """The bare transformer inside (what `save_encoder` writes)."""
        body: nn.Module = cast(Any, self.model).base_model
        return body

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids >= 0
        return self.model(input_ids=ids.clamp_min(0), attention_mask=mask.long()).logits

    def extra_repr(self) -> str:
        return f"causal={self.causal}"


def _check_lm(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """A `text.lm` recipe, before anything is built (the weights' shapes are compared after a meta build)."""
    check_config(kwargs.get("config"))
    if not isinstance(kwargs.get("causal"), bool):
        raise ValueError(f"causal={kwargs.get('causal')!r} is not a bool")


@register_model("text.lm", check=_check_lm)
def create_text_lm(config: dict[str, Any], causal: bool) -> TextLM:
    """A `TextLM` (randomly initialised) for a transformers config given as a plain dict."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    cfg = build_config(config)
    table: Any = MODEL_FOR_CAUSAL_LM_MAPPING if causal else MODEL_FOR_MASKED_LM_MAPPING
    if type(cfg) not in table:
        kind = "causal" if causal else "masked"
        raise ValueError(
            f"text: transformers has no {kind} language model for model_type {cfg.model_type!r}.\n"
            f"help: pass causal={not causal}, or another model"
        )
    return TextLM(table[type(cfg)](cfg), causal)


# -- weights -------------------------------------------------------------------------------------------------
def _weight_files(folder: Path) -> list[Path]:
    import json

    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        f = folder / index
        if f.is_file():
            names = sorted(set(json.loads(f.read_text())["weight_map"].values()))
            return [folder / n for n in names]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    return []


def _read(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    sd = torch.load(str(file), map_location="cpu", weights_only=True)  # refuses pickled objects
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder's weight files (empty when it has none)."""
    sd: dict[str, torch.Tensor] = {}
    for f in _weight_files(folder):
        sd.update(_read(f))
    return sd


def load_body_weights(body: nn.Module, source: Path | dict[str, torch.Tensor], where: str) -> None:
    """Fill a bare transformer with a checkpoint's weights: a model folder (model.safetensors, sharded or
    not, or pytorch_model.bin read with weights_only) or a state dict. Keys may carry the task model's
    prefix ('bert.', 'roberta.', ...); heads in the file are ignored; every body tensor must be there."""
    if isinstance(source, dict):
        sd = source
    else:
        files = _weight_files(source)
        if not files:
            raise FileNotFoundError(
                f"text: {where} has no weights (model.safetensors or pytorch_model.bin).\n"
                "help: pass pretrained=False to start from random weights, or a folder with weights"
            )
        sd = {}
        for f in files:
            sd.update(_read(f))
    own = body.state_dict()
    prefix = getattr(body, "base_model_prefix", "") + "."
    usable: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        key = k if k in own else k.removeprefix(prefix) if k.startswith(prefix) else None
        if key in own:
            usable[key] = v
    missing = [k for k in own if k not in usable]
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in usable.items()
        if v.shape != own[k].shape
    ]
    if missing or wrong:
        raise ValueError(
            f"text: the weights of {where} do not fit the model built from its config: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
            f"{'; wrong shapes ' + str(wrong[:3]) if wrong else ''}.\n"
            "help: the weights must be for the same architecture and size as config.json says"
        )
    body.load_state_dict(usable, strict=False)


# -- parameter groups ----------------------------------------------------------------------------------------
def _layer_list(body: nn.Module) -> nn.ModuleList | None:
    """The transformer's list of blocks: its longest ModuleList."""
    lists = [m for m in body.modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=len) if lists else None


def text_splitter(model: nn.Module, n_chunks: int = 4) -> list[list[nn.Parameter]]:
    """Parameter groups, bottom to top: embeddings (and whatever is outside the blocks), the transformer
    blocks in up to `n_chunks` groups, then the head. `freeze()` trains the head only, `freeze_to(-2)` the
    top blocks too, and `lr=slice(lo, hi)` gives the embeddings lo and the head hi."""
    body: nn.Module = model.body  # type: ignore[assignment]
    in_body = {id(p) for p in body.parameters()}
    head = [p for p in model.parameters() if id(p) not in in_body]
    layers = _layer_list(body)
    if layers is None or len(layers) == 0:
        return [list(body.parameters()), head]
    in_layers = {id(p) for p in layers.parameters()}
    rest = [p for p in body.parameters() if id(p) not in in_layers]
    k = min(n_chunks, len(layers))
    bounds = [round(i * len(layers) / k) for i in range(k + 1)]
    chunks = [
        [p for b in list(layers)[lo:hi] for p in b.parameters()] for lo, hi in itertools.pairwise(bounds)
    ]
    return [rest, *chunks, head] if head else [rest, *chunks]
