"""Tests for export / load_learner: identical predictions after a round trip, the golden v1 file still
loads, and every kind of tampered file is refused with a clear error before any code from it could run."""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _export_fixture import EXPECTED, GOLDEN, INPUTS, make_learner, tiny_mlp
from safetensors.torch import save as save_safetensors
from torch import nn

import lamina.train.export as export
from lamina.core import NotExportableError
from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import ExportError, Learner, load_learner


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Learner, Path]:
    tmp = tmp_path_factory.mktemp("export")
    learn = make_learner(tmp)
    learn.fit(2, lr=3e-2)
    return learn, learn.export(tmp / "model.lamina")


def _probs(learn: Learner, xs: list[list[float]]) -> torch.Tensor:
    preds, _ = learn.get_preds(dl=learn.dls.test_dl(xs, skip_getters=True))
    return preds


# -- round trip ---------------------------------------------------------------------------------------------
def test_round_trip_gives_identical_predictions(exported: tuple[Learner, Path]) -> None:
    learn, path = exported
    loaded = load_learner(path)
    assert torch.equal(_probs(loaded, INPUTS), _probs(learn, INPUTS))
    for x in INPUTS:
        label, idx, probs = loaded.predict(x)
        label0, idx0, probs0 = learn.predict(x)
        assert str(label) == str(label0) and label in ("ant", "bee", "cat")
        assert int(idx) == int(idx0) and torch.equal(probs, probs0)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["learner.json", "weights.safetensors"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())


def test_a_loaded_learner_exports_again(exported: tuple[Learner, Path], tmp_path: Path) -> None:
    loaded = load_learner(exported[1])
    again = load_learner(loaded.export(tmp_path / "again.lamina"))
    assert torch.equal(_probs(again, INPUTS), _probs(loaded, INPUTS))


def test_golden_v1_file_still_loads() -> None:
    expected = json.loads(EXPECTED.read_text())
    learn = load_learner(GOLDEN)
    for x, label, probs in zip(expected["inputs"], expected["labels"], expected["probs"], strict=True):
        got_label, _, got_probs = learn.predict(x)
        assert str(got_label) == label
        torch.testing.assert_close(got_probs, torch.tensor(probs), atol=1e-6, rtol=0)


def test_exporting_a_plain_module_says_how_to_fix_it(tmp_path: Path) -> None:
    items = [(torch.randn(4), torch.tensor(0)) for _ in range(4)]
    dls = DataLoaders.from_dsets(items, items, bs=2, num_workers=0, device="cpu")
    learn = Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat())
    with pytest.raises(NotExportableError, match=r"(?s)no recipe.*help:.*register_model"):
        learn.export(tmp_path / "x.lamina")
    assert not (tmp_path / "x.lamina").exists()


# -- tampered files -----------------------------------------------------------------------------------------
def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _tamper(
    src: Path, dst: Path, edit: Callable[[dict[str, Any]], None], weights: bytes | None = None
) -> Path:
    """Rewrite the recipe with `edit` (and the weights, with a matching checksum)."""
    m = _members(src)
    recipe = json.loads(m["learner.json"])
    if weights is not None:
        m["weights.safetensors"] = weights
        recipe["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    edit(recipe)
    m["learner.json"] = json.dumps(recipe).encode()
    return _write(dst, m)


@pytest.fixture
def no_code_from_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if anything unpickles, and records every model factory call."""
    calls: list[str] = []

    def forbidden(*a: Any, **k: Any) -> Any:
        raise AssertionError("lamina unpickled something")

    for mod, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(mod, name, forbidden)
    real_lookup = export.lookup_model

    def spy_lookup(name: str) -> Callable[..., Any]:
        factory = real_lookup(name)

        def spy(**kw: Any) -> Any:
            calls.append(name)
            return factory(**kw)

        return spy

    monkeypatch.setattr(export, "lookup_model", spy_lookup)
    return calls


def _set(*keys: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(recipe: dict[str, Any]) -> None:
        d: Any = recipe
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return edit


TAMPERED: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "bad json": (
        lambda src, dst: _write(dst, {**_members(src), "learner.json": b'{"format": "lamina.learner", '}),
        "not valid JSON",
    ),
    "unknown transform": (
        lambda src, dst: _tamper(src, dst, _set("data", "pipelines", 0, 0, "name", value="test.Nope")),
        r"unknown transform 'test.Nope'",
    ),
    "unknown model": (
        lambda src, dst: _tamper(src, dst, _set("model", "name", value="os.system")),
        r"unknown model 'os.system'",
    ),
    "unknown type": (
        lambda src, dst: _tamper(src, dst, _set("data", "types", "item", 0, value="builtins.eval")),
        r"unknown element types",
    ),
    "newer format": (
        lambda src, dst: _tamper(src, dst, _set("format_version", value=2)),
        r"(?s)newer.*help: upgrade lamina",
    ),
    "not an export": (lambda src, dst: _tamper(src, dst, _set("format", value="other")), "format field"),
    "no checksum": (
        lambda src, dst: _tamper(src, dst, lambda r: r.pop("weights_sha256")),
        "no weights_sha256",
    ),
    "wrong checksum": (
        lambda src, dst: _write(
            dst,
            {**_members(src), "weights.safetensors": _members(src)["weights.safetensors"][:-4] + b"\0\0\0\1"},
        ),
        "checksum",
    ),
    "wrong shapes": (
        lambda src, dst: _tamper(
            src,
            dst,
            lambda r: None,
            weights=save_safetensors(dict(tiny_mlp(n_hidden=5, n_out=3).state_dict())),
        ),
        r"do not fit the model.*wrong shapes",
    ),
    "missing tensors": (
        lambda src, dst: _tamper(
            src, dst, lambda r: None, weights=save_safetensors({"0.weight": torch.zeros(8, 4)})
        ),
        r"do not fit the model.*missing",
    ),
    "extra member": (
        lambda src, dst: _write(dst, {**_members(src), "run.py": b"print('hi')"}),
        "expected exactly",
    ),
    "path traversal": (
        lambda src, dst: _write(dst, {**_members(src), "../x": b"x"}),
        r"unsafe member names \['\.\./x'\]",
    ),
    "compressed": (
        lambda src, dst: _write(dst, _members(src), zipfile.ZIP_DEFLATED),
        "compressed or encrypted",
    ),
    "not a zip": (lambda src, dst: (dst.write_bytes(b"\x80\x04K\x01."), dst)[1], "not a zip file"),
    "malformed field": (
        lambda src, dst: _tamper(src, dst, _set("model", "kwargs", value=[1, 2])),
        "should be a JSON object",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_files_are_refused_before_running_anything(
    case: str, exported: tuple[Learner, Path], tmp_path: Path, no_code_from_files: list[str]
) -> None:
    make, message = TAMPERED[case]
    bad = make(exported[1], tmp_path / "bad.lamina")
    with pytest.raises(ExportError, match=message):
        load_learner(bad)
    if case not in ("wrong shapes", "missing tensors"):  # only those get as far as building the model
        assert no_code_from_files == []


class _Payload:
    ran: list[str] = []

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Payload.ran.append, ("pwned",))


@pytest.mark.parametrize("fix_checksum", [True, False])
def test_a_pickled_payload_is_never_unpickled(
    fix_checksum: bool, exported: tuple[Learner, Path], tmp_path: Path, no_code_from_files: list[str]
) -> None:
    payload = pickle.dumps({"state_dict": _Payload()})
    if fix_checksum:
        bad = _tamper(exported[1], tmp_path / "bad.lamina", lambda r: None, weights=payload)
        message = r"(?s)weights.safetensors is unreadable.*never pickles"
    else:
        bad = _write(tmp_path / "bad.lamina", {**_members(exported[1]), "weights.safetensors": payload})
        message = "checksum"
    with pytest.raises(ExportError, match=message):
        load_learner(bad)
    assert _Payload.ran == [] and no_code_from_files == []


# -- versioning ---------------------------------------------------------------------------------------------
def test_migrations_run_in_order_up_to_the_current_version(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def v1_to_v2(recipe: dict[str, Any]) -> dict[str, Any]:
        seen.append(recipe["format_version"])
        return {**recipe, "note": "migrated"}

    monkeypatch.setattr(export, "FORMAT_VERSION", 2)
    monkeypatch.setattr(export, "_MIGRATIONS", {1: v1_to_v2})
    recipe, _ = export.read_export(GOLDEN)
    assert seen == [1] and recipe["format_version"] == 2 and recipe["note"] == "migrated"
    assert load_learner(GOLDEN).predict(INPUTS[0])[0] == json.loads(EXPECTED.read_text())["labels"][0]

    monkeypatch.setattr(export, "_MIGRATIONS", {})
    with pytest.raises(ExportError, match=r"(?s)v1 can no longer be read.*help:"):
        export.read_export(GOLDEN)


def test_import_applications_takes_lamina_entry_points_by_prefix_only() -> None:
    assert export.import_applications({"test.tiny_mlp", "data.Categorize", "os.system"}) == []
    assert export.import_applications({"vision.Resize"}) == ["lamina.vision"]  # declared in pyproject.toml
    with pytest.raises(KeyError, match=r"(?s)unknown transform 'nope\.Thing'.*help: import the module"):
        export.lookup_transform("nope.Thing")
