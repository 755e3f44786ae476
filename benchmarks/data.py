"""Data suite: images/s to turn a folder of JPEGs into augmented, normalised batches on the device.

The folder is generated once into the cache dir (not the repository): noise, gradients and shapes, of
mixed sizes, in class sub-folders. Every contender reads the same files with the same `num_workers`,
batch size, random-resized-crop size, horizontal flips and ImageNet normalisation:

- `torchvision` (the baseline, the usual recipe): `decode_jpeg` + transforms.v2 RandomResizedCrop,
  RandomHorizontalFlip, ToDtype, Normalize, all per item in the workers; then `.to(device)`;
- `torchvision:batch`: lamina's plan in plain torch: decode + crop in the workers (uint8), then flip,
  convert and normalise the whole batch on the device;
- `lamina`: `ImageDataLoaders.from_folder(item_tfms=RandomResizedCrop, batch_tfms=[Flip(), Normalize])`;
- `fastai` when importable: its `ImageDataLoaders.from_folder` with the same transforms.

Pass 1 (workers starting, pipelines set up) is reported apart from the warm passes that follow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmarks._common import (
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
    optional_import,
    seconds,
    sync,
)

__all__ = ["DataConfig", "make_jpegs", "run_suite"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataConfig:
    n_images: int
    width: int  # nominal; each image is 0.8x..1.2x in each side
    height: int
    size: int  # the random-resized-crop output side
    bs: int
    n_classes: int = 10
    n_valid_per_class: int = 2


def config(opts: Options) -> DataConfig:
    if opts.quick:
        return DataConfig(n_images=200, width=160, height=120, size=64, bs=32)
    return DataConfig(n_images=3000, width=500, height=375, size=224, bs=128)


# --------------------------------------------------------------------------------------------------------
# the generated folder


def _image(rng: np.random.Generator, w: int, h: int) -> Any:
    from PIL import Image, ImageDraw

    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # a smooth colour field...
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 18, (h, w, 3)).astype(np.int16)  # ...with noise
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 7))):  # and a few shapes
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = int(rng.integers(x0 + 4, w)), int(rng.integers(y0 + 4, h))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return img


def make_jpegs(cache: Path, cfg: DataConfig, seed: int = 0) -> Path:
    """`<cache>/jpegs-.../{train,valid}/<class>/<i>.jpg`, written once (atomically) and reused."""
    root = cache / f"jpegs-{cfg.n_images}-{cfg.width}x{cfg.height}-c{cfg.n_classes}-s{seed}-v1"
    if (root / ".complete").exists():
        return root
    log(f"data: generating {cfg.n_images} JPEGs into {root} (once)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".jpegs-", dir=cache))
    rng = np.random.default_rng(seed)
    try:
        n_valid = cfg.n_classes * cfg.n_valid_per_class
        for i in range(cfg.n_images + n_valid):
            split, k = ("train", i) if i < cfg.n_images else ("valid", i - cfg.n_images)
            folder = tmp / split / f"class_{k % cfg.n_classes}"
            folder.mkdir(parents=True, exist_ok=True)
            w = int(cfg.width * rng.uniform(0.8, 1.2))
            h = int(cfg.height * rng.uniform(0.8, 1.2))
            _image(rng, w, h).save(folder / f"{k:05d}.jpg", quality=90)
        (tmp / ".complete").touch()
        if root.exists():  # an interrupted earlier attempt
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _train_files(root: Path) -> list[tuple[Path, int]]:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    return [(f, i) for i, c in enumerate(classes) for f in sorted((root / "train" / c).glob("*.jpg"))]


# --------------------------------------------------------------------------------------------------------
# the contenders


class _TvDataset(torch.utils.data.Dataset[tuple[Tensor, int]]):
    def __init__(self, files: Sequence[tuple[Path, int]], tfm: Callable[[Tensor], Tensor]) -> None:
        self.files, self.tfm = list(files), tfm

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        path, label = self.files[i]
        img = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)  # (3, H, W) uint8
        return self.tfm(img), label


def _torch_loader(
    ds: torch.utils.data.Dataset[Any], cfg: DataConfig, workers: int, device: torch.device
) -> Any:
    """The torch DataLoader settings lamina's loader uses: shuffled, persistent workers, prefetch 4."""
    return torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.bs,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def _timed_pass(batches: Iterable[Any], device: torch.device, first: Callable[[Any], Tensor]) -> Sample:
    """images/s for one pass over `batches` (the last batch waited for)."""
    t0 = seconds()
    n = 0
    x: Tensor | None = None
    for b in batches:
        x = first(b)
        n += len(x)
    sync(device)
    return Sample(n / (seconds() - t0))


def torchvision_per_item(
    root: Path, cfg: DataConfig, workers: int, device: torch.device
) -> Callable[[], Sample]:
    from torchvision.transforms import v2

    tfm = v2.Compose(
        [
            v2.RandomResizedCrop(cfg.size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    dl = _torch_loader(_TvDataset(_train_files(root), tfm), cfg, workers, device)
    nb = device.type == "cuda"

    def one_pass() -> Sample:
        return _timed_pass(dl, device, lambda b: b[0].to(device, non_blocking=nb))

    return one_pass


def torchvision_batch(
    root: Path, cfg: DataConfig, workers: int, device: torch.device
) -> Callable[[], Sample]:
    from torchvision.transforms import v2

    crop = v2.RandomResizedCrop(cfg.size, antialias=True)
    dl = _torch_loader(_TvDataset(_train_files(root), crop), cfg, workers, device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    nb = device.type == "cuda"

    def on_device(b: Any) -> Tensor:
        x = b[0].to(device, non_blocking=nb)  # (B, 3, H, W) uint8
        flip = torch.rand(len(x), device=device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return (x.float().div_(255) - mean) / std

    def one_pass() -> Sample:
        return _timed_pass(dl, device, on_device)

    return one_pass


def lamina_loader(root: Path, cfg: DataConfig, workers: int, device: torch.device) -> Callable[[], Sample]:
    from lamina.vision import Flip, ImageDataLoaders, Normalize, RandomResizedCrop, imagenet_stats

    dls = ImageDataLoaders.from_folder(
        root,
        item_tfms=[RandomResizedCrop(cfg.size)],
        batch_tfms=[Flip(), Normalize.from_stats(*imagenet_stats)],
        bs=cfg.bs,
        num_workers=workers,
        device=device,
    )

    def one_pass() -> Sample:
        return _timed_pass(dls.train, device, lambda b: b[0])

    return one_pass


def fastai_loader(root: Path, cfg: DataConfig, workers: int, device: torch.device) -> Callable[[], Sample]:
    from fastai.vision.all import Flip, ImageDataLoaders, Normalize, RandomResizedCrop, imagenet_stats

    dls = ImageDataLoaders.from_folder(
        root,
        train="train",
        valid="valid",
        item_tfms=RandomResizedCrop(cfg.size),
        batch_tfms=[Flip(), Normalize.from_stats(*imagenet_stats)],
        bs=cfg.bs,
        num_workers=workers,
        device=device,
    )

    def one_pass() -> Sample:
        return _timed_pass(dls.train, device, lambda b: b[0])

    return one_pass


def run_suite(opts: Options) -> SuiteResult:
    from lamina.data import default_device  # noqa: F401  (lamina.data first: the import order users have)
    from lamina.data.loader import default_num_workers

    suite = SuiteResult("data")
    cfg = config(opts)
    device = opts.torch_device
    workers = opts.workers if opts.workers is not None else default_num_workers()
    root = make_jpegs(opts.cache_dir, cfg)
    params = {
        "images": cfg.n_images,
        "nominal_size": f"{cfg.width}x{cfg.height} (0.8x..1.2x)",
        "crop": cfg.size,
        "bs": cfg.bs,
        "num_workers": workers,
        "device": str(device),
        "folder": str(root),
    }
    makers: list[tuple[str, Callable[[Path, DataConfig, int, torch.device], Callable[[], Sample]], bool]] = [
        ("torchvision", torchvision_per_item, False),
        ("torchvision:batch", torchvision_batch, False),
        ("lamina", lamina_loader, False),
    ]
    if optional_import("fastai.vision.all") is not None:
        makers.append(("fastai", fastai_loader, True))
    else:
        suite.note("fastai not installed: no fastai column (pip install -e '.[bench]')")
    contenders = []
    for name, make, optional in makers:
        try:
            contenders.append(Contender(name, make(root, cfg, workers, device), optional=optional))
        except ImportError as e:
            suite.note(f"{name} skipped: {e}")
    cold = ConfigResult("pass1", "img/s", lower_is_better=False, baseline="torchvision", params=params)
    log(f"data: pass 1 over {cfg.n_images} images, {workers} workers, on {device}")
    interleave(cold, contenders, reps=1, warmup=0, close=False)
    warm = ConfigResult("warm", "img/s", lower_is_better=False, baseline="torchvision", params=params)
    warm.notes.append("passes 2.. (workers up, files in the page cache); pass 1 is the `pass1` row")
    log("data: warm passes")
    names = set(cold.values)
    interleave(warm, [c for c in contenders if c.name in names], reps=opts.n_reps(full=3, quick=2), warmup=0)
    suite.configs += [cold, warm]
    return suite
