"""Stream suite: data past one machine's memory (`lamina.data.shards`, `from_large_parquet`).

Five configurations, in one run:

- `images-per-s`: one pass over the training loader of the MNIST sample (4,000 of 5,000 PNGs, bs 64,
  decoded, no model), read `folder` (the baseline: files in class folders), `shards` (the same DataBlock
  reading local shards of ~8 MB) and `shards-http` (the shards behind a loopback HTTP server, a fresh cache
  each repetition: the download is in the time). Unit: images per second (higher is better).
- `resume`: a synthetic stream of `stream_gb` GB (items of 100 KB random bytes and a label, shards of 256 MB;
  written once into the cache folder). A fit with `ResumeCallback(every_batches=...)` is interrupted half way
  through its epoch; `restart` is the time from nothing (no Shards, no loaders) to the first batch trained
  after resuming: open the shards, build the loaders, restore the checkpoint, skip the trained batches,
  fetch, check (sha256) and map the next shard. `fresh` is the same without a checkpoint (time to the first
  batch of a new fit). Unit: seconds.
- `table-memory`: a parquet table of `table_rows` rows (8 numbers, 2 text columns, a label; 2-3 GB as a
  pandas DataFrame), and 200 training batches of `tabular_learner`, each contender in its own process:
  `whole-table` reads it with pandas and `from_df` (the baseline), `lamina-chunks` uses
  `from_large_parquet` (256k-row chunks, a 200k-row setup sample). Value: peak RSS of the process (MB, lower
  is better); side figures: the peak of its anonymous memory (RSS minus mapped file pages, sampled every
  50 ms) and the wall time.
- `text-memory`: a parquet corpus of `texts` synthetic reviews (8 to 80 words from a 2,000-word vocabulary,
  a label the words decide; ~1.3 GB as Python strings) and `train_batches` batches of a tiny BERT
  (`text_classifier_learner`, word-level tokenizer, bs 64), each contender in its own process:
  `whole-corpus` reads it with pandas and `TextDataLoaders.from_df` (tokenized into memory, the baseline);
  `lamina-shards` reads the token-id shards written once beforehand (`TextDataLoaders.df_block` +
  `write_shards`, 64 MB shards; not timed) with `TextDataLoaders.from_shards`. Same unit and side figures as
  `table-memory`.

- `scaling`: `vision_learner(dls, "test_resnet")` trained for 2 epochs on the MNIST shards (bs 64 per
  process, one torch thread per process), in 1 process and in 2 (`torchrun`'s environment, gloo, each
  process reading its own shard files). Unit: training images per second over all processes; the note
  gives the scaling efficiency, 2-process img/s / (2 x 1-process img/s) (1.0: perfect).

`--quick` shrinks everything (600 digits, a 50 MB stream, 50k rows, 5k texts, one resume): it checks the
plumbing only. `--configs text-memory,...` runs only the configurations named.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    REPO_ROOT,
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
    quiet,
)

__all__ = ["StreamConfig", "run_suite", "scale_worker", "table_worker", "text_worker"]


@dataclass(frozen=True)
class StreamConfig:
    images: int | None = None  # None: the whole MNIST sample
    stream_gb: float = 10.0
    item_kb: int = 100
    table_rows: int = 16_000_000
    train_batches: int = 200
    scale_epochs: int = 2
    texts: int = 4_000_000


# -- images: folder, local shards, shards over HTTP ---------------------------------------------------------
def _digits(path: Path, n: int | None) -> list[Path]:
    from lamina.data import get_image_files

    files = get_image_files(path)
    return files if n is None else files[:: max(1, len(files) // n)][:n]


def _image_block(n: int | None) -> Any:
    from functools import partial

    from lamina.data import CategoryBlock, DataBlock, RandomSplitter, parent_label
    from lamina.vision import ImageBlock

    return DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=partial(_digits, n=n),
        get_y=parent_label,
        splitter=RandomSplitter(0.2, seed=42),
    )


def _images_per_s(dblock: Any, source: Any, workers: int | None) -> Sample:
    start = time.perf_counter()
    dls = dblock.dataloaders(source, bs=64, seed=0, num_workers=workers, device="cpu")
    n = 0
    for xb, _ in dls.train:
        n += len(xb)
    return Sample(n / (time.perf_counter() - start))


def _images(cfg: StreamConfig, opts: Options, cache: Path) -> ConfigResult:
    from _http import serve  # tests/_http.py: the loopback server the tests use
    from lamina.data import Shards, samples, write_shards

    mnist = samples.mnist_sample()
    dblock = _image_block(cfg.images)
    shards = cache / f"mnist-shards-{cfg.images or 'all'}"
    if not (shards / "lamina-shards.json").exists():
        shutil.rmtree(shards, ignore_errors=True)
        write_shards(dblock, mnist, shards, shard_bytes=8 << 20)
    res = ConfigResult(
        "images-per-s", "img/s", lower_is_better=False, baseline="folder",
        params={"images": cfg.images or 5000, "bs": 64, "workers": opts.workers, "shard_mb": 8},
    )  # fmt: skip
    with serve() as server:
        for f in shards.iterdir():
            server.files[f"/mnist/{f.name}"] = f.read_bytes()

        def over_http() -> Sample:
            with tempfile.TemporaryDirectory() as tmp:
                return _images_per_s(dblock, Shards(server.url("/mnist"), cache=tmp), opts.workers)

        contenders = [
            Contender("folder", lambda: _images_per_s(dblock, mnist, opts.workers)),
            Contender("shards", lambda: _images_per_s(dblock, Shards(shards), opts.workers)),
            Contender("shards-http", over_http),
        ]
        interleave(res, contenders, reps=opts.n_reps(3, 1), warmup=1)
    return res


# -- resume: a large synthetic stream ------------------------------------------------------------------------
def first_bytes(data: bytes) -> torch.Tensor:
    """An item's input: its first 16 bytes as numbers (the item is read whole, as real data would be)."""
    return torch.frombuffer(bytearray(data[:16]), dtype=torch.uint8).float() / 255


def _stream_block() -> Any:
    from lamina.data import CategoryBlock, DataBlock, IndexSplitter, TransformBlock

    return DataBlock(
        blocks=(TransformBlock(type_tfms=[first_bytes]), CategoryBlock),
        getters=[None, None],
        splitter=IndexSplitter([]),
    )


class _Items:
    """`n` synthetic items, each (100 KB of random bytes, a label), made when read (never all in memory)."""

    def __init__(self, n: int, item_kb: int) -> None:
        self.n, self.size = n, item_kb * 1024

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        rng = np.random.default_rng(i)
        return rng.bytes(self.size), int(i % 2)


def _first(o: tuple[bytes, int]) -> bytes:
    return o[0]


def _second(o: tuple[bytes, int]) -> int:
    return o[1]


def _write_stream(cfg: StreamConfig, cache: Path) -> Path:
    from lamina.data import CategoryBlock, DataBlock, IndexSplitter, TransformBlock, write_shards

    n = int(cfg.stream_gb * 1e9 / (cfg.item_kb * 1024))
    out = cache / f"stream-{n}x{cfg.item_kb}kb"
    if (out / "lamina-shards.json").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    log(f"  writing a {cfg.stream_gb:g} GB stream ({n:,} items) to {out} (once)")
    dblock = DataBlock(
        blocks=(TransformBlock(type_tfms=[first_bytes]), CategoryBlock),
        getters=[_first, _second],
        splitter=IndexSplitter([]),
    )
    start = time.perf_counter()
    write_shards(dblock, _Items(n, cfg.item_kb), out, shard_bytes=256 << 20)
    log(f"  written in {time.perf_counter() - start:.0f} s")
    return out


class _FirstBatch:
    """Times from its creation to the first training batch of a fit, then stops the fit."""

    def __init__(self) -> None:
        from lamina.train import Callback, CancelFit

        outer = self

        class Stop(Callback):
            order = 100  # after ResumeCallback has restored the run

            def before_batch(self) -> None:
                if self.learn.training:
                    outer.seconds = time.perf_counter() - outer.start
                    raise CancelFit

        gc.collect()  # the last run's loaders (and their worker processes) go now, not inside the timing
        self.start, self.seconds, self.cb = time.perf_counter(), float("nan"), Stop()


def _stream_learner(path: Path, run: Path) -> Any:
    from torch import nn

    from lamina.data import Shards
    from lamina.train import Learner

    dls = _stream_block().dataloaders(Shards(path), bs=64, seed=0, num_workers=1, device="cpu")
    torch.manual_seed(0)
    return Learner(dls, nn.Linear(16, 2), path=run)


def _resume(cfg: StreamConfig, opts: Options, cache: Path) -> ConfigResult:
    quick = opts.quick
    from lamina.train import Callback
    from lamina.train.callbacks.resume import ResumeCallback

    path = _write_stream(cfg, cache)
    run = Path(tempfile.mkdtemp(prefix="lamina-resume-"))
    learn = _stream_learner(path, run)
    half = len(learn.dls.train) // 2

    class Interrupt(Callback):
        def after_batch(self) -> None:
            if self.learn.training and self.learn.iter == half:
                raise KeyboardInterrupt

    log(f"  training half an epoch ({half} of {len(learn.dls.train)} batches) to leave a checkpoint")
    with contextlib.suppress(KeyboardInterrupt), quiet():
        learn.fit(1, cbs=[ResumeCallback("r", every_batches=half, keep=True), Interrupt()])
    res = ConfigResult(
        "resume", "s", lower_is_better=True, baseline="fresh",
        params={"gb": cfg.stream_gb, "items": len(learn.dls.train.dataset), "item_kb": cfg.item_kb,
                "shard_mb": 256, "resumed_at_batch": half},
    )  # fmt: skip

    def restart() -> Sample:
        t = _FirstBatch()
        resume = ResumeCallback("r", every_batches=half, keep=True)
        with quiet():
            _stream_learner(path, run).fit(1, cbs=[resume, t.cb])
        assert resume.resumed_at_batch == half, resume.resumed_at_batch
        return Sample(t.seconds)

    def fresh() -> Sample:
        t = _FirstBatch()
        with quiet():
            _stream_learner(path, run).fit(1, cbs=[t.cb])
        return Sample(t.seconds)

    reps = 1 if quick else 3
    interleave(res, [Contender("fresh", fresh), Contender("restart", restart)], reps=reps, warmup=1 - quick)
    shutil.rmtree(run, ignore_errors=True)
    return res


# -- a table larger than memory ------------------------------------------------------------------------------
def _write_table(cfg: StreamConfig, cache: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = cache / f"table-{cfg.table_rows}.parquet"
    if out.exists():
        return out
    log(f"  writing a {cfg.table_rows:,}-row parquet table to {out} (once)")
    tmp = out.with_suffix(".partial")
    rng = np.random.default_rng(0)
    words = np.array([f"w{i:04d}" for i in range(5000)])
    with pq.ParquetWriter(tmp, pa.schema(
        [(f"x{k}", pa.float64()) for k in range(8)] + [("city", pa.string()), ("job", pa.string()),
                                                       ("y", pa.string())]
    )) as w:  # fmt: skip
        step = 1_000_000
        for start in range(0, cfg.table_rows, step):
            m = min(step, cfg.table_rows - start)
            cols: dict[str, Any] = {f"x{k}": rng.normal(size=m) for k in range(8)}
            cols["city"] = words[rng.integers(0, 5000, m)]
            cols["job"] = words[rng.integers(0, 40, m)]
            cols["y"] = np.where(cols["x0"] + (cols["job"] < "w0020") > 0.5, "yes", "no")
            w.write_table(pa.table(cols), row_group_size=128_000)
    tmp.rename(out)
    return out


class _PeakMemory:
    """Samples this process's anonymous memory every 50 ms; `report()` prints peak RSS, peak anon, seconds."""

    def __init__(self) -> None:
        self.peak_anon, self.stop, self.start = 0, threading.Event(), time.perf_counter()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak_anon = max(self.peak_anon, _status_kb("RssAnon"))
            self.stop.wait(0.05)

    def report(self) -> None:
        self.stop.set()
        out = {"peak_rss_mb": _status_kb("VmHWM") / 1024, "peak_anon_mb": self.peak_anon / 1024,
               "seconds": time.perf_counter() - self.start}  # fmt: skip
        print(json.dumps(out), flush=True)


def _fit_batches(learn: Any, batches: int) -> None:
    """`batches` training batches of one epoch, then stop (no validation)."""
    from lamina.train import Callback, CancelFit

    class Enough(Callback):
        def after_batch(self) -> None:
            if self.learn.training and self.learn.iter + 1 >= batches:
                raise CancelFit

    learn.fit(1, cbs=[Enough()])


def table_worker(mode: str, path: str, batches: int) -> None:
    """One contender of `table-memory` in this process: prints JSON with peak RSS, peak anonymous, seconds."""
    meter = _PeakMemory()
    from lamina.tabular import TabularDataLoaders, tabular_learner

    torch.set_num_threads(1)
    if mode == "whole-table":
        import pandas as pd

        dls = TabularDataLoaders.from_df(
            pd.read_parquet(path), "y", cat_names=["city", "job"], seed=0, bs=1024
        )
    else:
        dls = TabularDataLoaders.from_large_parquet(
            path, "y", cat_names=["city", "job"], seed=0, bs=1024, chunk_rows=256_000, setup_rows=200_000
        )
    _fit_batches(tabular_learner(dls), batches)
    meter.report()


def _in_process(func: str, args: tuple[Any, ...], what: str) -> Sample:
    """`benchmarks.stream.<func>(*args)` in a fresh process; its JSON line as a peak-memory sample."""
    code = f"from benchmarks.stream import {func}; {func}(*{args!r})"
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'src'}"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{r.stderr[-2000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return Sample(got["peak_rss_mb"], {"anon_mb": got["peak_anon_mb"], "seconds": got["seconds"]})


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _table(cfg: StreamConfig, opts: Options, cache: Path) -> ConfigResult:
    path = _write_table(cfg, cache)
    res = ConfigResult(
        "table-memory", "MB", lower_is_better=True, baseline="whole-table",
        params={"rows": cfg.table_rows, "parquet_mb": round(path.stat().st_size / 1e6),
                "train_batches": cfg.train_batches, "bs": 1024},
    )  # fmt: skip

    def worker(mode: str) -> Sample:
        return _in_process("table_worker", (mode, str(path), cfg.train_batches), mode)

    contenders = [Contender(m, lambda m=m: worker(m)) for m in ("whole-table", "lamina-chunks")]  # type: ignore[misc]
    interleave(res, contenders, reps=1, warmup=0)
    return res


# -- a corpus of texts larger than memory --------------------------------------------------------------------
_VOCAB = 2000  # words w0000..w1999: w0000-w0049 say "pos", w0050-w0099 "neg", the rest are filler


def _word_tokenizer() -> Any:
    """A BERT-style word-level fast tokenizer over the synthetic vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate([*special, *(f"w{i:04d}" for i in range(_VOCAB))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return tok


def _write_corpus(cfg: StreamConfig, cache: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = cache / f"corpus-{cfg.texts}.parquet"
    if out.exists():
        return out
    log(f"  writing a {cfg.texts:,}-text parquet corpus to {out} (once)")
    tmp = out.with_suffix(".partial")
    rng = np.random.default_rng(0)
    words = np.array([f"w{i:04d}" for i in range(_VOCAB)])
    with pq.ParquetWriter(tmp, pa.schema([("text", pa.string()), ("label", pa.string())])) as w:
        step = 250_000
        for start in range(0, cfg.texts, step):
            m = min(step, cfg.texts - start)
            pos = rng.random(m) < 0.5
            lengths = rng.integers(8, 81, m)
            idx = rng.integers(100, _VOCAB, (m, 80))
            idx[:, :2] = np.where(pos[:, None], rng.integers(0, 50, (m, 2)), rng.integers(50, 100, (m, 2)))
            texts = [" ".join(words[row[:n]]) for row, n in zip(idx, lengths, strict=True)]
            w.write_table(pa.table({"text": texts, "label": np.where(pos, "pos", "neg")}))
    tmp.rename(out)
    return out


def _corpus_shards(corpus: Path) -> Path:
    """The corpus written once as token-id shards (64 MB each) next to it."""
    import pandas as pd

    from lamina.data import write_shards
    from lamina.text import TextDataLoaders, Tokenize

    out = corpus.with_name(corpus.stem + "-shards")
    if not out.exists():
        log(f"  writing {corpus.name} as token-id shards to {out} (once)")
        block = TextDataLoaders.df_block(
            "text", "label", tokenizer=Tokenize(_word_tokenizer(), max_len=128), seed=0
        )
        write_shards(block, pd.read_parquet(corpus), out, shard_bytes=64 << 20)
    return out


def text_worker(mode: str, path: str, batches: int) -> None:
    """One contender of `text-memory` in this process: prints JSON with peak RSS, peak anonymous, seconds."""
    meter = _PeakMemory()
    from transformers import BertConfig

    from lamina.text import TextDataLoaders, Tokenize, text_classifier_learner

    torch.set_num_threads(1)
    tok = Tokenize(_word_tokenizer(), max_len=128)
    if mode == "whole-corpus":
        import pandas as pd

        dls = TextDataLoaders.from_df(pd.read_parquet(path), "text", "label", tokenizer=tok, seed=0, bs=64)
    else:
        dls = TextDataLoaders.from_shards(path, tokenizer=tok, seed=0, bs=64)
    config = BertConfig(
        vocab_size=_VOCAB + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    _fit_batches(text_classifier_learner(dls, config), batches)
    meter.report()


def _text(cfg: StreamConfig, opts: Options, cache: Path) -> ConfigResult:
    corpus = _write_corpus(cfg, cache)
    shards = _corpus_shards(corpus)
    shard_mb = sum(f.stat().st_size for f in shards.glob("*.arrow")) / 1e6
    res = ConfigResult(
        "text-memory", "MB", lower_is_better=True, baseline="whole-corpus",
        params={"texts": cfg.texts, "parquet_mb": round(corpus.stat().st_size / 1e6),
                "shards_mb": round(shard_mb), "train_batches": cfg.train_batches, "bs": 64},
    )  # fmt: skip
    sources = {"whole-corpus": corpus, "lamina-shards": shards}

    def worker(mode: str) -> Sample:
        return _in_process("text_worker", (mode, str(sources[mode]), cfg.train_batches), mode)

    contenders = [Contender(m, lambda m=m: worker(m)) for m in sources]  # type: ignore[misc]
    interleave(res, contenders, reps=1, warmup=0)
    return res


# -- scaling: 2 processes against 1 --------------------------------------------------------------------------
def scale_worker(path: str, epochs: int, out: str) -> None:
    """One process of the `scaling` config (WORLD_SIZE from the launcher): fit, then rank 0 writes JSON."""
    from lamina.train import accuracy
    from lamina.vision import ImageDataLoaders, vision_learner

    torch.set_num_threads(1)
    dls = ImageDataLoaders.from_shards(path, bs=64, seed=0, num_workers=0, device="cpu")
    torch.manual_seed(0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=accuracy)
    start = time.perf_counter()
    with quiet():
        learn.fit(epochs, 1e-2)
    seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", "0")) == 0:
        images = epochs * len(dls.train) * 64  # the whole training set per epoch, whatever the processes
        acc = float(learn.recorder.values[-1][2])
        Path(out).write_text(json.dumps({"seconds": seconds, "images": images, "accuracy": acc}))


def _launch(world: int, path: Path, epochs: int) -> Sample:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        code = (
            f"from benchmarks.stream import scale_worker; scale_worker({str(path)!r}, {epochs}, {str(out)!r})"
        )
        procs = []
        for rank in range(world):
            env = {
                **os.environ,
                "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'src'}",
                "OMP_NUM_THREADS": "1",
            }
            if world > 1:
                env.update(
                    RANK=str(rank),
                    LOCAL_RANK=str(rank),
                    WORLD_SIZE=str(world),
                    LOCAL_WORLD_SIZE=str(world),
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(port),
                )
            cmd = [sys.executable, "-c", code]
            pipe = subprocess.PIPE
            procs.append(
                subprocess.Popen(
                    cmd, env=env, cwd=REPO_ROOT, stdout=pipe, stderr=subprocess.STDOUT, text=True
                )
            )
        logs = [p.communicate(timeout=1800)[0] for p in procs]
        if any(p.returncode for p in procs) or not out.exists():
            codes = [p.returncode for p in procs]
            raise RuntimeError(
                f"scaling run of {world} process(es) failed ({codes}):\n" + "\n".join(x[-1500:] for x in logs)
            )
        got = json.loads(out.read_text())
    return Sample(got["images"] / got["seconds"], {"seconds": got["seconds"], "accuracy": got["accuracy"]})


def _scaling(cfg: StreamConfig, opts: Options, cache: Path) -> ConfigResult:
    from lamina.data import samples, write_shards

    path = cache / f"mnist-shards-{cfg.images or 'all'}-256kb"  # several files: one set per process
    if not (path / "lamina-shards.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        write_shards(_image_block(cfg.images), samples.mnist_sample(), path, shard_bytes=256 << 10)
    res = ConfigResult(
        "scaling", "img/s", lower_is_better=False, baseline="1-process",
        params={"model": "test_resnet", "bs_per_process": 64, "shard_kb": 256, "epochs": cfg.scale_epochs,
                "threads": 1, "images": cfg.images or 5000},
    )  # fmt: skip
    contenders = [
        Contender("1-process", lambda: _launch(1, path, cfg.scale_epochs)),
        Contender("2-processes", lambda: _launch(2, path, cfg.scale_epochs)),
    ]
    interleave(res, contenders, reps=opts.n_reps(2, 1), warmup=0)
    one, two = (statistics.median(res.values[k]) for k in ("1-process", "2-processes"))
    res.notes.append(f"scaling efficiency (2-process img/s / (2 x 1-process img/s)): {two / (2 * one):.2f}")
    return res


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("stream")
    cfg = (
        StreamConfig(images=600, stream_gb=0.05, table_rows=50_000, train_batches=20, texts=5_000)
        if opts.quick
        else StreamConfig()
    )
    cache = opts.cache_dir / "stream"
    cache.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO_ROOT / "tests"))  # tests/_http.py
    runs = {
        "images-per-s": ("images per second from a folder, local shards and shards over HTTP", _images),
        "resume": (f"resuming a {cfg.stream_gb:g} GB stream in the middle of its epoch", _resume),
        "scaling": ("training on the MNIST shards in 1 process and in 2 (gloo, 1 thread each)", _scaling),
        "table-memory": (f"peak memory training on a {cfg.table_rows:,}-row parquet table", _table),
        "text-memory": (f"peak memory training on a {cfg.texts:,}-text corpus", _text),
    }
    for name, (what, run) in runs.items():
        if not opts.configs or name in opts.configs:
            log(f"stream: {what}")
            suite.configs.append(run(cfg, opts, cache))
    return suite
