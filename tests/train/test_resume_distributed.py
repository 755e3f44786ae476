"""A mid-epoch resume under `learn.distributed()` on 2 gloo processes: every process skips the batches of
its own shard that were trained, so the resumed run ends with the uninterrupted run's weights, bit for
bit; resuming that checkpoint with another number of processes is refused."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from _dist import launch
from lamina.data import (
    CategoryBlock,
    CrossEntropyLossFlat,
    DataBlock,
    DataLoaders,
    IndexSplitter,
    TransformBlock,
)
from lamina.data.shards import Shards, write_shards
from lamina.train import Learner
from lamina.train.callbacks.resume import ResumeCallback
from lamina.train.checkpoint import read_checkpoint

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]
    import json
    from _callbacks import CrashAt
    from test_resume_distributed import make_learner, shard_files
    from lamina.train import Callback
    from lamina.train.callbacks.resume import ResumeCallback

    torch.set_num_threads(1)
    out, mode, rank = Path(sys.argv[1]), sys.argv[2], int(os.environ["RANK"])
    shards = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    learn = make_learner(out / mode if mode == "ref" else out / "run", shards)
    strategy = os.environ.get("LAMINA_TEST_STRATEGY")  # fsdp: every fit on shards of the weights
    if strategy:
        fit = learn.fit_one_cycle
        def sharded_fit(*args, **kwargs):
            with learn.distributed(strategy=strategy):
                from lamina.train.distributed import is_sharded_model
                assert is_sharded_model(learn.model)
                return fit(*args, **kwargs)
        learn.fit_one_cycle = sharded_fit
    if mode == "ref":
        if shards is not None:  # another learner: drawing an epoch's keys moves the loader to the next
            probe = make_learner(out / "probe", shards)
            with probe.distributed():
                (out / f"files{rank}.json").write_text(json.dumps(shard_files(probe)))
        learn.fit_one_cycle(3, 1e-2)
    elif mode == "die":  # process 1 is killed in the middle of epoch 1; process 0 must stop, not hang
        class Die(Callback):
            def after_batch(self):
                if self.learn.training and self.learn.epoch == 1 and self.learn.iter == 3 and rank == 1:
                    os._exit(3)
        learn.fit_one_cycle(3, 1e-2, cbs=[ResumeCallback(every_batches=2), Die()])
    elif mode == "crash":
        try:
            learn.fit_one_cycle(3, 1e-2, cbs=[ResumeCallback(every_batches=2), CrashAt(epoch=1, batch=4)])
        except RuntimeError as e:
            assert "interrupted" in str(e), e
            sys.exit(0)
        sys.exit("the crash did not happen")
    else:
        torch.manual_seed(1234 + rank)  # the restart's own random state must not matter
        resume = ResumeCallback(every_batches=2)
        learn.fit_one_cycle(3, 1e-2, cbs=[resume])
        where = (resume.resumed_from, resume.resumed_at_batch)
        assert where == (1, 4), where
    if rank == 0:
        save_file({f"p{i}": p.detach().contiguous() for i, p in enumerate(learn.model.parameters())},
                  str(out / f"{mode}.safetensors"))
    """
)


def _items(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return [(x[i], y[i]) for i in range(n)]


def features(data: bytes) -> torch.Tensor:
    """An item's 4 numbers, stored in its shard as bytes."""
    return torch.frombuffer(bytearray(data), dtype=torch.float32)


def _first(o: tuple[bytes, int]) -> bytes:
    return o[0]


def _second(o: tuple[bytes, int]) -> int:
    return o[1]


def _block(getters: list[Any]) -> DataBlock:
    return DataBlock(
        blocks=(TransformBlock(type_tfms=[features]), CategoryBlock),
        getters=getters,
        splitter=IndexSplitter(list(range(96, 112))),
    )


def write_items(out: Path) -> Path:
    """The same 96 + 16 items as shards of ~12 items (bytes of 4 float32, a label)."""
    raw = [(x.numpy().tobytes(), int(y)) for x, y in _items(96, 0) + _items(16, 1)]
    return write_shards(_block([_first, _second]), raw, out, shard_bytes=12 * 16)


def shard_files(learn: Learner) -> list[int]:
    """The shard file of every training item this process draws in an epoch (its sampler's keys)."""
    ds = learn.dls.train.dataset
    of_item = ds.dsets.items.groups()  # type: ignore[attr-defined]
    return sorted({of_item[ds.idxs[k[0]]] for k in learn.dls.train.torch_loader.sampler})  # type: ignore[attr-defined]


def make_learner(path: Path, shards: Path | None = None) -> Learner:
    """Shuffled seeded data (6 batches of 8 per process of 2), dropout and AdamW; in memory or from shards."""
    if shards is None:
        dls = DataLoaders.from_dsets(_items(96, 0), _items(16, 1), bs=8, num_workers=0, device="cpu", seed=7)
    else:
        dls = _block([None, None]).dataloaders(Shards(shards), bs=8, num_workers=0, device="cpu", seed=7)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), path=path)


@pytest.mark.parametrize("source", ["memory", "shards", "fsdp"])
def test_two_processes_resume_mid_epoch_to_the_same_weights(
    tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsdp: the data in memory, each process holding half of every weight and of the optimizer state."""
    if source == "fsdp":
        monkeypatch.setenv("LAMINA_TEST_STRATEGY", "fsdp")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    here = str(Path(__file__).parent)
    extra = [str(write_items(tmp_path / "shards"))] if source == "shards" else []
    launch(script, [str(tmp_path), "ref", here, *extra])
    if extra:  # each process reads its own shard files: none in common, all of them between the two
        files = [set(json.loads((tmp_path / f"files{r}.json").read_text())) for r in (0, 1)]
        assert files[0] and files[1] and not files[0] & files[1]
        assert files[0] | files[1] == set(range(8))  # 96 training items, 12 a file (files 8-9: validation)
    launch(script, [str(tmp_path), "crash", here, *extra])
    ckpt = tmp_path / "run" / "models" / "resume.safetensors"
    assert ckpt.exists()
    # one process cannot take over a two-process run's checkpoint
    with pytest.raises(
        ValueError, match=r"(?s)written by a run of 2 process.*this one has 1.*help: resume with 2"
    ):
        make_learner(tmp_path / "run", Path(extra[0]) if extra else None).fit_one_cycle(
            3, 1e-2, cbs=[ResumeCallback(every_batches=2)]
        )
    launch(script, [str(tmp_path), "resume", here, *extra])
    ref, got = load_file(str(tmp_path / "ref.safetensors")), load_file(str(tmp_path / "resume.safetensors"))
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert not ckpt.exists()  # a finished fit removes its resume point
    assert json.dumps(sorted(ref)) == json.dumps(sorted(got))


def test_a_killed_process_stops_the_others_with_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (code0, log0), (code1, _) = launch(
        script, [str(tmp_path), "die", str(Path(__file__).parent)], check=False
    )
    assert code1 == 3
    assert code0 != 0 and "PeerLostError" in log0, log0[-3000:]
    assert "lost contact with another process" in log0 and "help: read the other processes' logs" in log0
    # the last checkpoint is whole: written after batch 2 of epoch 1 (1-based), before process 1 died
    _, meta = read_checkpoint(tmp_path / "run" / "models" / "resume.safetensors")
    state = meta["extra"]["resume"]
    assert (state["epoch"], state["batches_done"], state["world_size"]) == (1, 2, 2)
