"""`learn.distributed(strategy="fsdp")` on 2 gloo processes: each process holds half of every weight while
training, the run learns, and after the block the learner is a plain single-process one whose export
loads anywhere and predicts what the sharded model did."""

from __future__ import annotations

import json
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from _export_fixture import ToFloatTensor, get_x, get_y, items, tiny_mlp
from safetensors.torch import load as safetensors_load

from _dist import launch
from lamina.data import CategoryBlock, DataBlock, IndexSplitter, TransformBlock
from lamina.train import GradientAccumulation, Learner, accuracy, load_learner

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
    whole = [len(learn.dls.train), len(learn.dls.valid)]
    with learn.distributed(strategy="fsdp"):
        local = sum(p.to_local().numel() for p in learn.model.parameters())
        batches = [learn.n_batches(learn.dls.train), learn.n_batches(learn.dls.valid)]
        learn.fit_one_cycle(6, 3e-2)
        metrics = learn.validate()
        # inside the block too, every process calls them: the full weights are gathered, rank 0 writes
        learn.export(out / "inside.lamina")
        learn.save(out / "inside.safetensors")
        still_sharded = sum(p.to_local().numel() for p in learn.model.parameters()) == local
    plain = type(learn.model).__name__
    if rank == 0:
        learn.export(out / "model.lamina")
        x = learn.dls.valid.one_batch()[0]
        with torch.no_grad():
            save_file({"x": x, "pred": learn.model.eval()(x)}, str(out / "pred.safetensors"))
    (out / f"rank{rank}.json").write_text(
        json.dumps({"full": full, "local": local, "metrics": metrics, "plain": plain, "whole": whole,
                    "batches": batches, "still_sharded": still_sharded})
    )
    """
)

BF16_WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch

    sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]).parent)]
    from test_distributed_fsdp import make_learner

    torch.set_num_threads(1)
    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    learn = make_learner(out)
    with learn.distributed(strategy="fsdp", mixed_precision="bf16"):
        learn.fit_one_cycle(6, 3e-2)
        metrics = learn.validate()
        with torch.no_grad():
            computed = str(learn.model(learn.dls.valid.one_batch()[0]).dtype)
        shards = sorted({str(p.dtype) for p in learn.model.parameters()})
    if rank == 0:
        learn.export(out / "model.lamina")
    (out / f"rank{rank}.json").write_text(
        json.dumps({"metrics": metrics, "computed": computed, "shards": shards})
    )
    """
)

# test_distributed's data, model (SGD, no shuffle) and batches: 2 processes of bs 4 = 1 process of bs 8
MATCH_WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]).parent)]
    from test_distributed import make_learner
    from lamina.train import GradientAccumulation

    torch.set_num_threads(1)
    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])

    def weights(learn, name):
        sd = {k: v.detach().contiguous() for k, v in learn.model.state_dict().items()}
        save_file(sd, str(out / f"rank{rank}_{name}.safetensors"))

    learn = make_learner(bs=4, path=out)
    with learn.distributed(strategy="fsdp"):
        learn.fit(2)
        preds, targs = learn.get_preds()  # 13 validation items: shards of 7 and 6, gathered in order
        save_file({"preds": preds, "targs": targs}, str(out / f"rank{rank}_preds.safetensors"))
    weights(learn, "fit")

    # 4 batches, a step every 2: the gradients are reduce-scattered on the stepping batches only
    learn = make_learner(bs=4, path=out)
    with learn.distributed(strategy="fsdp"):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            learn.fit(1, cbs=GradientAccumulation(n_acc=8))
    reduces = sum(e.count for e in prof.key_averages() if e.key.startswith("FSDP::post_backward_reduce"))
    weights(learn, "accumulate")

    # learn.load inside the FSDP block spreads a full checkpoint over the shards again (every process)
    learn = make_learner(bs=4, path=out)
    with learn.distributed(strategy="fsdp"):
        learn.fit(1)
        learn.save("mid")
        learn.fit(1)
        learn.load("mid")
    weights(learn, "loaded")
    (out / f"rank{rank}.json").write_text(json.dumps({"reduces": reduces}))
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
        assert r["still_sharded"]  # export and save inside the block left the shards as they were
        assert (
            r["metrics"]["accuracy"] >= 0.85
        )  # it learned (3 classes: chance is 1/3) (both see the same validated metrics)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    # data-parallel too: each process trains on half of every epoch and validates its own part (97 items:
    # 49 and 48, 4 and 3 batches of 16, so the process with fewer batches must not wait on the other)
    train, valid = ranks[0]["whole"]
    assert [r["batches"][0] for r in ranks] == [(train + 1) // 2] * 2
    assert [r["batches"][1] for r in ranks] == [4, 3] and valid == 7
    saved = load_file(str(tmp_path / "pred.safetensors"))
    learn = load_learner(tmp_path / "model.lamina")
    with torch.no_grad():
        torch.testing.assert_close(learn.model.eval()(saved["x"]), saved["pred"])

    # the same file inside the block as after it, laid out as a single process's (names, shapes, dtypes)
    def weights(path: Path) -> bytes:
        with zipfile.ZipFile(path) as z:
            return z.read("weights.safetensors")

    assert weights(tmp_path / "inside.lamina") == weights(tmp_path / "model.lamina")
    single = make_learner(tmp_path / "single")
    single.export(tmp_path / "single.lamina")
    layout = {k: (v.shape, v.dtype) for k, v in safetensors_load(weights(tmp_path / "single.lamina")).items()}
    exported = safetensors_load(weights(tmp_path / "model.lamina"))
    assert {k: (v.shape, v.dtype) for k, v in exported.items()} == layout

    # the checkpoint written inside the block loads in one process, weights and optimizer state whole
    single.load(tmp_path / "inside.safetensors")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(v, exported[k])
    ckpt = load_file(str(tmp_path / "inside.safetensors"))
    assert single.opt is not None
    params = [p for g in single.opt.param_groups for p in g["params"]]  # the state_dict's numbering
    moments = [k for k in ckpt if k.endswith(".exp_avg")]
    assert len(moments) == len(params)
    for k in moments:
        assert ckpt[k].shape == params[int(k.split(".")[1])].shape


def test_an_unknown_strategy_is_refused(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    refused = r"(?s)strategy 'zero3' is not one of \['ddp', 'fsdp'\].*help:"
    with pytest.raises(ValueError, match=refused), learn.distributed(strategy="zero3"):
        pass


def test_fsdp_bf16_computes_in_bfloat16_over_float32_shards(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(BF16_WORKER)
    launch(script, [str(tmp_path), str(Path(__file__).parent)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["computed"] == "torch.bfloat16"  # the forward ran in bfloat16
        assert r["shards"] == ["torch.float32"]  # what the optimizer updates stays float32
        assert r["metrics"]["accuracy"] >= 0.85  # and it still learned (chance: 1/3)
    learn = load_learner(tmp_path / "model.lamina")  # the export is the float32 model
    assert {str(v.dtype) for v in learn.model.state_dict().values()} == {"torch.float32"}


def test_fsdp_ranks_match_one_process_on_combined_batches(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from test_distributed import make_learner as make_tiny

    script = tmp_path / "worker.py"
    script.write_text(MATCH_WORKER)
    launch(script, [str(tmp_path), str(Path(__file__).parent)])

    def check(name: str, single: Learner) -> None:
        ranks = [load_file(str(tmp_path / f"rank{r}_{name}.safetensors")) for r in (0, 1)]
        for k, v in single.model.state_dict().items():
            assert torch.equal(ranks[0][k], ranks[1][k]), f"ranks disagree on {k}"
            torch.testing.assert_close(ranks[0][k], v, atol=1e-5, rtol=1e-5)

    single = make_tiny(bs=8, path=tmp_path / "single")
    single.fit(2)
    check("fit", single)
    preds, targs = single.get_preds()
    for r in (0, 1):
        got = load_file(str(tmp_path / f"rank{r}_preds.safetensors"))
        assert torch.equal(got["targs"], targs)
        torch.testing.assert_close(got["preds"], preds, atol=1e-5, rtol=1e-5)
    single = make_tiny(bs=8, path=tmp_path / "single")
    single.fit(1, cbs=GradientAccumulation(n_acc=16))
    check("accumulate", single)
    # 2 stepping batches of 4, 2 FSDP groups (the two Linear layers; the root holds no parameters of its own)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["reduces"] for r in ranks] == [4, 4]
    single = make_tiny(bs=8, path=tmp_path / "single")
    single.fit(1)
    check("loaded", single)  # the weights after one epoch, loaded back into the shards


@pytest.mark.parametrize(("strategy", "precision"), [("ddp", "bf16"), ("fsdp", "fp16"), ("fsdp", "fp8")])
def test_a_mixed_precision_fsdp_cannot_do_is_refused(tmp_path: Path, strategy: str, precision: str) -> None:
    learn = make_learner(tmp_path)
    refused = rf"(?s)mixed_precision '{precision}' with strategy '{strategy}'.*help:"
    with (
        pytest.raises(ValueError, match=refused),
        learn.distributed(strategy=strategy, mixed_precision=precision),
    ):
        pass
