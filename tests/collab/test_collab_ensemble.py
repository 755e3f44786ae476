"""collab_learner's default model: a dot product and an item autoencoder, each trained on its own error."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from lamina.collab import CollabDataLoaders, collab_learner, load_collab_learner
from lamina.collab.autorec import ItemAutoRec
from lamina.collab.ensemble import CollabEnsemble, MembersMSE
from lamina.data.samples import movielens_100k
from lamina.train import ExportError, load_learner


def _ratings(n_users: int = 60, n_items: int = 40, n: int = 1500, seed: int = 0) -> pd.DataFrame:
    g = torch.Generator().manual_seed(seed)
    pu, qi = torch.randn(n_users, 2, generator=g), torch.randn(n_items, 2, generator=g)
    pairs = torch.randperm(n_users * n_items, generator=g)[:n]
    u, i = pairs // n_items, pairs % n_items
    r = (3 + (pu[u] * qi[i]).sum(1) * 0.8 + torch.randn(n, generator=g) * 0.3).round().clamp(1, 5)
    return pd.DataFrame({"user": (u + 1).tolist(), "item": (i + 100).tolist(), "rating": r.tolist()})


@pytest.fixture(scope="module")
def dls() -> CollabDataLoaders:
    return CollabDataLoaders.from_df(_ratings(), valid_pct=0.2, seed=42, bs=64, device="cpu")


def test_each_member_learns_from_its_own_error(dls: CollabDataLoaders) -> None:
    # the ensemble's loss gives each member the gradient of its own MSE (not of the mean's error)
    torch.manual_seed(0)
    model = collab_learner(dls, n_factors=4, autorec=8).model
    assert isinstance(model, CollabEnsemble)
    x, y = dls.one_batch()
    model.train()
    MembersMSE()(model(x), y).backward()
    got = [p.grad.clone() for p in model.members[0].parameters() if p.grad is not None]
    model.zero_grad()
    torch.nn.functional.mse_loss(model.members[0](x), y).backward()
    alone = [p.grad / 2 for p in model.members[0].parameters() if p.grad is not None]  # K = 2 members
    assert len(got) == len(alone) > 0
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(got, alone, strict=True))
    model.eval()
    assert model(x).shape == (len(x),)  # eval: the mean, for metrics and predictions


def test_a_pair_never_sees_its_own_rating_in_training(dls: CollabDataLoaders) -> None:
    torch.manual_seed(0)
    ae = ItemAutoRec(dls.meta.n_users, dls.meta.n_items, len(dls.train.dataset), hidden=8)
    x, y = dls.train.dataset.x, dls.train.dataset.y  # type: ignore[attr-defined]
    ae.set_ratings(x, y)
    item = int(torch.bincount(x[:, 1]).argmax())  # the most rated item
    pairs = x[x[:, 1] == item][:2]  # two of its training ratings
    ae.train()
    before = ae(pairs).detach()
    changed = y.clone()
    changed[(x[:, 0] == pairs[0, 0]) & (x[:, 1] == item)] += 3.0  # the first pair's own rating
    ae.set_ratings(x, changed)
    after = ae(pairs).detach()
    assert float(after[0]) == pytest.approx(float(before[0]), abs=1e-6)  # its own rating is left out...
    assert abs(float(after[1] - before[1])) > 1e-6  # ...but it is part of the other pair's item code
    ae.eval()
    assert abs(float(ae(pairs).detach()[0] - before[0])) > 1e-6  # in eval every training rating counts


def test_the_ensemble_beats_the_dot_product_alone_on_movielens() -> None:
    # real ratings (the dot product is not the true model here, as it is on the synthetic ones above)
    ratings = pd.read_parquet(movielens_100k()["ratings"]).query("user_id <= 300")  # 31,468 ratings
    dls = CollabDataLoaders.from_df(
        ratings, user_name="user_id", item_name="movie_id", rating_name="rating", seed=42, device="cpu"
    )
    rmse = {}
    for autorec in (None, 200):
        torch.manual_seed(0)
        learn = collab_learner(dls, autorec=autorec, cbs=[])
        with contextlib.redirect_stdout(io.StringIO()):
            learn.fit_one_cycle(3, 5e-3)
        rmse[autorec] = learn.validate()["rmse"]
    assert rmse[200] <= 0.935 and rmse[200] < rmse[None] - 0.01, rmse  # measured 0.923 against 0.945


def test_ensemble_export_round_trips_and_refuses_tampering(dls: CollabDataLoaders, tmp_path: Path) -> None:
    torch.manual_seed(0)
    learn = collab_learner(dls, n_factors=4, autorec=8, cbs=[])
    learn.fit(1)
    path = learn.export(tmp_path / "m.lamina")
    loaded = load_collab_learner(path)
    rows = pd.DataFrame({"user": [1, 2, 10**9], "item": [100, 101, 102]})
    a, _ = learn.get_preds(dl=learn.dls.test_dl(rows))
    b, _ = loaded.get_preds(dl=loaded.dls.test_dl(rows))
    assert torch.allclose(a, b)
    assert loaded.recommend(1, k=5).equals(learn.recommend(1, k=5))
    with zipfile.ZipFile(path) as z:
        doc, weights = json.loads(z.read("learner.json")), z.read("weights.safetensors")
    members = doc["model"]["kwargs"]["members"]
    for tamper, match in (
        (lambda m: m[1].update(model="vision.resnet18"), "member 1 must be"),
        (lambda m: m[1]["kwargs"].update(n_ratings=10**9), "raters is"),
        (lambda m: m.extend([m[0]] * 8), "1 to 8 models"),
    ):
        bad_doc = json.loads(json.dumps(doc))
        tamper(bad_doc["model"]["kwargs"]["members"])
        bad = tmp_path / "bad.lamina"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("learner.json", json.dumps(bad_doc))
            z.writestr("weights.safetensors", weights)
        with pytest.raises((ExportError, ValueError), match=match):
            load_learner(bad)
    assert members[1]["model"] == "collab.item_autorec"


def test_a_custom_loss_needs_a_single_model(dls: CollabDataLoaders) -> None:
    with pytest.raises(ValueError, match="autorec=None"):
        collab_learner(dls, loss_func=torch.nn.L1Loss())
    learn = collab_learner(dls, loss_func=torch.nn.L1Loss(), autorec=None)
    assert not isinstance(learn.model, CollabEnsemble)
