"""Distributed training on 2 CPU processes (gloo): both ranks end with the weights one process gets on the
combined batches, metrics and get_preds gather every item once, no_sync skips the all-reduce, only rank 0
writes, freeze/unfreeze re-wraps DDP, and `fit` goes distributed by itself under a WORLD_SIZE > 1 launch.

The two processes run one script (below) with the environment `torchrun` would give them; it is started
once per session and every test reads its results."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.data.order import ShardSampler as _ShardSampler
from lamina.train import Learner, accuracy
from lamina.train.callback import Callback, CancelStep

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent(
    """
    import contextlib, json, os, sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file
    from torch import nn
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    sys.path.insert(0, sys.argv[2])
    from test_distributed import Accum, Crash, make_learner  # the same data, model and callbacks as the test
    from lamina.train.callbacks.resume import ResumeCallback

    torch.set_num_threads(1)
    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    res = {}

    def weights(learn, name):
        sd = {k: v.detach().contiguous() for k, v in learn.model.state_dict().items()}
        save_file(sd, str(out / f"rank{rank}_{name}.safetensors"))

    # A: explicit context, fit + validation metrics + get_preds + save on rank 0 only
    learn = make_learner(bs=4, path=out / f"r{rank}")
    with learn.distributed():
        res["wrapped"] = type(learn.model).__name__
        res["n_iter_before_fit"] = learn.n_batches(learn.dls.train)
        learn.fit(2)
        res["values"] = learn.recorder.values
        res["losses"] = learn.recorder.losses
        preds, targs = learn.get_preds()
        save_file({"preds": preds, "targs": targs}, str(out / f"rank{rank}_preds.safetensors"))
        res["validate"] = learn.validate()
        learn.save("ckpt")
        res["main"] = learn.is_main_process
    res["unwrapped_after"] = type(learn.model).__name__
    weights(learn, "a")

    # B: gradient accumulation through accelerator.no_sync: one all-reduce per optimizer step
    learn = make_learner(bs=4, path=out)
    calls = []
    with learn.distributed():
        def hook(state, bucket):
            calls.append(1)
            return default_hooks.allreduce_hook(state, bucket)
        learn.model.register_comm_hook(None, hook)
        learn.fit(1, cbs=Accum(2))
    res["allreduce_calls"] = len(calls)
    weights(learn, "b")

    # C: no context: fit sees WORLD_SIZE=2 and goes distributed for its own duration
    learn = make_learner(bs=4, path=out)
    learn.fit(1)
    res["auto_accelerator_after"] = learn.accelerator is None
    weights(learn, "c")

    # D: fine_tune freezes and unfreezes inside the context (DDP re-wrapped each time)
    learn = make_learner(bs=4, path=out, two_groups=True)
    with learn.distributed():
        learn.fine_tune(1, base_lr=0.1, freeze_epochs=1)
    weights(learn, "d")

    # E: a crash in epoch 1 in both processes, then resume: the weights of A's uninterrupted run
    learn = make_learner(bs=4, path=out / "resume")
    with contextlib.suppress(RuntimeError), learn.distributed():
        learn.fit(2, cbs=[ResumeCallback(), Crash()])
    learn = make_learner(bs=4, path=out / "resume")
    resume = ResumeCallback()
    with learn.distributed():
        learn.fit(2, cbs=resume)
    res["resumed_from"] = resume.resumed_from
    weights(learn, "e")

    (out / f"rank{rank}.json").write_text(json.dumps(res))
    # leave together: a rank whose peer has already exited can abort in gloo's teardown ("terminate called
    # without an active exception"), which a launcher would report as a failed run
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    """
)


# -- shared by the worker and the single-process reference ---------------------------------------------------
def _data() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(45, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    items = [(x[i], y[i]) for i in range(45)]
    return items[:32], items[32:]  # 32 training items (4 steps of 8), 13 validation items (uneven shards)


def make_learner(bs: int, path: Path, two_groups: bool = False) -> Learner:
    train, valid = _data()
    dls = DataLoaders.from_dsets(train, valid, bs=bs, shuffle=False, num_workers=0, device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def split(m: nn.Module) -> list[list[nn.Parameter]]:
        return [list(m[0].parameters()), list(m[2].parameters())]  # type: ignore[index]

    return Learner(
        dls,
        model,
        loss_func=CrossEntropyLossFlat(),
        opt_func=torch.optim.SGD,
        lr=0.1,
        wd=0.0,
        metrics=accuracy,
        path=path,
        splitter=split if two_groups else lambda m: [list(m.parameters())],
    )


class Accum(Callback):
    """Steps every `n` batches and skips the gradient sync on the others (as GradientAccumulation does)."""

    order = 10

    def __init__(self, n: int) -> None:
        self.n = n
        self._ctx: contextlib.ExitStack | None = None

    def before_batch(self) -> None:
        learn = self.learn
        self.stepping = (learn.iter + 1) % self.n == 0
        acc = getattr(learn, "accelerator", None)
        if learn.training and not self.stepping and acc is not None:
            self._ctx = contextlib.ExitStack()
            self._ctx.enter_context(acc.no_sync(learn.model))

    def after_backward(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def before_step(self) -> None:
        if not self.stepping:
            raise CancelStep


class Crash(Callback):
    """Raises RuntimeError in the middle of epoch 1's training."""

    def after_batch(self) -> None:
        if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 1:
            raise RuntimeError("crash")


# -- running the two processes -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    out = tmp_path_factory.mktemp("dist")
    script = out / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        cmd = [sys.executable, str(script), str(out), str(Path(__file__).parent)]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=150)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("the distributed workers did not finish in 150 s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode != 0 for p in procs):
        pytest.fail(
            "\n".join(
                f"rank {r} (exit {p.returncode}):\n{log[-3000:]}"
                for r, (p, log) in enumerate(zip(procs, logs, strict=True))
            )
        )
    yield out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _weights(out: Path, name: str) -> list[dict[str, torch.Tensor]]:
    return [load_file(str(out / f"rank{r}_{name}.safetensors")) for r in range(2)]


def _single(learn: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in learn.model.state_dict().items()}


def _assert_same(ranks: list[dict[str, torch.Tensor]], ref: dict[str, torch.Tensor]) -> None:
    for k in ref:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"ranks disagree on {k}"
        torch.testing.assert_close(ranks[0][k], ref[k], atol=1e-5, rtol=1e-5)


# -- the tests ----------------------------------------------------------------------------------------------
def test_ranks_match_one_process_on_combined_batches(run: Any, tmp_path: Path) -> None:
    out, res = run
    single = make_learner(bs=8, path=tmp_path)
    single.fit(2)
    _assert_same(_weights(out, "a"), _single(single))
    assert res[0]["wrapped"] == "DistributedDataParallel"
    assert res[0]["unwrapped_after"] == "Sequential"
    assert res[0]["n_iter_before_fit"] == 4  # 32 items / 2 ranks / bs 4
    # train and valid losses and the metric are reduced across ranks: every rank logs the single-process row
    for r in res:
        torch.testing.assert_close(
            torch.tensor(r["values"]), torch.tensor(single.recorder.values), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            torch.tensor(r["losses"]), torch.tensor(single.recorder.losses), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            torch.tensor(list(r["validate"].values())),
            torch.tensor(list(single.validate().values())),
            atol=1e-5,
            rtol=0,
        )


def test_get_preds_gathers_every_item_once_in_order(run: Any, tmp_path: Path) -> None:
    out, _ = run
    single = make_learner(bs=8, path=tmp_path)
    single.fit(2)
    preds, targs = single.get_preds()
    for r in range(2):
        got = load_file(str(out / f"rank{r}_preds.safetensors"))
        assert got["preds"].shape == (13, 3)
        assert torch.equal(got["targs"], targs)
        torch.testing.assert_close(got["preds"], preds, atol=1e-5, rtol=1e-5)


def test_no_sync_skips_the_all_reduce_of_accumulating_steps(run: Any, tmp_path: Path) -> None:
    out, res = run
    assert [r["allreduce_calls"] for r in res] == [2, 2]  # 4 batches, a step (and a sync) every 2
    single = make_learner(bs=8, path=tmp_path)
    single.fit(1, cbs=Accum(2))
    _assert_same(_weights(out, "b"), _single(single))


def test_fit_goes_distributed_under_a_launcher(run: Any, tmp_path: Path) -> None:
    out, res = run
    single = make_learner(bs=8, path=tmp_path)
    single.fit(1)
    _assert_same(_weights(out, "c"), _single(single))
    assert all(r["auto_accelerator_after"] for r in res)


def test_fine_tune_rewraps_ddp_on_freeze(run: Any, tmp_path: Path) -> None:
    out, _ = run
    single = make_learner(bs=8, path=tmp_path, two_groups=True)
    single.fine_tune(1, base_lr=0.1, freeze_epochs=1)
    _assert_same(_weights(out, "d"), _single(single))


def test_resume_after_a_crash_in_every_process(run: Any) -> None:
    out, res = run
    assert [r["resumed_from"] for r in res] == [0, 0]
    e, a = _weights(out, "e"), _weights(out, "a")
    for k in a[0]:
        assert torch.equal(e[0][k], e[1][k]) and torch.equal(e[0][k], a[0][k])


def test_only_rank_0_writes(run: Any) -> None:
    out, res = run
    assert [r["main"] for r in res] == [True, False]
    assert (out / "r0" / "models" / "ckpt.safetensors").exists()
    assert not (out / "r1" / "models").exists()


# -- in-process pieces ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "even", "drop_last"), [(10, True, False), (10, True, True), (10, False, False), (3, True, False)]
)
def test_shard_sampler_splits_one_order(n: int, even: bool, drop_last: bool) -> None:
    inner = list(range(n))
    shards = [list(_ShardSampler(inner, r, 4, even=even, drop_last=drop_last)) for r in range(4)]
    assert [len(s) for s in shards] == [len(_ShardSampler(inner, r, 4, even, drop_last)) for r in range(4)]
    seen = sorted(i for s in shards for i in s)
    if not even:
        assert seen == inner  # every item exactly once
    elif drop_last:
        assert len({len(s) for s in shards}) == 1 and len(set(seen)) == len(seen) == n - n % 4
    else:
        assert len({len(s) for s in shards}) == 1 and set(seen) == set(inner)  # padded by repeating the start


def test_distributed_is_a_no_op_in_one_process(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    learn = make_learner(bs=8, path=tmp_path)
    with contextlib.ExitStack() as stack:
        stack.enter_context(learn.distributed())
        assert learn.accelerator is not None and learn.is_main_process
        assert isinstance(learn.model, nn.Sequential)
        learn.fit(1)
    assert learn.accelerator is None
    ref = make_learner(bs=8, path=tmp_path)
    ref.fit(1)
    for a, b in zip(learn.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_run_says_once_whether_it_is_distributed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`learn.run` answers for one process outside `distributed()`; entering it is said once on rank 0."""
    pytest.importorskip("accelerate")
    learn = make_learner(bs=8, path=tmp_path)
    assert not learn.run.is_distributed and learn.run.world == 1 and learn.run.all_gather(torch.ones(1))
    with learn.distributed():
        assert learn.run.is_distributed and learn.run.is_main
        learn.fit(2)
    out = capsys.readouterr().out
    assert out.count("lamina: data-parallel run over 1 process(es) on cpu") == 1
    assert not learn.run.is_distributed
