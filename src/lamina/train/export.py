"""Export a Learner to one portable file and load it back, without pickle.

The file is a zip with exactly two members: `weights.safetensors` and `learner.json` (format version,
lamina version, the model's registered factory and arguments, the loss, and every data transform by
registered name with its plain-data config). Loading only ever calls factories that lamina (or the
user's own code, before loading) registered, so a file from a stranger cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from lamina import __version__
from lamina.core import (
    NotExportableError,
    Pipeline,
    Transform,
    lookup_loss,
    lookup_model,
    lookup_transform,
    model_recipe,
    registered_name,
)
from lamina.data import DataLoader, DataLoaders, Datasets
from lamina.data.datasets import Getter
from lamina.train.checkpoint import atomic_write_bytes

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = ["FORMAT", "FORMAT_VERSION", "ExportError", "export_learner", "load_learner", "read_export"]

FORMAT = "lamina.learner"
FORMAT_VERSION = 1
_MEMBERS = {"learner.json", "weights.safetensors"}
_MAX_JSON = 16 * 2**20


class ExportError(ValueError):
    """A file that is not a valid lamina export (or was tampered with)."""


# -- writing ---------------------------------------------------------------------------------------------------
def _tfm_entry(t: Transform, where: str) -> dict[str, Any]:
    name = registered_name(t)
    to_config = getattr(t, "to_config", None)
    if name is None or to_config is None:
        raise NotExportableError(
            f"export: transform {t.name!r} ({type(t).__module__}.{type(t).__qualname__}) in {where} has no recipe.\n"
            "help: decorate its class with @register_transform('my_pkg.MyTransform') and give it "
            "to_config() returning its constructor's keyword arguments as plain JSON data"
        )
    config = to_config()
    try:
        json.dumps(config)
    except TypeError as e:
        raise NotExportableError(f"export: {type(t).__name__}.to_config() is not plain JSON data: {e}") from e
    return {"name": name, "config": config}


def _pipeline_entries(p: Pipeline, where: str) -> list[dict[str, Any]]:
    return [_tfm_entry(t, where) for t in p.tfms if not isinstance(t, Getter)]


def _recipe(learn: Learner) -> dict[str, Any]:
    rec = model_recipe(learn.model)
    if rec is None:
        raise NotExportableError(
            f"export: the model {type(learn.model).__name__} has no recipe, so it could not be rebuilt without pickle.\n"
            "help: build it with a factory decorated by @register_model('my_model') (lamina's vision_learner does)"
        )
    loss = learn.loss_func
    loss_name = registered_name(loss)
    if loss_name is None or not hasattr(loss, "to_config"):
        raise NotExportableError(
            f"export: the loss {type(loss).__name__} has no recipe.\n"
            "help: use a lamina loss or register yours with @register_loss('my_loss') and give it to_config()"
        )
    dls = learn.dls
    if dls.dsets is None:
        raise NotExportableError("export: the DataLoaders were not built from Datasets, so there is no pipeline to save")
    name, kwargs = rec
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise NotExportableError(f"export: the arguments of model factory {name!r} are not plain JSON: {e}") from e
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lamina_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "model": {"name": name, "kwargs": kwargs},
        "loss": {"name": loss_name, "config": loss.to_config()},  # type: ignore[operator]
        "data": {
            "n_inp": dls.n_inp,
            "pipelines": [_pipeline_entries(p, f"element {k}") for k, p in enumerate(dls.dsets.pipelines)],
            "item_tfms": _pipeline_entries(dls.valid.item_tfms, "item_tfms"),
            "batch_tfms": _pipeline_entries(dls.valid.batch_tfms, "batch_tfms"),
        },
    }


def export_learner(learn: Learner, path: str | Path) -> Path:
    """Write `learn` to `path` (a zip: weights.safetensors + learner.json), atomically."""
    path = Path(path)
    recipe = _recipe(learn)
    state = {k: v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    weights = save_safetensors(state)
    recipe["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    doc = json.dumps(recipe, indent=1, sort_keys=True).encode()

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("learner.json", doc)
            z.writestr("weights.safetensors", weights)

    atomic_write_bytes(path, write)
    return path


# -- reading ---------------------------------------------------------------------------------------------------
def read_export(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The recipe and the weights' bytes of an export file, after checking its structure."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_learner: {str(path)!r} does not exist.\nhelp: check the path")
    if not zipfile.is_zipfile(path):
        raise ExportError(
            f"load_learner: {str(path)!r} is not a lamina export (not a zip file).\n"
            "help: pass a file written by learn.export(...); lamina never loads pickled learners"
        )
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        bad = [n for n in names if n.startswith("/") or ".." in Path(n).parts or "\\" in n]
        if bad:
            raise ExportError(f"load_learner: {str(path)!r} has unsafe member names {bad}; refused")
        if set(names) != _MEMBERS or len(names) != len(_MEMBERS):
            raise ExportError(
                f"load_learner: {str(path)!r} has members {sorted(names)}, expected exactly {sorted(_MEMBERS)}; "
                "refused (it was not written by lamina or was modified)"
            )
        if z.getinfo("learner.json").file_size > _MAX_JSON:
            raise ExportError(f"load_learner: learner.json in {str(path)!r} is too large")
        raw = z.read("learner.json")
        weights = z.read("weights.safetensors")
    try:
        recipe = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ExportError(f"load_learner: learner.json in {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise ExportError(f"load_learner: {str(path)!r} is not a lamina learner export (format field)")
    version = recipe.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ExportError(f"load_learner: {str(path)!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ExportError(
            f"load_learner: {str(path)!r} uses export format v{version}, newer than this lamina "
            f"({__version__}) reads (v{FORMAT_VERSION}).\nhelp: upgrade lamina"
        )
    expected = recipe.get("weights_sha256")
    if expected is not None and hashlib.sha256(weights).hexdigest() != expected:
        raise ExportError(f"load_learner: the weights in {str(path)!r} do not match their checksum (file modified)")
    return _migrate(recipe, version), weights


def _migrate(recipe: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring an older recipe up to the current format (v1 is the first; later versions add steps here)."""
    return recipe


def _build_tfm(entry: Any, where: str) -> Transform:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("config"), dict):
        raise ExportError(f"load_learner: malformed transform entry in {where}: {entry!r}")
    try:
        cls = lookup_transform(entry["name"])
    except KeyError as e:
        raise ExportError(f"load_learner: {where}: {e.args[0]}") from None
    config = entry["config"]
    try:
        from_config = getattr(cls, "from_config", None)
        t = from_config(config) if from_config is not None else cls(**config)
    except Exception as e:
        raise ExportError(f"load_learner: {where}: cannot rebuild {entry['name']} from {config!r}: {e}") from e
    return t  # type: ignore[no-any-return]


def _as_list(x: Any, where: str) -> list[Any]:
    if not isinstance(x, list):
        raise ExportError(f"load_learner: {where} should be a list, got {type(x).__name__}")
    return x


def load_learner(path: str | Path, cpu: bool = True) -> Learner:
    """Rebuild a Learner from an export: model, weights, loss and the data pipelines for `predict`."""
    from lamina.train.learner import Learner

    recipe, weights = read_export(path)
    try:
        data = recipe["data"]
        pipelines = [
            [_build_tfm(e, f"element {k}") for e in _as_list(p, f"element {k}")]
            for k, p in enumerate(_as_list(data["pipelines"], "pipelines"))
        ]
        item_tfms = [_build_tfm(e, "item_tfms") for e in _as_list(data["item_tfms"], "item_tfms")]
        batch_tfms = [_build_tfm(e, "batch_tfms") for e in _as_list(data["batch_tfms"], "batch_tfms")]
        n_inp = int(data["n_inp"])
        model_name, model_kwargs = recipe["model"]["name"], recipe["model"]["kwargs"]
        loss_name, loss_config = recipe["loss"]["name"], recipe["loss"]["config"]
    except (KeyError, TypeError) as e:
        raise ExportError(f"load_learner: {str(path)!r} is missing or has a malformed field: {e}") from e
    if not isinstance(model_kwargs, dict) or not isinstance(loss_config, dict):
        raise ExportError("load_learner: model kwargs and loss config must be JSON objects")
    try:
        model = lookup_model(model_name)(**model_kwargs)
        loss = lookup_loss(loss_name)(**loss_config)
    except KeyError as e:
        raise ExportError(f"load_learner: {e.args[0]}") from None
    except Exception as e:
        raise ExportError(f"load_learner: cannot rebuild model {model_name!r} from {model_kwargs!r}: {e}") from e

    try:
        state = load_safetensors(weights)
    except Exception as e:
        raise ExportError(f"load_learner: weights.safetensors in {str(path)!r} is unreadable: {e}") from e
    _check_state(model.state_dict(), state, path)
    model.load_state_dict(state)

    device = torch.device("cpu") if cpu else None
    dsets = Datasets([], pipelines, n_inp=n_inp, do_setup=False)
    kw: dict[str, Any] = {"device": device, "item_tfms": item_tfms, "batch_tfms": batch_tfms, "dsets": dsets, "num_workers": 0}
    dls = DataLoaders(DataLoader([], split_idx=0, **kw), DataLoader([], split_idx=1, **kw), loss_func=type(loss))
    learn = Learner(dls, model, loss_func=loss)
    learn.model.eval()
    return learn


def _check_state(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path: str | Path) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and tuple(got[k].shape) != tuple(v.shape)
    ]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if extra:
            parts.append(f"unexpected {extra[:5]}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:5]}")
        raise ExportError(
            f"load_learner: the weights in {str(path)!r} do not fit the model: {'; '.join(parts)}.\n"
            "help: the file was modified, or written for another architecture"
        )


def _bytes_io(b: bytes) -> io.BytesIO:
    return io.BytesIO(b)
