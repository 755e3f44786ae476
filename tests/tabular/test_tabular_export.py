"""Tabular exports: the golden file still loads and predicts the same; tampered recipes are refused."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from _tabular_fixture import EXPECTED, GOLDEN

from lamina.train import load_learner
from lamina.train.export import ExportError


def test_golden_v1_file_still_loads_and_predicts_the_same() -> None:
    expected = json.loads(EXPECTED.read_text())
    learn = load_learner(GOLDEN)
    got, _ = learn.get_preds(dl=learn.dls.test_dl(pd.DataFrame(expected["rows"])))
    assert torch.allclose(got, torch.tensor(expected["probs"]), atol=1e-5)
    assert learn.predict(expected["rows"][0])[0] in ("yes", "no")


def _tampered(tmp_path: Path, change: Any) -> Path:
    with zipfile.ZipFile(GOLDEN) as z:
        recipe = json.loads(z.read("learner.json"))
        weights = z.read("weights.safetensors")
    change(recipe)
    out = tmp_path / "bad.lamina"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("learner.json", json.dumps(recipe))
        z.writestr("weights.safetensors", weights)
    return out


def _procs(r: dict[str, Any]) -> list[dict[str, Any]]:
    return r["data"]["loaders"]["config"]["procs"]


@pytest.mark.parametrize(
    "change, message",
    [
        # a registered transform that is not a tabular proc may not be slipped in
        (lambda r: _procs(r).insert(0, {"name": "data.Categorize", "config": {}}), "not a tabular proc"),
        (lambda r: _procs(r).__setitem__(0, {"name": "os.system", "config": {}}), "unknown transform"),
        (
            lambda r: _procs(r).extend([{"name": "tabular.Categorify", "config": {"cat_names": []}}] * 40),
            "at most",
        ),
        (lambda r: r["data"]["loaders"]["config"].__setitem__("cat_names", "color"), "lists of strings"),
        (lambda r: r["data"]["loaders"].__setitem__("name", "x" * 10_000), "malformed loaders name"),
        (lambda r: r["data"]["loaders"].__setitem__("name", "vision.NotLoaders"), "unknown loaders"),
        # the model's embeddings must be what the weights hold, checked before anything is built
        (lambda r: r["model"]["kwargs"].__setitem__("cardinalities", [10**9, 3, 2]), "embedding table"),
    ],
)
def test_tampered_recipes_are_refused(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        load_learner(_tampered(tmp_path, change))
