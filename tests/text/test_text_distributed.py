"""Text under `learn.distributed()` on 2 gloo processes: each process's validation batches are padded to
their own longest text, and get_preds / validate still gather every item once, in order, as one process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from _text_kit import make_reviews, tiny_bert, word_tokenizer
from safetensors.torch import load_file

from _dist import launch
from lamina.text import TextDataLoaders, text_classifier_learner
from lamina.text.data import TensorText
from lamina.train import Learner, accuracy

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]).parent)]
    from test_text_distributed import make_learner

    torch.set_num_threads(1)
    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    learn = make_learner()
    with learn.distributed():
        inputs, preds, targs = learn.get_preds(with_input=True)
        metrics = learn.validate()
        shard_lengths = sorted({int(b[0].shape[1]) for b in learn.dls.valid})
    save_file({"ids": inputs[0], "preds": preds, "targs": targs}, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({"metrics": metrics, "lengths": shard_lengths}))
    """
)


def make_learner() -> Learner:
    """The same data and initial weights in every process (and in the single-process reference)."""
    dls = TextDataLoaders.from_df(
        make_reviews(120), "text", "label", tokenizer=word_tokenizer(), seed=0, bs=8
    )
    torch.manual_seed(0)
    return text_classifier_learner(dls, tiny_bert(), metrics=accuracy)


def test_ragged_text_batches_gather_as_one_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    launch(script, [str(tmp_path), str(Path(__file__).parent)])
    ref = make_learner()
    inputs, preds, targs = ref.get_preds(with_input=True)
    metrics = ref.validate()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["lengths"] != results[1]["lengths"]  # the processes' batches are of other lengths
    for r in range(2):
        got = load_file(str(tmp_path / f"rank{r}.safetensors"))
        assert torch.equal(got["ids"], inputs[0])  # every text once, in order, padded with -1 alike
        assert int((got["ids"] == TensorText.PAD).sum()) > 0
        assert torch.equal(got["targs"], targs)
        torch.testing.assert_close(got["preds"], preds, atol=1e-5, rtol=1e-5)
        assert results[r]["metrics"] == pytest.approx(metrics, abs=1e-5)
