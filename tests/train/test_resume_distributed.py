"""A mid-epoch resume under `learn.distributed()` on 2 gloo processes: every process skips the batches of
its own shard that were trained, so the resumed run ends with the uninterrupted run's weights, bit for
bit; resuming that checkpoint with another number of processes is refused."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from _dist import launch
from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks.resume import ResumeCallback

pytestmark = pytest.mark.distributed

WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]
    from test_resume_distributed import CrashAt, make_learner
    from lamina.train.callbacks.resume import ResumeCallback

    torch.set_num_threads(1)
    out, mode, rank = Path(sys.argv[1]), sys.argv[2], int(os.environ["RANK"])
    learn = make_learner(out / mode if mode == "ref" else out / "run")
    if mode == "ref":
        learn.fit_one_cycle(3, 1e-2)
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


def make_learner(path: Path) -> Learner:
    """Shuffled seeded data (6 batches of 8 per process of 2), dropout and AdamW."""
    dls = DataLoaders.from_dsets(_items(96, 0), _items(16, 1), bs=8, num_workers=0, device="cpu", seed=7)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), path=path)


class CrashAt(Callback):
    """Raises after training batch `batch` (0-based) of `epoch`, in every process alike."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def after_batch(self) -> None:
        if self.learn.training and self.learn.epoch == self.epoch and self.learn.iter == self.batch:
            raise RuntimeError("interrupted")


def test_two_processes_resume_mid_epoch_to_the_same_weights(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    here = str(Path(__file__).parent)
    launch(script, [str(tmp_path), "ref", here])
    launch(script, [str(tmp_path), "crash", here])
    ckpt = tmp_path / "run" / "models" / "resume.safetensors"
    assert ckpt.exists()
    # one process cannot take over a two-process run's checkpoint
    with pytest.raises(
        ValueError, match=r"(?s)written by a run of 2 process.*this one has 1.*help: resume with 2"
    ):
        make_learner(tmp_path / "run").fit_one_cycle(3, 1e-2, cbs=[ResumeCallback(every_batches=2)])
    launch(script, [str(tmp_path), "resume", here])
    ref, got = load_file(str(tmp_path / "ref.safetensors")), load_file(str(tmp_path / "resume.safetensors"))
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert not ckpt.exists()  # a finished fit removes its resume point
    assert json.dumps(sorted(ref)) == json.dumps(sorted(got))
