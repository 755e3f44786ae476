"""Export a Learner to one portable file and load it back, without pickle.

The file is a zip with exactly two members: `weights.safetensors` and `learner.json` (format version,
lamina version, the model's registered factory and arguments, the loss, and every data transform by
registered name with its plain-data config). Loading only ever calls factories that lamina (or the
user's own code, before loading) registered, so a file from a stranger cannot run code.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
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
    atomic_write_bytes,
    lookup_loaders,
    lookup_loss,
    lookup_model,
    lookup_transform,
    model_recipe,
    registered_name,
)
from lamina.core.registry import RECIPE_ATTR, lookup_model_check
from lamina.data import DataLoader, DataLoaders, Datasets
from lamina.data.datasets import Getter
from lamina.train._export_checks import (
    MAX_NAME_LEN,
    AllocationBudget,
    ExportError,
    OverBudgetError,
    TensorSpec,
    build_on_meta,
    check_finite,
    compare_structure,
    loads_bounded,
    output_width,
    read_header,
)
from lamina.train.distributed import unwrap_model

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = [
    "APPLICATIONS_GROUP",
    "FORMAT",
    "FORMAT_VERSION",
    "ExportError",
    "export_learner",
    "import_applications",
    "load_learner",
    "read_export",
]

FORMAT = "lamina.learner"
# the entry-point group where an application package declares itself (pyproject.toml), by its names' prefix
APPLICATIONS_GROUP = "lamina.applications"
FORMAT_VERSION = 1
_MEMBERS = {"learner.json", "weights.safetensors"}
_MAX_JSON = 16 * 2**20
_NOT_OURS = "the file was not written by learn.export or was modified; lamina refuses it rather than guess"
# a model may hold this many bytes more than its weights (non-persistent buffers), and take this many
# times its weights' bytes to build (temporaries of its initialisation)
_SLACK_BYTES = 64 * 2**20
_BUILD_FACTOR = 4


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
    own_recipe = getattr(dls, "export_recipe", None)
    if dls.dsets is None and not callable(own_recipe):
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
    data: dict[str, Any]
    if callable(own_recipe):  # e.g. a table: the loaders carry their own processing state
        loaders_name = registered_name(type(dls))
        if loaders_name is None:
            raise NotExportableError(
                f"export: {type(dls).__name__} has export_recipe() but is not registered.\n"
                "help: decorate the class with @register_loaders('my_pkg.MyDataLoaders')"
            )
        config = own_recipe()
        try:
            json.dumps(config)
        except TypeError as e:
            raise NotExportableError(
                f"export: {type(dls).__name__}.export_recipe() is not plain JSON data: {e}\n"
                "help: return only dicts, lists, strings, numbers, booleans and None"
            ) from e
        data = {
            "n_inp": dls.n_inp,
            "types": _types_entry(dls),
            "loaders": {"name": loaders_name, "config": config},
            "pipelines": [],
            "item_tfms": [],
            "batch_tfms": [],
        }
    else:
        assert dls.dsets is not None
        data = {
            "n_inp": dls.n_inp,
            "types": _types_entry(dls),
            "pipelines": [_pipeline_entries(p, f"element {k}") for k, p in enumerate(dls.dsets.pipelines)],
            "item_tfms": _pipeline_entries(dls.valid.item_tfms, "item_tfms"),
            "batch_tfms": _pipeline_entries(dls.valid.batch_tfms, "batch_tfms"),
        }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lamina_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "model": {"name": name, "kwargs": kwargs},
        "loss": {"name": loss_name, "config": loss.to_config()},  # type: ignore[operator]
        "data": data,
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


# types that moved since files were written: the old name still loads (the bytes types went to vision)
_RENAMED_TYPES = {"lamina.core.types.TensorBytes": "lamina.vision.jpeg.TensorBytes"}


def _resolve_types(entry: Any, where: str) -> tuple[tuple[type, ...], tuple[type, ...]] | None:
    if entry is None:
        return None
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(k), list) and all(isinstance(n, str) for n in entry[k])
        for k in ("item", "batch")
    ):
        raise ExportError(f"{where}: malformed data.types {entry!r}.\nhelp: {_NOT_OURS}")
    known = _known_types()
    entry = {k: [_RENAMED_TYPES.get(n, n) for n in entry[k]] for k in ("item", "batch")}
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
    model = unwrap_model(learn.model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = check_finite(state)
    if bad is not None:
        raise ExportError(
            f"export: the model's tensor {bad!r} holds NaN or infinite values; its predictions would be "
            "garbage.\nhelp: train again with a lower learning rate (TerminateOnNaN stops a diverging fit), "
            "or load the last good checkpoint"
        )
    _check_rebuild(model, recipe["model"]["name"], recipe["model"]["kwargs"], state)
    _check_outputs(model, learn.dls.vocab, "export")
    state, tied = _untie(model.state_dict(), state)
    if tied:
        recipe["tied"] = tied
    weights = save_safetensors(state)
    recipe["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    doc = json.dumps(recipe, indent=1, sort_keys=True).encode()

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("learner.json", doc)
            z.writestr("weights.safetensors", weights)

    atomic_write_bytes(path, write)
    return path


def _untie(
    raw: Mapping[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store a tensor the model holds under several names (tied embeddings) once: the other names become
    `{alias: name}`, and the rebuilt model, which ties them itself, gets the one tensor under each name.
    Other tensors that share memory (views of one buffer) are copied, as safetensors stores no overlaps."""
    first: dict[tuple[Any, ...], str] = {}
    tied: dict[str, str] = {}
    for k in sorted(raw):
        v = raw[k]
        key = (v.device, v.data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if v.numel() and key in first:
            tied[k] = first[key]
        else:
            first.setdefault(key, k)
    kept = {k: v for k, v in state.items() if k not in tied}
    seen: set[int] = set()
    for k, v in kept.items():
        ptr = v.untyped_storage().data_ptr()
        if v.numel() and ptr in seen:
            kept[k] = v.clone()
        seen.add(ptr)
    return kept, tied


def _tied_entry(entry: Any, header: Mapping[str, TensorSpec], where: str) -> dict[str, str]:
    """The recipe's `tied` names: each alias absent from the weights, each source present in them."""
    if entry is None:
        return {}
    ok = isinstance(entry, dict) and all(
        len(a) <= MAX_NAME_LEN and a not in header and isinstance(b, str) and b in header
        for a, b in entry.items()  # JSON keys are strings
    )
    if not ok:
        raise ExportError(
            f"{where}: learner.json's tied names do not fit the weights ({str(entry)[:200]}).\n"
            f"help: {_NOT_OURS}"
        )
    return dict(entry)


def _check_rebuild(
    model: torch.nn.Module, name: str, kwargs: dict[str, Any], state: Mapping[str, torch.Tensor]
) -> None:
    """Refuse a model that `load_learner` would not rebuild exactly from its recipe (a layer swapped or
    changed after the factory built it), or whose recipe the factory's check would refuse."""
    check = lookup_model_check(name)
    if check is not None:
        try:
            check(kwargs, {k: tuple(v.shape) for k, v in state.items()})
        except (ValueError, TypeError) as e:
            raise ExportError(
                f"export: load_learner would refuse the recipe of model {name!r}: {e}\n"
                "help: build the model with arguments the factory accepts from a file (e.g. a plain timm "
                "architecture name)"
            ) from e
    factory = lookup_model(name)
    rebuilt = build_on_meta(lambda: factory(**kwargs))
    if rebuilt is None:
        try:
            rebuilt = factory(**kwargs)
        except Exception as e:
            raise ExportError(
                f"export: the recipe {name!r}({kwargs!r}) does not build a model again: {e}\n"
                "help: give the factory only the JSON arguments it needs to build this model"
            ) from e
    diff = compare_structure(model, rebuilt)
    if diff is not None:
        raise ExportError(
            f"export: the model differs from what its recipe {name!r} builds, so load_learner would "
            f"rebuild another model: {diff}.\nhelp: export a model as its factory builds it; for a changed "
            "model, register a factory that builds it (@register_model) and use that"
        )


def _target_tfm(pipelines: list[Any], n_inp: int) -> Any:
    """The target's transform that knows how many outputs it needs (as DataLoaders.target_tfm)."""
    if len(pipelines) <= n_inp:
        return None
    tfms = pipelines[-1].tfms if isinstance(pipelines[-1], Pipeline) else pipelines[-1]
    return next((t for t in reversed(tfms) if hasattr(t, "c")), None)


def _check_outputs(model: torch.nn.Module, vocab: Any, where: str) -> None:
    """A vocabulary must have one label per model output (else predict fails or never names some)."""
    width = output_width(model)
    if vocab is None or width is None:
        return
    if len(vocab) != width:
        raise ExportError(
            f"{where}: the vocabulary has {len(vocab)} labels ({str(list(vocab)[:5])[:200]}...) but the "
            f"model has {width} outputs.\nhelp: the file was modified, or the model was built for "
            "other data; build it with n_out=dls.c"
        )


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
                raise ExportError(
                    f"{where}: learner.json is larger than {_MAX_JSON} bytes; refused.\nhelp: {_NOT_OURS}"
                )
            raw = z.read("learner.json")
            weights = z.read("weights.safetensors")
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as e:
        raise ExportError(f"{where} is a damaged zip file: {e}\nhelp: {_NOT_OURS}") from e
    recipe = loads_bounded(raw, f"{where}: learner.json", _NOT_OURS)
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise ExportError(
            f"{where} is not a lamina learner export (its format field is not {FORMAT!r}).\n"
            "help: pass a file written by learn.export(...)"
        )
    version = recipe.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(
            f"{where} has an invalid format_version {version!r}; expected an integer >= 1.\nhelp: {_NOT_OURS}"
        )
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
        or len(entry["name"]) > MAX_NAME_LEN
        or not isinstance(entry.get("config"), dict)
    ):
        raise ExportError(
            f"load_learner: malformed transform entry in {where}: {str(entry)[:300]}\nhelp: {_NOT_OURS}"
        )
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
        raise ExportError(
            f"load_learner: {where}: {cls.__name__} did not build a Transform.\nhelp: {_NOT_OURS}"
        )
    return t


def _as_list(x: Any, where: str) -> list[Any]:
    if not isinstance(x, list):
        raise ExportError(
            f"load_learner: {where} should be a list, got {type(x).__name__}.\nhelp: {_NOT_OURS}"
        )
    return x


def _as_dict(x: Any, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise ExportError(
            f"load_learner: {where} should be a JSON object, got {type(x).__name__}.\nhelp: {_NOT_OURS}"
        )
    return x


def _names_in(recipe: Any) -> set[str]:
    """Every registered name (`"name"` values) and `lamina.` type name in a recipe's JSON."""
    out: set[str] = set()
    stack = [recipe]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if isinstance(x.get("name"), str):
                out.add(x["name"])
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
            out.update(n for n in x if isinstance(n, str) and n.startswith("lamina."))
    return out


def import_applications(names: Iterable[str]) -> list[str]:
    """Import lamina's installed applications that register `names` ('vision.Resize', or a type
    'lamina.vision.X'): the ones declared under the `lamina.applications` entry points whose name is the
    prefix. Only lamina's own modules are imported, never a module named by the file; returns their names."""
    prefixes = {n.split(".")[1] if n.startswith("lamina.") else n.split(".", 1)[0] for n in names}
    loaded = []
    for ep in entry_points(group=APPLICATIONS_GROUP):
        if ep.name in prefixes and ep.value.split(":")[0].startswith("lamina."):
            ep.load()  # the application registers its names as it is imported
            loaded.append(ep.value)
    return loaded


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
    import_applications(_names_in(recipe))
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
        loaders_spec = data.get("loaders")
        loaders_cls, loaders_config = None, None
        if loaders_spec is not None:
            loaders_spec = _as_dict(loaders_spec, "loaders")
            loaders_config = _as_dict(loaders_spec["config"], "loaders config")
            name = loaders_spec["name"]
            if not isinstance(name, str) or len(name) > MAX_NAME_LEN:
                raise ExportError(f"{where}: malformed loaders name {str(name)[:100]!r}.\nhelp: {_NOT_OURS}")
            try:
                loaders_cls = lookup_loaders(name)
            except KeyError as e:
                raise ExportError(f"load_learner: {e.args[0]}") from None
        model_spec, loss_spec = _as_dict(recipe["model"], "model"), _as_dict(recipe["loss"], "loss")
        model_name, model_kwargs = model_spec["name"], _as_dict(model_spec["kwargs"], "model kwargs")
        loss_name, loss_config = loss_spec["name"], _as_dict(loss_spec["config"], "loss config")
    except KeyError as e:
        raise ExportError(f"{where} is missing the field {e}.\nhelp: {_NOT_OURS}") from None
    types = _resolve_types(types_entry, where)
    # a table's loaders carry their processing themselves: their elements are the exported types
    n_elements = len(pipeline_specs) if loaders_cls is None else len(types[0]) if types else n_inp + 1
    if not isinstance(n_inp, int) or isinstance(n_inp, bool) or not 1 <= n_inp <= max(1, n_elements):
        raise ExportError(f"{where}: n_inp={n_inp!r} does not fit {n_elements} elements.\nhelp: {_NOT_OURS}")
    if not all(isinstance(n, str) and len(n) <= MAX_NAME_LEN for n in (model_name, loss_name)):
        raise ExportError(
            f"{where}: the model and loss names must be strings of at most {MAX_NAME_LEN} chars.\n"
            f"help: {_NOT_OURS}"
        )
    if types is not None and not len(types[0]) == len(types[1]) == n_elements:
        raise ExportError(
            f"{where}: data.types names {len(types[0])} elements for {n_elements} pipelines.\n"
            f"help: {_NOT_OURS}"
        )
    try:
        model_factory = lookup_model(model_name)
        loss_cls = lookup_loss(loss_name)
    except KeyError as e:
        raise ExportError(f"load_learner: {e.args[0]}") from None
    header = read_header(
        weights, where, "lamina only reads safetensors weights, never pickles; export the learner again"
    )
    tied = _tied_entry(recipe.get("tied"), header, where)
    header = {**header, **{alias: header[source] for alias, source in tied.items()}}

    # every name is known and the weights' shapes are read: now build, the model only within their size
    pipelines = [[_build_tfm(c, cfg, f"element {k}") for c, cfg in p] for k, p in enumerate(pipeline_specs)]
    item_tfms = [_build_tfm(c, cfg, "item_tfms") for c, cfg in item_specs]
    batch_tfms = [_build_tfm(c, cfg, "batch_tfms") for c, cfg in batch_specs]
    try:
        loss = loss_cls(**loss_config)
    except Exception as e:
        raise ExportError(
            f"{where}: cannot rebuild loss {loss_name!r} from {loss_config!r}: {e}\nhelp: {_NOT_OURS}"
        ) from e
    model = _build_model(model_factory, model_name, model_kwargs, header, where)
    _check_outputs(model, getattr(_target_tfm(pipelines, n_inp), "vocab", None), where)
    try:
        state = load_safetensors(weights)
    except Exception as e:
        raise ExportError(
            f"{where}: weights.safetensors is unreadable: {e}\n"
            "help: lamina only reads safetensors weights, never pickles; export the learner again"
        ) from e
    state |= {alias: state[source] for alias, source in tied.items()}
    _check_state(_specs(model.state_dict()), _specs(state), where)
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

    if loaders_cls is not None:
        try:
            dls = loaders_cls.from_recipe(loaders_config, device)  # type: ignore[attr-defined]
        except (ValueError, TypeError, KeyError) as e:
            raise ExportError(f"{where}: the data recipe is invalid: {e}\nhelp: {_NOT_OURS}") from e
        _check_outputs(model, dls.vocab, where)
    else:
        dls = DataLoaders(loader(0), loader(1), loss_func=loss_cls)
    if types is not None:
        # the loaders hold no items to learn their element types from: give them the exported ones
        for dl in (dls.train, dls.valid):
            dl.set_types(*types)
    learn = Learner(dls, model, loss_func=loss)
    learn.model.eval()
    return learn


def _specs(state: Mapping[str, torch.Tensor]) -> dict[str, TensorSpec]:
    return {k: TensorSpec(v.dtype, tuple(v.shape)) for k, v in state.items()}


def _build_model(
    factory: Callable[..., Any], name: str, kwargs: dict[str, Any], header: dict[str, TensorSpec], where: str
) -> torch.nn.Module:
    """Call the factory only for a recipe the weights account for: its registered check first, then a
    build on the meta device compared with the weights' header, then the real build within a memory budget
    set by the weights' size."""
    check = lookup_model_check(name)
    try:
        inspect.signature(factory).bind(**kwargs)
        if check is not None:
            check(kwargs, {k: v.shape for k, v in header.items()})
    except (ValueError, TypeError) as e:
        raise ExportError(
            f"{where}: the recipe of model {name!r} does not fit the file: {e}\nhelp: {_NOT_OURS}"
        ) from None
    file_bytes = sum(v.nbytes for v in header.values())
    meta = build_on_meta(lambda: factory(**kwargs))
    if meta is not None:
        _check_state(_specs(meta.state_dict()), header, where)
        held = sum(t.numel() * t.element_size() for t in (*meta.parameters(), *meta.buffers()))
        if held > file_bytes + _SLACK_BYTES:
            raise ExportError(
                f"{where}: model {name!r} holds {held} bytes of tensors for {file_bytes} bytes of weights.\n"
                f"help: {_NOT_OURS}"
            )
    budget = _BUILD_FACTOR * file_bytes + _SLACK_BYTES
    try:
        with AllocationBudget(budget):
            model = factory(**kwargs)
    except OverBudgetError as e:
        raise ExportError(
            f"{where}: building model {name!r} from {str(kwargs)[:300]} takes more than {budget} bytes, more "
            f"than its {file_bytes} bytes of weights account for ({e}).\nhelp: {_NOT_OURS}"
        ) from None
    except Exception as e:
        raise ExportError(
            f"{where}: cannot rebuild model {name!r} from {str(kwargs)[:300]}: {e}\nhelp: {_NOT_OURS}"
        ) from e
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"{where}: the factory {name!r} did not return a torch.nn.Module.\nhelp: {_NOT_OURS}"
        )
    _check_state(_specs(model.state_dict()), header, where)
    return model


def _check_state(expected: Mapping[str, TensorSpec], got: Mapping[str, TensorSpec], where: str) -> None:
    """The file's tensors must be exactly the model's: same names, shapes and dtypes."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = [
        f"{k}: file {got[k].dtype} {got[k].shape} vs model {v.dtype} {v.shape}"
        for k, v in expected.items()
        if k in got and (got[k].shape != v.shape or got[k].dtype != v.dtype)
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
            f"{where}: the weights do not fit the model: {'; '.join(parts)}.\n"
            "help: the file was modified, or written for another architecture"
        )
