"""Export a Learner to one portable file and load it back, without pickle.

The file is a zip with exactly two members: `weights.safetensors` and `learner.json` (format version,
lamina version, the model's registered factory and arguments, the loss, and every data transform by
registered name with its plain-data config). Loading only ever calls factories that lamina (or the
user's own code, before loading) registered, so a file from a stranger cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from lamina import __version__
from lamina.core import (
    Category,
    MultiCategory,
    NotExportableError,
    Pipeline,
    TensorBase,
    Transform,
    lookup_loss,
    lookup_model,
    lookup_transform,
    model_recipe,
    registered_name,
)
from lamina.core.registry import RECIPE_ATTR
from lamina.data import DataLoader, DataLoaders, Datasets
from lamina.data.datasets import Getter
from lamina.train.checkpoint import atomic_write_bytes
from lamina.train.distributed import unwrap_model

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = ["FORMAT", "FORMAT_VERSION", "ExportError", "export_learner", "load_learner", "read_export"]

FORMAT = "lamina.learner"
FORMAT_VERSION = 1
_MEMBERS = {"learner.json", "weights.safetensors"}
_MAX_JSON = 16 * 2**20
_NOT_OURS = "the file was not written by learn.export or was modified; lamina refuses it rather than guess"


class ExportError(ValueError):
    """A file that is not a valid lamina export (or was tampered with)."""


# -- writing -------------------------------------------------------------------------------------------------
def _tfm_entry(t: Transform, where: str) -> dict[str, Any]:
    name = registered_name(t)
    to_config = getattr(t, "to_config", None)
    if name is None or to_config is None:
        cls = f"{type(t).__module__}.{type(t).__qualname__}"
        raise NotExportableError(
            f"export: transform {t.name!r} ({cls}) in {where} has no recipe.\n"
            "help: decorate its class with @register_transform('my_pkg.MyTransform') and give it "
            "to_config() returning its constructor's keyword arguments as plain JSON data"
        )
    config = to_config()
    try:
        json.dumps(config)
    except TypeError as e:
        raise NotExportableError(
            f"export: {type(t).__name__}.to_config() is not plain JSON data: {e}\n"
            "help: return only dicts, lists, strings, numbers, booleans and None from to_config()"
        ) from e
    return {"name": name, "config": config}


def _pipeline_entries(p: Pipeline, where: str) -> list[dict[str, Any]]:
    return [_tfm_entry(t, where) for t in p.tfms if not isinstance(t, Getter)]


def _recipe(learn: Learner) -> dict[str, Any]:
    model = unwrap_model(learn.model)
    rec = model_recipe(model)
    if rec is None:
        raise NotExportableError(
            f"export: the model {type(model).__name__} has no recipe, so it could not be rebuilt without "
            "pickle.\nhelp: build it with a factory decorated by @register_model('my_pkg.my_model') "
            "(lamina's vision_learner does), or save only the weights with learn.save(...)"
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
        raise NotExportableError(
            "export: the DataLoaders were not built from Datasets, so there is no pipeline to save.\n"
            "help: build the data with a DataBlock or an application's DataLoaders factory"
        )
    name, kwargs = rec
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise NotExportableError(
            f"export: the arguments of model factory {name!r} are not plain JSON: {e}\n"
            "help: give the factory only JSON arguments (names, numbers, lists) and build objects inside it"
        ) from e
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lamina_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "model": {"name": name, "kwargs": kwargs},
        "loss": {"name": loss_name, "config": loss.to_config()},  # type: ignore[operator]
        "data": {
            "n_inp": dls.n_inp,
            "types": _types_entry(dls),
            "pipelines": [_pipeline_entries(p, f"element {k}") for k, p in enumerate(dls.dsets.pipelines)],
            "item_tfms": _pipeline_entries(dls.valid.item_tfms, "item_tfms"),
            "batch_tfms": _pipeline_entries(dls.valid.batch_tfms, "batch_tfms"),
        },
    }


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def _known_types() -> dict[str, type]:
    """The element types an export may name: plain values, torch.Tensor and every semantic tensor type
    defined so far (subclasses of TensorBase). A fixed table: nothing is imported by a name from a file."""
    out: dict[str, type] = {
        _type_name(t): t for t in (torch.Tensor, int, float, bool, str, Category, MultiCategory)
    }
    stack: list[type] = [TensorBase]
    while stack:
        cls = stack.pop()
        out[_type_name(cls)] = cls
        stack.extend(cls.__subclasses__())
    return out


def _types_entry(dls: DataLoaders) -> dict[str, list[str]] | None:
    """The semantic type of each element of an item and of a batch, so that a loaded learner decodes its
    predictions (labels, pixels) without any data to learn them from; None when they cannot be named."""
    dl = dls.valid if len(dls.valid.dataset) else dls.train
    try:
        entry = {"item": [_type_name(t) for t in dl.types], "batch": [_type_name(t) for t in dl.batch_types]}
    except Exception:
        return None
    known = _known_types()
    return entry if all(n in known for n in entry["item"] + entry["batch"]) else None


def _resolve_types(entry: Any, where: str) -> tuple[tuple[type, ...], tuple[type, ...]] | None:
    if entry is None:
        return None
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(k), list) and all(isinstance(n, str) for n in entry[k])
        for k in ("item", "batch")
    ):
        raise ExportError(f"{where}: malformed data.types {entry!r}.\nhelp: {_NOT_OURS}")
    known = _known_types()
    unknown = [n for n in entry["item"] + entry["batch"] if n not in known]
    if unknown:
        raise ExportError(
            f"{where}: unknown element types {unknown}.\n"
            "help: import the module that defines them before loading, or check the file's origin"
        )
    return tuple(known[n] for n in entry["item"]), tuple(known[n] for n in entry["batch"])


def export_learner(learn: Learner, path: str | Path) -> Path:
    """Write `learn` to `path` (a zip: weights.safetensors + learner.json), atomically.

    Raises NotExportableError, saying how to fix it, for a model, loss or transform without a recipe.
    """
    path = Path(path)
    recipe = _recipe(learn)
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap_model(learn.model).state_dict().items()}
    weights = save_safetensors(state)
    recipe["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    doc = json.dumps(recipe, indent=1, sort_keys=True).encode()

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("learner.json", doc)
            z.writestr("weights.safetensors", weights)

    atomic_write_bytes(path, write)
    return path


# -- reading -------------------------------------------------------------------------------------------------
def read_export(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """The recipe (migrated to the current format) and the weights' bytes of an export file.

    Checks, before anything is built: a zip of exactly the two members, stored uncompressed and unencrypted
    (no decompression bomb), with safe names; JSON of bounded size; a known format and version; the weights'
    SHA-256.
    """
    path = Path(path)
    where = f"load_learner: {str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{where} does not exist.\nhelp: check the path")
    if not zipfile.is_zipfile(path):
        raise ExportError(
            f"{where} is not a lamina export (not a zip file).\n"
            "help: pass a file written by learn.export(...); lamina never loads pickled learners"
        )
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            bad = [n for n in names if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/")]
            if bad:
                raise ExportError(f"{where} has unsafe member names {bad}; refused.\nhelp: {_NOT_OURS}")
            if sorted(names) != sorted(_MEMBERS):
                raise ExportError(
                    f"{where} has members {sorted(names)}, expected exactly {sorted(_MEMBERS)}; refused.\n"
                    f"help: {_NOT_OURS}"
                )
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                    raise ExportError(
                        f"{where}: member {info.filename!r} is compressed or encrypted; lamina writes them "
                        f"stored as they are. Refused.\nhelp: {_NOT_OURS}"
                    )
            if z.getinfo("learner.json").file_size > _MAX_JSON:
                raise ExportError(f"{where}: learner.json is larger than {_MAX_JSON} bytes; refused")
            raw = z.read("learner.json")
            weights = z.read("weights.safetensors")
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as e:
        raise ExportError(f"{where} is a damaged zip file: {e}\nhelp: {_NOT_OURS}") from e
    try:
        recipe = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ExportError(f"{where}: learner.json is not valid JSON: {e}\nhelp: {_NOT_OURS}") from e
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise ExportError(f"{where} is not a lamina learner export (its format field is not {FORMAT!r})")
    version = recipe.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"{where} has an invalid format_version {version!r}; expected an integer >= 1")
    if version > FORMAT_VERSION:
        raise ExportError(
            f"{where} uses export format v{version}, newer than this lamina ({__version__}) reads "
            f"(v{FORMAT_VERSION}).\nhelp: upgrade lamina"
        )
    expected = recipe.get("weights_sha256")
    if not isinstance(expected, str):
        raise ExportError(f"{where}: learner.json has no weights_sha256 checksum.\nhelp: {_NOT_OURS}")
    if hashlib.sha256(weights).hexdigest() != expected:
        raise ExportError(
            f"{where}: the weights do not match their checksum (the file was modified or damaged).\n"
            "help: export the learner again"
        )
    return _migrate(recipe, version, where), weights


# format version v -> the function that turns a v recipe into a v + 1 recipe. When FORMAT_VERSION becomes 2,
# add `1: _v1_to_v2` here (and a golden v2 file under tests/train/fixtures); old files keep loading.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _migrate(recipe: dict[str, Any], version: int, where: str = "load_learner") -> dict[str, Any]:
    """Bring a recipe of an older format version up to `FORMAT_VERSION`, one version at a time."""
    while version < FORMAT_VERSION:
        step = _MIGRATIONS.get(version)
        if step is None:
            raise ExportError(
                f"{where}: export format v{version} can no longer be read by lamina {__version__}.\n"
                "help: load it with an older lamina and export it again"
            )
        recipe = step(dict(recipe))
        version += 1
        recipe["format_version"] = version
    return recipe


def _tfm_class(entry: Any, where: str) -> tuple[type, dict[str, Any]]:
    """The registered class and config of a transform entry (nothing is built yet)."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("name"), str)
        or not isinstance(entry.get("config"), dict)
    ):
        raise ExportError(f"load_learner: malformed transform entry in {where}: {entry!r}")
    try:
        return lookup_transform(entry["name"]), entry["config"]
    except KeyError as e:
        raise ExportError(f"load_learner: {where}: {e.args[0]}") from None


def _build_tfm(cls: type, config: dict[str, Any], where: str) -> Transform:
    try:
        from_config = getattr(cls, "from_config", None)
        t = from_config(config) if from_config is not None else cls(**config)
    except Exception as e:
        raise ExportError(
            f"load_learner: {where}: cannot rebuild {cls.__name__} from {config!r}: {e}\nhelp: {_NOT_OURS}"
        ) from e
    if not isinstance(t, Transform):
        raise ExportError(f"load_learner: {where}: {cls.__name__} did not build a Transform")
    return t


def _as_list(x: Any, where: str) -> list[Any]:
    if not isinstance(x, list):
        raise ExportError(f"load_learner: {where} should be a list, got {type(x).__name__}")
    return x


def _as_dict(x: Any, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise ExportError(f"load_learner: {where} should be a JSON object, got {type(x).__name__}")
    return x


def load_learner(path: str | Path, cpu: bool = True) -> Learner:
    """Rebuild a Learner from an export: model, weights, loss and the data pipelines for `predict`.

    Nothing in the file is executed: every name is looked up among the registered factories and checked
    before any of them is called, and the weights are safetensors. Import the modules that register your
    own models and transforms first. `cpu=False` puts the model on the default device.

    >>> learn = load_learner("model.lamina")      # doctest: +SKIP
    >>> label, idx, probs = learn.predict(item)   # doctest: +SKIP
    """
    from lamina.train.learner import Learner

    recipe, weights = read_export(path)
    where = f"load_learner: {str(path)!r}"
    try:
        data = _as_dict(recipe["data"], "data")
        pipeline_specs = [
            [_tfm_class(e, f"element {k}") for e in _as_list(p, f"element {k}")]
            for k, p in enumerate(_as_list(data["pipelines"], "pipelines"))
        ]
        item_specs = [_tfm_class(e, "item_tfms") for e in _as_list(data["item_tfms"], "item_tfms")]
        batch_specs = [_tfm_class(e, "batch_tfms") for e in _as_list(data["batch_tfms"], "batch_tfms")]
        n_inp = data["n_inp"]
        types_entry = data.get("types")
        model_spec, loss_spec = _as_dict(recipe["model"], "model"), _as_dict(recipe["loss"], "loss")
        model_name, model_kwargs = model_spec["name"], _as_dict(model_spec["kwargs"], "model kwargs")
        loss_name, loss_config = loss_spec["name"], _as_dict(loss_spec["config"], "loss config")
    except KeyError as e:
        raise ExportError(f"{where} is missing the field {e}.\nhelp: {_NOT_OURS}") from None
    if not isinstance(n_inp, int) or not 1 <= n_inp <= max(1, len(pipeline_specs)):
        raise ExportError(f"{where}: n_inp={n_inp!r} does not fit {len(pipeline_specs)} pipelines")
    if not isinstance(model_name, str) or not isinstance(loss_name, str):
        raise ExportError(f"{where}: the model and loss names must be strings")
    types = _resolve_types(types_entry, where)
    if types is not None and len(types[0]) != len(pipeline_specs):
        raise ExportError(
            f"{where}: data.types names {len(types[0])} elements for {len(pipeline_specs)} pipelines"
        )
    try:
        model_factory = lookup_model(model_name)
        loss_cls = lookup_loss(loss_name)
    except KeyError as e:
        raise ExportError(f"load_learner: {e.args[0]}") from None
    try:
        state = load_safetensors(weights)
    except Exception as e:
        raise ExportError(
            f"{where}: weights.safetensors is unreadable: {e}\n"
            "help: lamina only reads safetensors weights, never pickles; export the learner again"
        ) from e

    # every name is known and the weights are plain tensors: now build
    pipelines = [[_build_tfm(c, cfg, f"element {k}") for c, cfg in p] for k, p in enumerate(pipeline_specs)]
    item_tfms = [_build_tfm(c, cfg, "item_tfms") for c, cfg in item_specs]
    batch_tfms = [_build_tfm(c, cfg, "batch_tfms") for c, cfg in batch_specs]
    try:
        model = model_factory(**model_kwargs)
        loss = loss_cls(**loss_config)
    except Exception as e:
        raise ExportError(
            f"{where}: cannot rebuild model {model_name!r} from {model_kwargs!r} or loss {loss_name!r} "
            f"from {loss_config!r}: {e}\nhelp: {_NOT_OURS}"
        ) from e
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{where}: the factory {model_name!r} did not return a torch.nn.Module")
    _check_state(model.state_dict(), state, path)
    model.load_state_dict(state)
    if model_recipe(model) is None:  # so that the loaded learner can be exported again
        setattr(model, RECIPE_ATTR, (model_name, dict(model_kwargs)))

    device = torch.device("cpu") if cpu else None
    dsets = Datasets([], pipelines, n_inp=n_inp, do_setup=False)

    def loader(split_idx: int) -> DataLoader:
        return DataLoader(
            [],
            split_idx=split_idx,
            device=device,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            dsets=dsets,
            num_workers=0,
        )

    dls = DataLoaders(loader(0), loader(1), loss_func=loss_cls)
    if types is not None:
        # the loaders hold no items to learn their element types from: give them the exported ones
        for dl in (dls.train, dls.valid):
            dl._types, dl._batch_types = types
    learn = Learner(dls, model, loss_func=loss)
    learn.model.eval()
    return learn


def _check_state(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path: str | Path) -> None:
    """The file's tensors must be exactly the model's: same names, shapes and dtypes."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = [
        f"{k}: file {got[k].dtype} {tuple(got[k].shape)} vs model {v.dtype} {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and (tuple(got[k].shape) != tuple(v.shape) or got[k].dtype != v.dtype)
    ]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if extra:
            parts.append(f"unexpected {extra[:5]}")
        if wrong:
            parts.append(f"wrong shapes or dtypes {wrong[:5]}")
        raise ExportError(
            f"load_learner: the weights in {str(path)!r} do not fit the model: {'; '.join(parts)}.\n"
            "help: the file was modified, or written for another architecture"
        )
