"""Shards: a DataBlock's items written to Arrow shards and read back, from a folder or a loopback URL,
give the batches the folder gives; a mid-epoch resume over them is exact with another number of workers;
missing, truncated, altered or foreign files and a server that hangs up are refused with clear errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _callbacks import CrashAt
from _http import serve
from lamina.data import CategoryBlock, DataBlock, RandomSplitter, get_image_files, parent_label
from lamina.data.shards import MANIFEST, ShardError, Shards, write_shards
from lamina.train import Learner, accuracy
from lamina.train.callbacks.resume import ResumeCallback
from lamina.vision import ImageBlock, RandomResizedCrop


def _zeros_and_ones(path: Path) -> list[Path]:
    """120 MNIST digits, 0s and 1s (a learnable two-class problem that builds in a second)."""
    files = get_image_files(path)
    return [f for d in ("0", "1") for f in [f for f in files if f.parent.name == d][::4][:60]]


def digits_block() -> DataBlock:
    return DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=_zeros_and_ones,
        get_y=parent_label,
        splitter=RandomSplitter(0.25, seed=3),
        item_tfms=RandomResizedCrop(24, min_scale=0.6),  # random: the item seeds must survive the shards
    )


@pytest.fixture(scope="module")
def shards(mnist_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "digits"
    write_shards(digits_block(), mnist_path, out, shard_bytes=8_000)  # several shards of ~30 digits
    return out


def _batches(dls_train: object, n: int = 3) -> list[tuple[torch.Tensor, ...]]:
    return [b for _, b in zip(range(n), dls_train, strict=False)]  # type: ignore[call-overload]


def _assert_same(a: list[tuple[torch.Tensor, ...]], b: list[tuple[torch.Tensor, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for s, t in zip(x, y, strict=True):
            assert torch.equal(s, t)


def test_shards_give_the_folders_batches(shards: Path, mnist_path: Path) -> None:
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["items"] == 120 and len(manifest["shards"]) > 3
    src = Shards(shards)
    assert len(src) == 120 and src.splits()[1] and src[0].name.endswith(".png")
    folder = digits_block().dataloaders(mnist_path, bs=16, seed=0, num_workers=0)
    sharded = digits_block().dataloaders(src, bs=16, seed=0, num_workers=0)
    assert sharded.vocab == folder.vocab == ["0", "1"]
    assert len(sharded.valid.dataset) == len(folder.valid.dataset) == 30
    _assert_same(_batches(sharded.train), _batches(folder.train))
    _assert_same(_batches(sharded.valid), _batches(folder.valid))


def test_the_order_does_not_depend_on_the_workers(shards: Path) -> None:
    one = digits_block().dataloaders(Shards(shards), bs=16, seed=1, num_workers=0)
    two = digits_block().dataloaders(Shards(shards), bs=16, seed=1, num_workers=2)
    _assert_same(_batches(two.train, 5), _batches(one.train, 5))


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(3 * 24 * 24, 2))


def shard_learner(shards: Path, workers: int) -> Learner:
    dls = digits_block().dataloaders(Shards(shards), bs=10, seed=5, num_workers=workers, device="cpu")
    torch.manual_seed(0)
    return Learner(dls, tiny_cnn(), metrics=accuracy, path=shards.parent / "runs")


def test_mid_epoch_resume_over_shards_is_exact_with_other_workers(shards: Path) -> None:
    random.seed(0)
    np.random.seed(0)
    ref = shard_learner(shards, workers=0)
    ref.fit_one_cycle(3, 3e-2)
    assert ref.recorder.values[-1][2] >= 0.9  # it learns (valid loss, then accuracy)
    ref_params = [p.detach().clone() for p in ref.model.parameters()]
    with pytest.raises(RuntimeError, match="interrupted"):
        shard_learner(shards, workers=0).fit_one_cycle(
            3, 3e-2, cbs=[ResumeCallback("r", every_batches=3), CrashAt(epoch=1, batch=7)]
        )
    random.seed(9)  # the restart's own state must not matter: the checkpoint's is restored
    learn = shard_learner(shards, workers=2)  # another number of workers after the restart
    resume = ResumeCallback("r", every_batches=3)
    learn.fit_one_cycle(3, 3e-2, cbs=[resume])
    assert (resume.resumed_from, resume.resumed_at_batch) == (1, 6)
    for a, b in zip(learn.model.parameters(), ref_params, strict=True):
        assert torch.equal(a.detach(), b)  # bit-identical


def test_shards_over_http_and_a_server_that_hangs_up(shards: Path, tmp_path: Path) -> None:
    with serve() as server:
        for f in shards.iterdir():
            server.files[f"/digits/{f.name}"] = f.read_bytes()
        first = json.loads((shards / MANIFEST).read_text())["shards"][0]["file"]
        server.extra_length[f"/digits/{first}"] = 1000  # announces more than it sends, then hangs up
        cache = tmp_path / "cache"
        src = Shards(server.url("/digits"), cache=cache)  # the manifest and index come; no shard yet
        assert not any(p.name.startswith("shard-") for p in cache.iterdir())
        with pytest.raises(ShardError, match=rf"(?s)fetching .*{first} failed.*help: nothing was kept"):
            src.value(src[0], 0)
        assert not any(p.name.startswith(("shard-", ".shard-")) for p in cache.iterdir())  # nothing half
        del server.extra_length[f"/digits/{first}"]
        remote = digits_block().dataloaders(src, bs=16, seed=0, num_workers=0)
        local = digits_block().dataloaders(Shards(shards), bs=16, seed=0, num_workers=0)
        _assert_same(_batches(remote.train, 2), _batches(local.train, 2))
        fetched = sum(r.startswith("/digits/shard-") for r in server.requests)
        _batches(
            digits_block().dataloaders(Shards(server.url("/digits"), cache=cache), bs=16, seed=0).train, 2
        )
        assert sum(r.startswith("/digits/shard-") for r in server.requests) == fetched  # cached: not again


def _copy(shards: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(shards, dst)
    return dst


def test_a_missing_truncated_or_altered_shard_is_named(shards: Path, tmp_path: Path) -> None:
    bad = _copy(shards, tmp_path)
    src = Shards(bad)
    (bad / "shard-00000.arrow").unlink()
    with pytest.raises(ShardError, match=r"(?s)shard-00000.arrow is missing.*help: copy the whole"):
        src.value(src[0], 0)
    path = bad / "shard-00001.arrow"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"(?s)shard-00001.arrow.*truncated, altered or replaced"):
        src.value(src[40], 0)
    altered = bytearray((shards / "shard-00002.arrow").read_bytes())
    altered[len(altered) // 2] ^= 0xFF  # same size, one byte flipped: only the checksum sees it
    (bad / "shard-00002.arrow").write_bytes(bytes(altered))
    with pytest.raises(ShardError, match="sha256 differs"):
        src.value(src[70], 0)
    assert src.value(src[100], 0)[:4] == b"\x89PNG"  # the others still read


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["shards"][0].update(file="../../etc/passwd"), "file name"),
        (lambda m: m["shards"][0].update(bytes=10**12), "bytes"),
        (lambda m: m["shards"][0].update(sha256="x" * 64), "sha256"),
        (lambda m: m.update(format=99), "format 99"),
        (lambda m: m["elements"][0].update(kind="pickle"), "element 0"),
        (lambda m: m.update(items=m["items"] + 1), "do not hold"),
        (lambda m: m.pop("writer"), "writer"),
    ],
)
def test_a_tampered_manifest_is_refused_before_use(
    shards: Path, tmp_path: Path, edit: object, message: str
) -> None:
    bad = _copy(shards, tmp_path)
    m = json.loads((bad / MANIFEST).read_text())
    edit(m)  # type: ignore[operator]
    (bad / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ShardError, match=message):
        Shards(bad)


def test_not_a_shard_folder_and_not_json(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match=r"(?s)no lamina-shards.json.*help: point at a folder"):
        Shards(tmp_path)
    (tmp_path / MANIFEST).write_text("{nope")
    with pytest.raises(ShardError, match="is not JSON"):
        Shards(tmp_path)


def test_writing_refuses_a_used_folder_unsupported_values_and_leaves_nothing(
    mnist_path: Path, tmp_path: Path, shards: Path
) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        write_shards(digits_block(), mnist_path, used)
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    odd = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=_zeros_and_ones,
        get_y=lambda p: {"label": p.parent.name},
    )
    with pytest.raises(TypeError, match=r"(?s)element 1 of the first item .* dict.*help: shards hold"):
        write_shards(odd, mnist_path, tmp_path / "odd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]  # no partial folder left
    three = DataBlock(blocks=(ImageBlock, CategoryBlock, CategoryBlock), n_inp=1)
    with pytest.raises(ValueError, match=r"(?s)holds 2 elements.*3 blocks.*help: read the shards"):
        three.dataloaders(Shards(shards))


def test_a_verified_file_is_not_hashed_again(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lamina.data.shards as mod

    monkeypatch.setenv("LAMINA_HOME", str(tmp_path / "home"))
    hashed: list[str] = []
    real = mod._sha256

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(mod, "_sha256", counting)
    src = Shards(shards)
    src.value(src[0], 0)
    assert sorted(hashed) == ["index.arrow", "shard-00000.arrow"]
    again = Shards(shards)  # another process or a restart: the markers say these files were checked
    again.value(again[0], 0)
    assert len(hashed) == 2
    bad = _copy(shards, tmp_path)
    (bad / "shard-00000.arrow").write_bytes((bad / "shard-00000.arrow").read_bytes())  # another file: hashed
    other = Shards(bad)
    other.value(other[0], 0)
    assert hashed[2:] == ["index.arrow", "shard-00000.arrow"]


def test_every_item_reads_back_across_record_batches(tmp_path: Path) -> None:
    """10,000 rows: the index spans a dozen record batches (datasets' ArrowWriter writes 1,000 rows at a
    time) and each shard several; every value (its batch found by bisection) is the one written, at the
    batch boundaries too."""
    from lamina.data import RegressionBlock, TransformBlock

    rows = [(f"r{i}", [i % 7] * (i % 5 + 1), float(i) / 3) for i in range(10_000)]
    dblock = DataBlock(
        blocks=(TransformBlock, TransformBlock, RegressionBlock),
        getters=[lambda r: r[0], lambda r: r[1], lambda r: r[2]],
        splitter=lambda items: (list(range(0, len(items), 2)), list(range(1, len(items), 2))),
        n_inp=2,
    )
    src = Shards(write_shards(dblock, rows, tmp_path / "rows", shard_bytes=40_000))
    assert len(src.manifest["shards"]) > 2 and src._index.column("name").num_chunks > 9
    edges = [0, 255, 256, 999, 1000, 1001, 4095, 4096, 8999, 9000, 9999]
    for i in edges + random.Random(0).sample(range(10_000), 300):
        assert src.value(i, 0) == rows[i][0] and src.value(i, 1) == rows[i][1], i
        assert src.value(i, 2) == pytest.approx(rows[i][2]) and src[i].name.startswith("("), i
    assert src.sizes(0).tolist() == [len(r[0]) for r in rows]
    assert src.sizes(1).tolist() == [len(r[1]) for r in rows]
