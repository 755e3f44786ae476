"""text_classifier_learner and language_model_learner on tiny transformers: real training, predict,
export/load with the tokenizer inside, parameter groups, the encoder passed from LM to classifier."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import safetensors.torch
import torch
from _text_kit import tiny_bert, tiny_gpt2, word_tokenizer

from lamina.data import RegressionBlock
from lamina.text import (
    TextDataLoaders,
    language_model_learner,
    load_encoder,
    save_encoder,
    text_classifier_learner,
    top_losses_table,
)
from lamina.train import ClassificationInterpretation, accuracy, load_learner
from lamina.train.export import ExportError


@pytest.fixture
def dls(reviews: pd.DataFrame, tokenizer: Any) -> TextDataLoaders:
    return TextDataLoaders.from_df(reviews, "text", "label", tokenizer=tokenizer, seed=0, bs=16)


@pytest.mark.slow
def test_trains_predicts_exports(dls: TextDataLoaders, tmp_path: Path) -> None:
    learn = text_classifier_learner(dls, tiny_bert(), metrics=accuracy)
    learn.fit_one_cycle(4, 3e-3)
    acc = learn.validate()["accuracy"]
    assert acc >= 0.9, f"{acc:.3f} (chance: 0.5)"
    label, idx, probs = learn.predict("a lovely soft top")
    assert label == "pos" and int(idx) == 1 and probs.shape == (2,) and float(probs[1]) > 0.5
    table = learn.show_results(max_n=5)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["text", "target", "prediction"]
    interp = ClassificationInterpretation.from_learner(learn)
    top = top_losses_table(interp, 3)
    assert list(top.columns) == ["text", "target", "prediction", "loss", "probability"] and len(top) == 3

    path = learn.export(tmp_path / "text.lamina")
    with zipfile.ZipFile(path) as z:
        recipe = json.loads(z.read("learner.json"))
        assert sorted(z.namelist()) == ["learner.json", "weights.safetensors"]
    assert recipe["model"]["name"] == "text.classifier"
    assert recipe["model"]["kwargs"]["config"]["model_type"] == "bert"
    tok_entry = recipe["data"]["pipelines"][0][0]
    assert tok_entry["name"] == "text.Tokenize" and json.loads(tok_entry["config"]["tokenizer"])["model"]
    again = load_learner(path)
    label2, _, probs2 = again.predict("a lovely soft top")
    assert label2 == label and torch.allclose(probs2, probs, atol=1e-5)


def test_export_loads_in_a_fresh_process(dls: TextDataLoaders, tmp_path: Path) -> None:
    """load_learner imports lamina.text by itself (entry point), without any model folder or network."""
    import subprocess
    import sys

    learn = text_classifier_learner(dls, tiny_bert())
    path = learn.export(tmp_path / "t.lamina")
    code = (
        "import sys; from lamina.train import load_learner; "
        f"l = load_learner({str(path)!r}); print(l.predict('great soft dress')[0]); "
        "print('transformers.models.auto' in sys.modules and 'auto_map' or 'ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] in ("pos", "neg")


def test_tampered_recipe_is_refused(dls: TextDataLoaders, tmp_path: Path) -> None:
    learn = text_classifier_learner(dls, tiny_bert())
    path = learn.export(tmp_path / "t.lamina")
    with zipfile.ZipFile(path) as z:
        recipe, weights = json.loads(z.read("learner.json")), z.read("weights.safetensors")
    for key, value in [
        ("model_type", "evil-remote"),
        ("auto_map", {"AutoModel": "x.Y"}),
        ("hidden_size", 10**9),
    ]:
        bad = json.loads(json.dumps(recipe))
        bad["model"]["kwargs"]["config"][key] = value
        out = tmp_path / "bad.lamina"
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("learner.json", json.dumps(bad))
            z.writestr("weights.safetensors", weights)
        with pytest.raises(ExportError, match="does not fit the file"):
            load_learner(out)


def test_parameter_groups_and_freeze_to(dls: TextDataLoaders) -> None:
    learn = text_classifier_learner(dls, tiny_bert())
    groups = learn.param_groups()
    assert len(groups) == 4  # embeddings, 2 blocks (one each), head
    assert {id(p) for p in groups[-1]} == {id(p) for p in learn.model.head.parameters()}
    assert sum(len(g) for g in groups) == len(list(learn.model.parameters()))
    learn.freeze_to(-2)
    trainable = [any(p.requires_grad for p in g) for g in groups]
    assert trainable == [False, False, True, True]
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_pretrained_folder_fills_the_body(dls: TextDataLoaders, model_folder: Path) -> None:
    from safetensors.torch import load_file

    learn = text_classifier_learner(dls, model_folder)
    saved = load_file(str(model_folder / "model.safetensors"))
    body = learn.model.body.state_dict()
    assert all(torch.equal(body[k].cpu(), saved[k]) for k in body)
    # pretrained: starts frozen, only the head trains
    assert not any(p.requires_grad for p in learn.model.body.parameters())
    assert all(p.requires_grad for p in learn.model.head.parameters())


def test_folder_of_a_remote_code_model_is_refused(dls: TextDataLoaders, model_folder: Path) -> None:
    cfg = json.loads((model_folder / "config.json").read_text())
    cfg["model_type"] = "my-remote-arch"
    (model_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="never runs a model's own code"):
        text_classifier_learner(dls, model_folder)


def test_tokenizer_larger_than_the_embeddings(dls: TextDataLoaders) -> None:
    with pytest.raises(ValueError, match="embeds only 8 tokens"):
        text_classifier_learner(dls, tiny_bert(vocab_size=8))


def test_pools_multilabel_regression(reviews: pd.DataFrame, tokenizer: Any) -> None:
    from lamina.data import BCEWithLogitsLossFlat, MSELossFlat

    df = reviews.assign(tags=["a;b" if i % 3 else "a" for i in range(len(reviews))])
    multi = TextDataLoaders.from_df(df, "text", "tags", label_delim=";", tokenizer=tokenizer, seed=0, bs=8)
    learn = text_classifier_learner(multi, tiny_bert(), pool="cls")
    assert isinstance(learn.loss_func, BCEWithLogitsLossFlat) and learn.model(multi.one_batch()[0]).shape == (
        8,
        2,
    )
    reg = TextDataLoaders.from_df(
        reviews, "text", "score", y_block=RegressionBlock, tokenizer=tokenizer, seed=0
    )
    learn = text_classifier_learner(reg, tiny_bert(), pool="last")
    assert isinstance(learn.loss_func, MSELossFlat)
    learn.fit(1, 1e-3)
    assert learn.get_preds()[0].shape == (len(reg.valid.dataset), 1)


def test_mask_comes_from_the_padding(dls: TextDataLoaders) -> None:
    """Padding changes nothing: a text alone and the same text in a padded batch get the same outputs."""
    learn = text_classifier_learner(dls, tiny_bert())
    model = learn.model.eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    padded = torch.tensor([[2, 10, 11, 12, 3, -1, -1, -1], [2, 5, 6, 7, 8, 9, 10, 3]])
    with torch.no_grad():
        assert torch.allclose(model(ids)[0], model(padded)[0], atol=1e-5)


@pytest.mark.slow
def test_masked_lm_then_classifier(reviews: pd.DataFrame, tokenizer: Any, tmp_path: Path) -> None:
    lm_dls = TextDataLoaders.from_df(reviews, "text", is_lm=True, tokenizer=tokenizer, seed=0, bs=16)
    lm = language_model_learner(lm_dls, tiny_bert())
    before = lm.validate()["valid_loss"]
    lm.fit_one_cycle(3, 3e-3)
    after = lm.validate()["valid_loss"]
    assert after < before - 0.5, (before, after)
    enc = save_encoder(lm, tmp_path / "enc.safetensors")
    clas = TextDataLoaders.from_df(reviews, "text", "label", tokenizer=tokenizer, seed=0, bs=16)
    learn = text_classifier_learner(clas, tiny_bert(), encoder=enc)
    emb = learn.model.body.embeddings.word_embeddings.weight
    assert torch.equal(emb, lm.model.body.embeddings.word_embeddings.weight)
    assert not emb.requires_grad  # a loaded encoder starts frozen, as pretrained weights do
    other = text_classifier_learner(clas, tiny_bert())
    load_encoder(other, enc)
    assert torch.equal(other.model.body.embeddings.word_embeddings.weight, emb)
    with pytest.raises(ValueError, match="do not fit"):
        load_encoder(text_classifier_learner(clas, tiny_bert(vocab_size=100)), enc)


@pytest.mark.slow
def test_causal_lm_learns(reviews: pd.DataFrame) -> None:
    tok = word_tokenizer(special=("[PAD]", "[UNK]"), bert=False)  # no mask token: a causal model
    dls = TextDataLoaders.from_df(reviews, "text", is_lm=True, tokenizer=tok, seed=0, bs=16)
    assert dls.loss_func.shift
    lm = language_model_learner(dls, tiny_gpt2())
    before = lm.validate()["valid_loss"]
    lm.fit_one_cycle(2, 3e-3)
    assert lm.validate()["valid_loss"] < before - 0.5
    with pytest.raises(ValueError, match="causal=False"):
        language_model_learner(dls, tiny_gpt2(), causal=False)


def test_shipped_minilm_learner(reviews: pd.DataFrame) -> None:
    """The default model builds from the shipped folder with its weights (no training: seconds)."""
    dls = TextDataLoaders.from_df(reviews[:64], "text", "label", seed=0, bs=8)
    learn = text_classifier_learner(dls)
    assert learn.model.body.config.hidden_size == 384 and len(learn.param_groups()) == 6
    with torch.no_grad():
        out = learn.model.eval()(dls.one_batch()[0])
    assert out.shape == (8, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("causal", [False, True])
def test_language_model_exports_with_tied_weights(
    reviews: pd.DataFrame, tokenizer: Any, tmp_path: Path, causal: bool
) -> None:
    """Tied input and output embeddings are stored once, and tied again by the rebuilt model on load."""
    if causal:
        tok = word_tokenizer(special=("[PAD]", "[UNK]"), bert=False)
        dls = TextDataLoaders.from_df(reviews[:64], "text", is_lm=True, tokenizer=tok, seed=0, bs=8)
        lm = language_model_learner(dls, tiny_gpt2())
    else:
        dls = TextDataLoaders.from_df(reviews[:64], "text", is_lm=True, tokenizer=tokenizer, seed=0, bs=8)
        lm = language_model_learner(dls, tiny_bert())
    lm.fit(1, 1e-3)
    path = lm.export(tmp_path / "lm.lamina")
    with zipfile.ZipFile(path) as z:
        names = set(safetensors.torch.load(z.read("weights.safetensors")))
    assert len(names) < len(lm.model.state_dict())  # the tied matrix is written once
    loaded = load_learner(path)
    x = dls.one_batch()[0]
    with torch.no_grad():
        assert torch.equal(lm.model.eval()(x), loaded.model.eval()(x))
    hf = loaded.model.model  # the transformers model inside TextLM
    out_emb, in_emb = hf.get_output_embeddings().weight, hf.get_input_embeddings().weight
    assert out_emb.data_ptr() == in_emb.data_ptr()  # still one tensor: training one trains both


def test_tampered_tied_names_are_refused(reviews: pd.DataFrame, tokenizer: Any, tmp_path: Path) -> None:
    dls = TextDataLoaders.from_df(reviews[:32], "text", is_lm=True, tokenizer=tokenizer, seed=0, bs=8)
    path = language_model_learner(dls, tiny_bert()).export(tmp_path / "lm.lamina")
    with zipfile.ZipFile(path) as z:
        doc, weights = json.loads(z.read("learner.json")), z.read("weights.safetensors")
    alias, source = sorted(doc["tied"].items())[0]
    for change in ({alias: "no.such.tensor"}, {source: source}, {alias: [source]}):
        bad_tied = doc["tied"] | change
        bad = tmp_path / "bad.lamina"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("learner.json", json.dumps(doc | {"tied": bad_tied}))
            z.writestr("weights.safetensors", weights)
        with pytest.raises(ExportError, match="tied names"):
            load_learner(bad)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("learner.json", json.dumps(doc | {"tied": [alias]}))
        z.writestr("weights.safetensors", weights)
    with pytest.raises(ExportError, match="tied names"):
        load_learner(bad)
    with zipfile.ZipFile(bad, "w") as z:  # an alias dropped: the model misses that tensor
        z.writestr("learner.json", json.dumps({k: v for k, v in doc.items() if k != "tied"}))
        z.writestr("weights.safetensors", weights)
    with pytest.raises(ExportError, match="missing"):
        load_learner(bad)
