"""text_classifier_learner and language_model_learner: a transformer body sized from the data, parameter
groups for discriminative learning rates and gradual unfreezing, and the encoder passed between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.text.data import tokenizer_of
from lamina.text.models import (
    TextLM,
    build_config,
    config_dict,
    create_text_classifier,
    create_text_lm,
    load_body_weights,
    read_config,
    read_weights,
    text_splitter,
)
from lamina.text.tokenize import model_path
from lamina.train import Callback, Learner
from lamina.train.optim import OptFactory, adamw

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PretrainedConfig

    from lamina.train import Interpretation

__all__ = [
    "language_model_learner",
    "load_encoder",
    "save_encoder",
    "text_classifier_learner",
    "top_losses_table",
]

ModelLike = str | Path | None


def _config_and_source(
    model: ModelLike | PretrainedConfig | dict[str, Any], pretrained: bool
) -> tuple[dict[str, Any], Path | None]:
    """The recipe config of `model` (a folder / cached name, or a config to start from random weights) and
    the folder to read pretrained weights from (None for random weights)."""
    if model is None or isinstance(model, str | Path):
        folder = model_path(model)
        return read_config(folder), folder if pretrained else None
    cfg = config_dict(model)
    return config_dict(build_config(cfg)), None


def _check_vocab(dls: DataLoaders, cfg: dict[str, Any]) -> None:
    """Every token id the tokenizer makes must have an embedding row."""
    n_tok, n_emb = tokenizer_of(dls).vocab_size, cfg.get("vocab_size")
    if isinstance(n_emb, int) and n_tok > n_emb:
        raise ValueError(
            f"text: the tokenizer makes ids up to {n_tok - 1} but the model embeds only {n_emb} tokens.\n"
            "help: tokenize with the model's own tokenizer (TextDataLoaders(..., model=<the same folder>))"
        )


def text_classifier_learner(
    dls: DataLoaders,
    model: ModelLike | PretrainedConfig | dict[str, Any] = None,
    pretrained: bool = True,
    encoder: str | Path | None = None,
    n_out: int | None = None,
    pool: str = "mean",
    ps: float = 0.1,
    loss_func: Callable[..., torch.Tensor] | None = None,
    metrics: Any = (),
    cbs: Callback | Sequence[Callback] = (),
    lr: float = 1e-3,
    wd: float = 0.01,
    opt_func: OptFactory = adamw,
    path: str | Path = ".",
) -> Learner:
    """A Learner for text classification (single-label, multi-label) or regression on a transformer.

    `model`: a local model folder or cached Hugging Face name (default all-MiniLM-L6-v2, shipped offline),
    whose config.json builds the body and whose weights fill it (`pretrained=False`: random weights); or a
    transformers config (e.g. `BertConfig(...)`) for a randomly initialised model. `encoder`: a file from
    `save_encoder` (a language model fine-tuned on your texts) to fill the body with instead. The head's
    size and the loss come from the data. A pretrained body starts frozen: `fine_tune` trains the head,
    then everything with discriminative learning rates; `freeze_to(-2)` unfreezes the top blocks.

    >>> learn = text_classifier_learner(dls, "all-MiniLM-L6-v2", metrics=accuracy)  # doctest: +SKIP
    >>> learn.fine_tune(2)                                                           # doctest: +SKIP
    """
    n_out = n_out if n_out is not None else dls.c
    if n_out is None:
        raise ValueError(
            "text_classifier_learner: cannot read the number of outputs from the data; pass n_out=..."
        )
    cfg, source = _config_and_source(model, pretrained)
    _check_vocab(dls, cfg)
    net = create_text_classifier(cfg, n_out, pool=pool, ps=ps)
    if source is not None:
        load_body_weights(net.body, source, f"model folder {str(source)!r}")
    if encoder is not None:
        _load_encoder_into(net.body, encoder)
    learn = Learner(
        dls,
        net,
        loss_func=loss_func,
        opt_func=opt_func,
        lr=lr,
        wd=wd,
        metrics=metrics,
        cbs=cbs,
        splitter=text_splitter,
        path=path,
    )
    if source is not None or encoder is not None:
        learn.freeze()
    return learn


def language_model_learner(
    dls: DataLoaders,
    model: ModelLike | PretrainedConfig | dict[str, Any] = None,
    pretrained: bool = True,
    causal: bool | None = None,
    metrics: Any = (),
    cbs: Callback | Sequence[Callback] = (),
    lr: float = 1e-4,
    wd: float = 0.01,
    opt_func: OptFactory = adamw,
    path: str | Path = ".",
) -> Learner:
    """A Learner that goes on pretraining a language model on your own texts (the ULMFiT idea), for
    `TextDataLoaders.from_df(..., is_lm=True)` data. `causal`: next-token prediction (default: what the
    data was built for). Then `save_encoder(learn, "enc.safetensors")` and
    `text_classifier_learner(dls_clas, model, encoder="enc.safetensors")`.

    The language-model head of a folder's weights is used when the file has it; else it starts random
    (tied to the embeddings where the architecture ties them).
    """
    loss = dls.loss_func
    shift = bool(getattr(loss, "shift", False))
    causal = shift if causal is None else causal
    if causal != shift:
        raise ValueError(
            f"language_model_learner: causal={causal} but the data was built for a "
            f"{'causal' if shift else 'masked'} model.\nhelp: build the data with the same causal= setting"
        )
    cfg, source = _config_and_source(model, pretrained)
    _check_vocab(dls, cfg)
    net = create_text_lm(cfg, causal)
    if source is not None:
        _load_lm_weights(net, source)
    return Learner(
        dls,
        net,
        loss_func=loss,
        opt_func=opt_func,
        lr=lr,
        wd=wd,
        metrics=metrics,
        cbs=cbs,
        splitter=text_splitter,
        path=path,
    )


def _load_lm_weights(net: TextLM, folder: Path) -> None:
    """The whole LM from a folder when the file has its head; else the body only."""
    sd = read_weights(folder)
    own = net.model.state_dict()
    if sd and all(k in sd and sd[k].shape == v.shape for k, v in own.items()):
        net.model.load_state_dict({k: sd[k] for k in own})
        return
    load_body_weights(net.body, sd if sd else folder, f"model folder {str(folder)!r}")


def _body(model: nn.Module) -> nn.Module:
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise TypeError(
            f"text: {type(model).__name__} has no transformer body.\n"
            "help: pass a learner from text_classifier_learner or language_model_learner"
        )
    return body


def save_encoder(learn: Learner, path: str | Path) -> Path:
    """Write the transformer body (no head) of a text learner to a safetensors file, for
    `text_classifier_learner(..., encoder=path)` or `load_encoder`."""
    from safetensors.torch import save_file

    from lamina.train.distributed import unwrap_model

    body = _body(unwrap_model(learn.model))
    state = {k: v.detach().cpu().contiguous() for k, v in body.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "lamina.text.encoder"})
    return path


def _load_encoder_into(body: nn.Module, path: str | Path) -> None:
    from safetensors.torch import load_file

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"text: encoder file {str(file)!r} not found.\nhelp: write it with save_encoder(learn, path)"
        )
    load_body_weights(body, load_file(str(file)), f"encoder {str(file)!r}")


def load_encoder(learn: Learner, path: str | Path) -> Learner:
    """Fill a text learner's transformer body with a `save_encoder` file (same architecture and size)."""
    from lamina.train.distributed import unwrap_model

    _load_encoder_into(_body(unwrap_model(learn.model)), path)
    return learn


def top_losses_table(interp: Interpretation, k: int = 9, largest: bool = True) -> pd.DataFrame:
    """The `k` texts with the largest losses: text, target, prediction, loss (and probability)."""
    import pandas as pd

    from lamina.data import DataLoader

    losses, idxs = interp.top_losses(k, largest=largest)
    targs = interp.targs[0] if isinstance(interp.targs, tuple) else interp.targs
    n = interp.learn.dls.n_inp
    dl = interp.dl
    if not isinstance(dl, DataLoader) or targs is None:
        raise ValueError("top_losses_table: needs an Interpretation over a lamina DataLoader with targets")
    inp = tuple(x[idxs] for x in interp.inputs[:n])
    actual = dl.decode_batch((*inp, targs[idxs]), max_n=len(idxs))
    predicted = dl.decode_batch((*inp, interp.decoded[idxs]), max_n=len(idxs))
    rows = []
    for i, a, p, loss in zip(idxs.tolist(), actual, predicted, losses.tolist(), strict=True):
        row: dict[str, Any] = {
            "text": str(a[0])[:300],
            "target": str(a[n]),
            "prediction": str(p[n]),
            "loss": round(loss, 4),
        }
        pr, d = interp.preds[i], interp.decoded[i]
        if pr.ndim == 1 and d.ndim == 0:
            row["probability"] = round(float(pr[int(d)]), 4)
        rows.append(row)
    return pd.DataFrame(rows)
