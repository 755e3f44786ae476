"""lamina.collab: training on learnable ratings, top-k against brute force, unknown ids, export, bad input."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from lamina.collab import (
    CollabDataLoaders,
    CollabLearner,
    NDCGAtK,
    RecallAtK,
    collab_learner,
    load_collab_learner,
    ndcg_at_k,
    recall_at_k,
)
from lamina.train import ExportError, load_learner


def _ratings(n_users: int = 120, n_items: int = 80, n: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Ratings 1-5 from rank-2 user and item factors plus biases and noise (std 0.3): learnable."""
    g = torch.Generator().manual_seed(seed)
    pu, qi = torch.randn(n_users, 2, generator=g), torch.randn(n_items, 2, generator=g)
    bi = torch.randn(n_items, generator=g) * 0.6
    pairs = torch.randperm(n_users * n_items, generator=g)[:n]
    u, i = pairs // n_items, pairs % n_items
    r = 3 + (pu[u] * qi[i]).sum(1) * 0.8 + bi[i] + torch.randn(n, generator=g) * 0.3
    return pd.DataFrame(
        {"user": (u + 1).tolist(), "item": (i + 100).tolist(), "rating": r.round().clamp(1, 5).tolist()}
    )


@pytest.fixture(scope="module")
def trained() -> CollabLearner:
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(_ratings(), valid_pct=0.2, seed=42, bs=64, device="cpu")
    learn = collab_learner(dls, n_factors=8, metrics=None)
    learn.remove_cbs([cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"])
    learn.fit_one_cycle(6, 2e-2)
    return learn


def test_trains_to_a_real_rmse_on_learnable_ratings(trained: CollabLearner) -> None:
    res = trained.validate()
    valid = trained.dls.valid.dataset
    mean_rmse = float(((valid.y - valid.y.mean()) ** 2).mean().sqrt())  # type: ignore[attr-defined]
    assert mean_rmse > 1.0  # predicting the mean is far off (1.11)
    assert res["rmse"] <= 0.95, res  # measured 0.46
    assert res["rmse"] < 0.7 * mean_rmse


def test_recommend_matches_a_brute_force_ranking(trained: CollabLearner) -> None:
    dls = trained.dls
    meta = trained.meta
    user = meta.users[5]
    got = trained.recommend(user, k=7)
    u = meta.user_index(user)
    x = torch.stack([torch.full((meta.n_items,), u), torch.arange(meta.n_items)], dim=1)
    trained.model.eval()
    with torch.no_grad():
        s = trained.model(x)
    seen = set(dls.train.dataset.x[dls.train.dataset.x[:, 0] == u, 1].tolist())  # type: ignore[attr-defined]
    ranked = sorted((j for j in range(1, meta.n_items) if j not in seen), key=lambda j: -float(s[j]))[:7]
    assert got["item"].tolist() == [meta.items[j] for j in ranked]
    assert got["score"].tolist() == pytest.approx([float(s[j]) for j in ranked], abs=1e-5)
    assert not set(got["item"]) & {meta.items[j] for j in seen}
    everything = trained.recommend(user, k=7, exclude_seen=False)
    best = sorted(range(1, meta.n_items), key=lambda j: -float(s[j]))[:7]
    assert everything["item"].tolist() == [meta.items[j] for j in best]
    many = trained.recommend(meta.users[1:], k=3)
    assert (
        len(many) == 3 * (meta.n_users - 1)
        and many[many["user"] == user]["item"].tolist() == got["item"][:3].tolist()
    )


def test_unknown_users_and_items_predict_the_item_and_global_mean(trained: CollabLearner) -> None:
    dot, ae = trained.model.members  # type: ignore[union-attr, misc]
    new_user, new_item = trained.predict({"user": 10**9, "item": 100})[0], trained.predict((1, "nope"))[0]
    both = trained.predict((10**9, "nope"))[0]
    lo, hi = trained.meta.y_range
    j = trained.meta.item_index(100)
    u = trained.meta.user_index(1)

    def squash(r: torch.Tensor) -> float:  # the dot model's sigmoid into y_range
        return float(torch.sigmoid(r) * (hi - lo) + lo)

    with torch.no_grad():
        # the dot product's reserved rows are zero: its bias terms alone; the autoencoder's unknown user is
        # zero too (its item's bias), and an unknown item has no raters: the code of an empty bag
        empty = torch.sigmoid(ae.code_bias)
        want_item = (squash(dot.bias + dot.i_bias.weight[j, 0]) + float(ae.bias + ae.i_bias.weight[j, 0])) / 2
        user_ae = float(ae.u_weight.weight[u] @ empty + ae.u_bias.weight[u, 0] + ae.bias)
        want_user = (squash(dot.bias + dot.u_bias.weight[u, 0]) + user_ae) / 2
        want_global = (squash(dot.bias) + float(ae.bias)) / 2
    assert new_user == pytest.approx(want_item, abs=1e-5)
    assert new_item == pytest.approx(want_user, abs=1e-5)
    assert both == pytest.approx(want_global, abs=1e-5)
    assert abs(both - trained.meta.rating_mean) < 0.5
    cold = trained.recommend("someone new", k=3)  # the best-liked items, no KeyError
    assert len(cold) == 3


def test_users_only_in_validation_map_to_the_reserved_index() -> None:
    # fastai issue 1586: a user seen only in validation raised a KeyError (or got an untrained row)
    lone = pd.DataFrame({"user": range(9001, 9021), "item": [100] * 20, "rating": [4.0] * 20})
    df = pd.concat([_ratings(n=600), lone], ignore_index=True)
    dls = CollabDataLoaders.from_df(df, valid_pct=0.2, seed=1, device="cpu")
    x = dls.valid.dataset.x  # type: ignore[attr-defined]
    in_valid = [u for u in range(9001, 9021) if u not in dls.meta.users]
    assert in_valid, "the split should leave some lone users to validation"
    assert int(x[:, 0].eq(0).sum()) >= len(in_valid)  # each maps to the reserved index 0
    learn = collab_learner(dls, n_factors=4, metrics=None, cbs=[])
    preds, _ = learn.get_preds(dl=dls.test_dl([(u, 100) for u in in_valid]))
    item_mean = float(learn.predict((10**9, 100))[0])
    assert torch.allclose(preds, torch.full_like(preds, item_mean))  # all get the item's mean
    assert math.isfinite(learn.validate()["valid_loss"])


def test_a_user_with_one_rating_trains() -> None:
    df = pd.DataFrame(
        {"user": [1, 1, 2, 2, 3, 3, 4], "item": [1, 2, 1, 3, 2, 3, 1], "rating": [5, 3, 4, 2, 1, 5, 4]}
    )
    dls = CollabDataLoaders.from_df(df, valid_pct=0.3, seed=0, bs=2, device="cpu")
    learn = collab_learner(dls, n_factors=2)
    learn.fit(1)
    assert math.isfinite(learn.validate()["rmse"])


def test_export_round_trips_without_pickle(trained: CollabLearner, tmp_path: Path) -> None:
    path = trained.export(tmp_path / "m.lamina")
    with zipfile.ZipFile(path) as z:
        doc = json.loads(z.read("learner.json"))
    assert doc["data"]["loaders"]["name"] == "collab.CollabDataLoaders"
    assert doc["data"]["loaders"]["config"]["meta"]["users"][:3] == trained.meta.users[1:4]
    loaded = load_collab_learner(path)
    rows = pd.DataFrame({"user": [1, 2, 10**9], "item": [100, 101, 102]})
    a, _ = trained.get_preds(dl=trained.dls.test_dl(rows))
    b, _ = loaded.get_preds(dl=loaded.dls.test_dl(rows))
    assert torch.allclose(a, b)
    assert loaded.recommend(1, k=5).equals(trained.recommend(1, k=5))
    assert isinstance(load_learner(path).dls, CollabDataLoaders)


def test_a_tampered_export_is_refused(trained: CollabLearner, tmp_path: Path) -> None:
    path = trained.export(tmp_path / "m.lamina")
    with zipfile.ZipFile(path) as z:
        doc, weights = json.loads(z.read("learner.json")), z.read("weights.safetensors")
    doc["data"]["loaders"]["config"]["meta"]["users"].append(
        doc["data"]["loaders"]["config"]["meta"]["users"][0]
    )
    bad = tmp_path / "bad.lamina"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("learner.json", json.dumps(doc))
        z.writestr("weights.safetensors", weights)
    with pytest.raises(ExportError, match="same id twice"):
        load_learner(bad)
    doc["data"]["loaders"]["config"]["meta"]["users"][-1] = "someone else"  # one id more than rows
    doc["data"]["loaders"]["config"]["meta"]["seen"].append([])
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("learner.json", json.dumps(doc))
        z.writestr("weights.safetensors", weights)
    with pytest.raises(ValueError, match="embedding rows"):
        load_collab_learner(bad)


def test_show_batch_and_show_results_are_tables(trained: CollabLearner) -> None:
    shown = trained.dls.show_batch(max_n=4)
    assert isinstance(shown, pd.DataFrame) and list(shown.columns) == ["user", "item", "rating"]
    res = trained.show_results(max_n=5)
    assert isinstance(res, pd.DataFrame) and len(res) == 5 and "prediction" in res.columns
    assert (res["prediction"] - res["rating"]).abs().mean() < 1.2


def test_titles_are_for_display_and_never_merge_items() -> None:
    df = pd.DataFrame(
        {"user": [1, 1, 2, 2, 3, 3], "movie": [10, 11, 10, 11, 10, 11], "rating": [5, 1, 4, 2, 5, 1]}
    )
    items = pd.DataFrame({"movie": [10, 11], "title": ["Hamlet", "Hamlet"]})  # two films, one title
    dls = CollabDataLoaders.from_df(
        df, item_name="movie", title_name="title", items=items, valid_pct=0.0, device="cpu"
    )
    assert dls.meta.items[1:] == [10, 11] and dls.meta.titles == ["#unknown#", "Hamlet", "Hamlet"]


def test_embedding_sizes_are_honoured_in_both_models() -> None:
    dls = CollabDataLoaders.from_df(_ratings(n=800), seed=0, device="cpu")
    nn_learn = collab_learner(dls, use_nn=True, emb_szs={"user": 7, "item": 5}, layers=[16, 8], autorec=None)
    assert nn_learn.model.u_weight.weight.shape[1] == 7 and nn_learn.model.i_weight.weight.shape[1] == 5  # type: ignore[union-attr]
    dot = collab_learner(dls, emb_szs=(6, 6), autorec=None)
    assert dot.model.u_weight.weight.shape[1] == 6  # type: ignore[union-attr]
    in_ensemble = collab_learner(dls, use_nn=True, emb_szs={"user": 7, "item": 5}, layers=[16, 8])
    assert in_ensemble.model.members[0].u_weight.weight.shape[1] == 7  # type: ignore[union-attr, index]
    with pytest.raises(ValueError, match="same number for both"):
        collab_learner(dls, emb_szs=(6, 4))
    with pytest.raises(KeyError, match="emb_szs names"):
        collab_learner(dls, use_nn=True, emb_szs={"users": 3})
    nn_learn.fit(1)
    assert len(nn_learn.recommend(dls.meta.users[1], k=4)) == 4


def test_ranking_metrics_match_a_python_reference() -> None:
    g = torch.Generator().manual_seed(3)
    users = torch.randint(0, 30, (400,), generator=g)
    targs = torch.randint(1, 6, (400,), generator=g).float()
    preds = targs + torch.randn(400, generator=g)
    want_r, want_n = [], []
    for u in users.unique().tolist():
        m = users == u
        p, t = preds[m].tolist(), targs[m].tolist()
        order = sorted(range(len(p)), key=lambda j: -p[j])[:5]
        rel = [j for j in range(len(t)) if t[j] >= 4]
        if rel:
            want_r.append(len(set(order) & set(rel)) / len(rel))
        ideal = sorted(t, reverse=True)[:5]
        idcg = sum(v / math.log2(r + 2) for r, v in enumerate(ideal))
        want_n.append(sum(t[j] / math.log2(r + 2) for r, j in enumerate(order)) / idcg)
    assert recall_at_k(users, preds, targs, k=5, threshold=4) == pytest.approx(sum(want_r) / len(want_r))
    assert ndcg_at_k(users, preds, targs, k=5) == pytest.approx(sum(want_n) / len(want_n))


def test_ranking_metrics_as_learner_metrics(trained: CollabLearner) -> None:
    dls = trained.dls
    learn = collab_learner(dls, n_factors=8, metrics=[RecallAtK(dls, k=5), NDCGAtK(dls, k=5)], cbs=[])
    learn.model.load_state_dict(trained.model.state_dict())
    res = learn.validate()
    untrained = collab_learner(dls, n_factors=8, metrics=[NDCGAtK(dls, k=5)]).validate()
    assert 0 < res["recall@5"] <= 1 and res["ndcg@5"] > untrained["ndcg@5"] + 0.02


def test_bad_ratings_get_clear_errors() -> None:
    good = _ratings(n=200)
    with pytest.raises(ValueError, match="outside y_range"):
        CollabDataLoaders.from_df(good, y_range=(1.0, 4.0))
    with pytest.raises(ValueError, match="outside y_range"):
        collab_learner(CollabDataLoaders.from_df(good, seed=0), y_range=(1.0, 4.0))
    missing = good.astype({"user": "float64"})
    missing.loc[3, "user"] = float("nan")
    with pytest.raises(ValueError, match="have no 'user'"):
        CollabDataLoaders.from_df(missing)
    text = good.astype({"rating": str})
    text.loc[0, "rating"] = "four"
    with pytest.raises(TypeError, match="ratings must be numbers"):
        CollabDataLoaders.from_df(text)
    with pytest.raises(KeyError, match="no column"):
        CollabDataLoaders.from_df(good, user_name="userId")
    with pytest.raises(ValueError, match="leaves no validation row"):
        CollabDataLoaders.from_df(good.head(4), valid_pct=0.1)
    everything = CollabDataLoaders.from_df(good.head(20), valid_pct=0.0, device="cpu")
    assert len(everything.valid.dataset) == 0  # documented: valid_pct=0 trains on every row
    learn = collab_learner(everything, n_factors=2, cbs=[])
    learn.fit(1)
    assert learn.validate() == {}  # no validation rows: no validation figures, no error


def test_duplicate_rows_are_averaged_kept_or_refused() -> None:
    df = pd.DataFrame({"user": [1, 1, 2, 3], "item": [5, 5, 5, 6], "rating": [2.0, 4.0, 3.0, 1.0]})
    with pytest.warns(UserWarning, match="averaged 1 duplicate"):
        dls = CollabDataLoaders.from_df(df, valid_pct=0.0)
    x, y = dls.train.dataset.x, dls.train.dataset.y  # type: ignore[attr-defined]
    assert len(y) == 3 and float(y[(x[:, 0] == dls.meta.user_index(1))][0]) == 3.0
    assert len(CollabDataLoaders.from_df(df, valid_pct=0.0, duplicates="keep").train.dataset) == 4
    with pytest.raises(ValueError, match="duplicate"):
        CollabDataLoaders.from_df(df, duplicates="error")


def test_from_csv_reads_and_bounds_the_file(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    _ratings(n=300).to_csv(f, index=False)
    dls = CollabDataLoaders.from_csv(f, seed=0)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 300
    with pytest.raises(ValueError, match="max_bytes"):
        CollabDataLoaders.from_csv(f, max_bytes=10)


def test_the_datablock_path_trains_recommends_and_exports(tmp_path: Path) -> None:
    from lamina.collab import UserItemBlock
    from lamina.data import ColReader, DataBlock, RandomSplitter, RegressionBlock

    df = _ratings()
    dblock = DataBlock(
        blocks=(UserItemBlock(), RegressionBlock()),
        get_x=ColReader(["user", "item"]),
        get_y=ColReader("rating"),
        splitter=RandomSplitter(0.2, seed=42),
    )
    dls = dblock.dataloaders(df, bs=64, device="cpu")
    torch.manual_seed(0)
    learn = collab_learner(dls, n_factors=8, metrics=None, cbs=[])
    assert learn.meta.y_range == (0.0, 5.5)  # read from the training ratings (1-5)
    learn.fit_one_cycle(6, 2e-2)
    assert learn.validate()["rmse"] <= 0.95  # the same rows as the fast path's fixture (0.46 there)
    new_user = learn.predict((10**9, 100))[0]  # an unseen user: the item's mean, no KeyError
    assert 1 <= float(new_user) <= 5
    recs = learn.recommend(learn.meta.users[3], k=4)
    again = load_collab_learner(learn.export(tmp_path / "db.lamina"))
    assert again.recommend(learn.meta.users[3], k=4).equals(recs)
    assert isinstance(learn.dls.show_batch(max_n=3), pd.DataFrame)
