"""The README's Python examples, run exactly as printed, so the README cannot drift from the library.

A block preceded by `<!-- readme-test: skip (reason) -->` is not run (it needs the network or a GPU); every
other ```python block is, in a fresh folder, and the "Four lines" one must train to a real accuracy.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.S)
_SKIP = "<!-- readme-test: skip"


def _blocks() -> list[tuple[str, str, bool]]:
    """(heading, code, skipped) for every python block of the README."""
    text = README.read_text()
    out = []
    for m in _BLOCK.finditer(text):
        heading = [h for h in text[: m.start()].splitlines() if h.startswith("#")][-1].lstrip("# ")
        out.append((heading, m.group("code"), m.group("before").startswith(_SKIP)))
    return out


def _block(heading: str) -> str:
    return next(code for h, code, _ in _blocks() if h == heading)


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = _blocks()
    assert len(blocks) >= 4
    for heading, _, skipped in blocks:
        assert not skipped or heading == "Going further", (
            f"only the GPU/network sketch may be skipped: {heading}"
        )


def _accuracy(model: torch.nn.Module, dl: Any, train_mode: bool) -> float:
    model = copy.deepcopy(model).train(train_mode)  # train mode would update the BatchNorm statistics
    right = total = 0
    with torch.no_grad():
        for xb, yb in dl:
            right += int((model(xb).argmax(1) == yb).sum())
            total += len(yb)
    return right / total


@pytest.mark.slow
def test_four_lines_train_as_promised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first example, as printed: >= 95% valid accuracy (fastai reaches 95-96% with the same lines), and
    BatchNorm's running statistics describe the trained network (eval-mode ~ train-mode on the train set)."""
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(_block("Four lines"), "README.md: Four lines", "exec"), ns)
    learn = ns["learn"]
    acc = learn.recorder.values[-1][2]
    assert acc >= 0.95, f"the README's example reached {acc:.3f} valid accuracy"
    eval_acc = _accuracy(learn.model, learn.dls.train, train_mode=False)
    train_acc = _accuracy(learn.model, learn.dls.train, train_mode=True)
    assert eval_acc >= train_acc - 0.03, f"eval-mode {eval_acc:.3f} vs train-mode {train_acc:.3f}"
    assert ns["label"] == "3" and ns["probs"].shape == (10,)
    again = ns["learn2"].predict(ns["path"] / "3" / "1500.png")
    assert again[0] == ns["label"] and torch.allclose(again[2], ns["probs"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "heading", ["One layer down: DataBlock and Learner", "Lowest layer: typed transforms"]
)
def test_lower_layer_examples_run_as_printed(
    heading: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    if heading.startswith("One layer down"):  # continues the first example: its `path`
        from lamina.data import samples

        ns["path"] = samples.mnist_sample()
    exec(compile(_block(heading), f"README.md: {heading}", "exec"), ns)
    if "learn" in ns:
        assert (
            ns["learn"].recorder.values[-1][2] >= 0.8
        )  # a linear model on raw pixels, one epoch (10%: chance)
    else:
        assert torch.equal(ns["back"][0], ns["img"]) and ns["out"][1] == "a label"


@pytest.mark.slow
def test_text_example_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Text section, as printed: all-MiniLM-L6-v2 on 400 clothing reviews, offline, on the CPU. Its
    prediction must survive the export (the tokenizer travels inside the file)."""
    import warnings

    from lamina.train import load_learner

    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reviews without text are left out with a warning
        exec(compile(_block("Text"), "README.md: Text", "exec"), ns)
    learn = ns["learn"]
    assert learn.recorder.values[-1][2] >= 0.75  # happy is ~77% of the reviews; learning shows in the loss
    assert learn.recorder.values[-1][1] < 0.5
    assert ns["label"] in ("happy", "unhappy") and ns["probs"].shape == (2,)
    again = load_learner("reviews.lamina").predict("The fabric is scratchy and it runs small")
    assert again[0] == ns["label"] and torch.allclose(again[2], ns["probs"], atol=1e-5)


@pytest.mark.slow
def test_shards_example_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shards section, as printed: the MNIST sample written as shards and trained on from them."""
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(_block("Data past one machine's memory"), "README.md: shards", "exec"), ns)
    assert ns["learn"].recorder.values[-1][2] >= 0.8  # a linear model on raw pixels, one epoch
    assert len(ns["dls"].train.dataset) == 4000 and (tmp_path / "mnist-shards" / "index.arrow").exists()
    assert not (tmp_path / "models" / "stream.safetensors").exists()  # a finished fit leaves no resume point
