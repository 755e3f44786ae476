"""`learn.distributed(strategy="fsdp")` on 2 gloo processes: each process holds half of every weight while
training, the run learns, and after the block the learner is a plain single-process one whose export
loads anywhere and predicts what the sharded model did."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from _export_fixture import ToFloatTensor, get_x, get_y, items, tiny_mlp

from _dist import launch
from lamina.data import CategoryBlock, DataBlock, IndexSplitter, TransformBlock
from lamina.train import Learner, accuracy, load_learner

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]).parent)]
    from test_distributed_fsdp import make_learner

    torch.set_num_threads(1)
    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    learn = make_learner(out)
    full = sum(p.numel() for p in learn.model.parameters())
    with learn.distributed(strategy="fsdp"):
        local = sum(p.to_local().numel() for p in learn.model.parameters())
        learn.fit_one_cycle(6, 3e-2)
        metrics = learn.validate()
    plain = type(learn.model).__name__
    if rank == 0:
        learn.export(out / "model.lamina")
        x = learn.dls.valid.one_batch()[0]
        with torch.no_grad():
            save_file({"x": x, "pred": learn.model.eval()(x)}, str(out / "pred.safetensors"))
    (out / f"rank{rank}.json").write_text(
        json.dumps({"full": full, "local": local, "metrics": metrics, "plain": plain})
    )
    """
)


def make_learner(path: Path) -> Learner:
    """The export tests' registered MLP and input transform on 400 rows, the last 97 validating (the two
    processes get 49 and 48: FSDP must not wait on the one with fewer batches)."""
    n = 400
    dblock = DataBlock(
        blocks=(TransformBlock(type_tfms=[ToFloatTensor(scale=0.5)]), CategoryBlock),
        get_x=get_x,
        get_y=get_y,
        splitter=IndexSplitter(range(n - 97, n)),
    )
    dls = dblock.dataloaders(items(n), bs=16, num_workers=0, device="cpu", seed=3)
    torch.manual_seed(0)
    return Learner(dls, tiny_mlp(n_hidden=64, n_out=3), metrics=accuracy, path=path)


def test_fsdp_shards_trains_and_exports_a_plain_model(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    launch(script, [str(tmp_path), str(Path(__file__).parent)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["local"] < 0.6 * r["full"]  # each process holds about half of the parameters
        assert r["plain"] == "Sequential"  # after the block: the plain module again
        assert (
            r["metrics"]["accuracy"] >= 0.85
        )  # it learned (3 classes: chance is 1/3) (both see the same validated metrics)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    saved = load_file(str(tmp_path / "pred.safetensors"))
    learn = load_learner(tmp_path / "model.lamina")
    with torch.no_grad():
        torch.testing.assert_close(learn.model.eval()(saved["x"]), saved["pred"])


def test_an_unknown_strategy_is_refused(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    refused = r"(?s)strategy 'zero3' is not one of \['ddp', 'fsdp'\].*help:"
    with pytest.raises(ValueError, match=refused), learn.distributed(strategy="zero3"):
        pass
