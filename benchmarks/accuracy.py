"""Accuracy suite: wall time to train the same small CNN on the MNIST sample, and the accuracy reached.

The 5,000-digit sample (`lamina.data.samples.mnist_sample()`, PNGs in class folders) is split 80/20 with
`RandomSplitter(0.2, seed=42)` (the split `from_folder(valid_pct=0.2, seed=42)` makes) and **decoded once**
into uint8 tensors. The fair pair trains from those tensors:

- `plain`: a torch `DataLoader(TensorDataset)` (bs 64, shuffled; valid bs 128), AdamW and `OneCycleLR`
  set to lamina's 1cycle (25% warm-up, div 25, final div 1e5, cosine, beta1 0.95 -> 0.85 -> 0.95);
- `lamina`: `DataLoaders.from_dsets` over the same tensors and `Learner.fit_one_cycle`, default callbacks,
  `metrics=accuracy`, weight decay on every parameter (as the plain AdamW).

`lamina:folder` is the four-line user path on top: `ImageDataLoaders.from_folder` decoding the PNGs in
every epoch (in `num_workers` workers); `fastai`, when installed, trains from the same tensors (torch
DataLoaders) with torch's AdamW. The model takes uint8 or float images (it scales uint8 itself), so each
contender feeds it what its loader gives. Both contenders validate (loss and accuracy) after every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._common import (
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
    optional_import,
    quiet,
    seconds,
    sync,
)

__all__ = ["AccuracyConfig", "SmallCNN", "run_suite"]

WD = 0.01


@dataclass(frozen=True)
class AccuracyConfig:
    epochs: int
    width: int = 16  # channels of the first convolution (then 2x, 4x)
    max_train: int | None = None  # a subset, for --quick
    max_valid: int | None = None
    lr_max: float = 1e-2
    bs: int = 64
    valid_pct: float = 0.2
    seed: int = 42
    pct_start: float = 0.25
    div: float = 25.0
    div_final: float = 1e5


class SmallCNN(nn.Module):
    """Four stride-2 3x3 convolutions, three with BatchNorm and ReLU: (B, 1, 28, 28) -> (B, 10) logits."""

    def __init__(self, width: int = 16, n_classes: int = 10) -> None:
        super().__init__()

        def block(ci: int, co: int) -> list[nn.Module]:
            return [nn.Conv2d(ci, co, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU()]

        w = width
        self.body = nn.Sequential(*block(1, w), *block(w, 2 * w), *block(2 * w, 4 * w))  # 28 -> 14 -> 7 -> 4
        self.head = nn.Sequential(
            nn.Conv2d(4 * w, n_classes, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():  # uint8 pixels (the tensors path); lamina's ImageBlock gives [0, 1]
            x = x.float().div(255)
        return self.head(self.body(x))


def make_model(cfg: AccuracyConfig, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(cfg.width)


@dataclass(frozen=True)
class Digits:
    """The decoded sample: uint8 (N, 1, 28, 28) images and int64 labels, split train / valid."""

    root: Path
    train_files: list[Path]
    valid_files: list[Path]
    subset: bool
    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor


def load_digits(cfg: AccuracyConfig) -> Digits:
    """Decode every PNG once (torchvision's decoder), with the split `from_folder` makes for the same seed."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    from lamina.data import RandomSplitter, get_image_files
    from lamina.data.samples import mnist_sample

    root = mnist_sample()
    files = get_image_files(root)
    train_idx, valid_idx = RandomSplitter(cfg.valid_pct, seed=cfg.seed)(files)
    train_idx, valid_idx = train_idx[: cfg.max_train], valid_idx[: cfg.max_valid]
    classes = sorted({f.parent.name for f in files})

    def stack(idx: list[int]) -> tuple[Tensor, Tensor]:
        xs = [decode_image(read_file(str(files[i])), mode=ImageReadMode.GRAY) for i in idx]
        ys = [classes.index(files[i].parent.name) for i in idx]
        return torch.stack(xs), torch.tensor(ys)

    x_tr, y_tr = stack(train_idx)
    x_va, y_va = stack(valid_idx)
    subset = cfg.max_train is not None or cfg.max_valid is not None
    return Digits(
        root, [files[i] for i in train_idx], [files[i] for i in valid_idx], subset, x_tr, y_tr, x_va, y_va
    )


# --------------------------------------------------------------------------------------------------------
# the contenders


def plain_run(d: Digits, cfg: AccuracyConfig, device: torch.device) -> Sample:
    """The plain loop with torch's OneCycleLR; seconds for every epoch (train + validation)."""
    from torch.utils.data import DataLoader, TensorDataset

    cuda = device.type == "cuda"
    train = DataLoader(
        TensorDataset(d.x_train, d.y_train), batch_size=cfg.bs, shuffle=True, drop_last=True, pin_memory=cuda
    )
    valid = DataLoader(TensorDataset(d.x_valid, d.y_valid), batch_size=2 * cfg.bs, pin_memory=cuda)
    model = make_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr_max, weight_decay=WD, fused=True if cuda else None)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr_max,
        total_steps=cfg.epochs * len(train),
        pct_start=cfg.pct_start,
        anneal_strategy="cos",
        div_factor=cfg.div,
        final_div_factor=cfg.div_final / cfg.div,  # torch divides the *initial* lr by it
        base_momentum=0.85,
        max_momentum=0.95,
    )
    acc = valid_loss = 0.0
    torch.manual_seed(1)
    t0 = seconds()
    for _ in range(cfg.epochs):
        model.train()
        for x, y in train:
            x, y = x.to(device, non_blocking=cuda), y.to(device, non_blocking=cuda)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        model.eval()
        loss_sum, correct, n = torch.zeros((), device=device), torch.zeros((), device=device), 0
        with torch.no_grad():
            for x, y in valid:
                x, y = x.to(device, non_blocking=cuda), y.to(device, non_blocking=cuda)
                out = model(x)
                loss_sum += F.cross_entropy(out, y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
                n += len(y)
        acc, valid_loss = float(correct / n), float(loss_sum / n)
        with quiet():
            print(f"valid_loss {valid_loss:.4f}  accuracy {acc:.4f}")
    sync(device)
    return Sample(seconds() - t0, {"accuracy": acc, "valid_loss": valid_loss})


def _final(values: list[list[float]]) -> dict[str, float]:
    """The last epoch's accuracy and valid loss from a Recorder's rows [train_loss, valid_loss, accuracy]."""
    return {"accuracy": float(values[-1][2]), "valid_loss": float(values[-1][1])}


def _lamina_run(dls: Any, cfg: AccuracyConfig, device: torch.device) -> Sample:
    from lamina.train import Learner, accuracy

    # torch's AdamW with its defaults and weight decay on every parameter, as the plain loop
    learn = Learner(
        dls,
        make_model(cfg),
        loss_func=nn.CrossEntropyLoss(),
        opt_func=torch.optim.AdamW,
        metrics=accuracy,
        wd=WD,
        wd_bn_bias=True,
    )
    torch.manual_seed(1)
    t0 = seconds()
    with quiet():
        learn.fit_one_cycle(
            cfg.epochs, cfg.lr_max, div=cfg.div, div_final=cfg.div_final, pct_start=cfg.pct_start
        )
    sync(device)
    elapsed = seconds() - t0
    return Sample(elapsed, _final(learn.recorder.values))


def lamina_tensors(d: Digits, cfg: AccuracyConfig, device: torch.device) -> Any:
    from lamina.data import DataLoaders

    train = list(zip(d.x_train, d.y_train, strict=True))
    valid = list(zip(d.x_valid, d.y_valid, strict=True))
    dls = DataLoaders.from_dsets(train, valid, bs=cfg.bs, num_workers=0, device=device)
    return partial(_lamina_run, dls, cfg, device)


def lamina_folder(d: Digits, cfg: AccuracyConfig, device: torch.device, workers: int) -> Any:
    """`from_folder` on the whole sample; on a --quick subset, the DataBlock it is made of, on those files."""
    from lamina.data import CategoryBlock, DataBlock, IndexSplitter, parent_label
    from lamina.vision import ImageBlock, ImageDataLoaders, TensorImageBW

    if not d.subset:
        dls = ImageDataLoaders.from_folder(
            d.root,
            valid_pct=cfg.valid_pct,
            seed=cfg.seed,
            img_cls=TensorImageBW,
            bs=cfg.bs,
            num_workers=workers,
            device=device,
        )
    else:
        n = len(d.train_files)
        dblock = DataBlock(
            blocks=(ImageBlock(TensorImageBW), CategoryBlock()),
            get_y=parent_label,
            splitter=IndexSplitter(range(n, n + len(d.valid_files))),
        )
        dls = dblock.dataloaders(d.train_files + d.valid_files, bs=cfg.bs, num_workers=workers, device=device)
    return partial(_lamina_run, dls, cfg, device)


def fastai_tensors(d: Digits, cfg: AccuracyConfig, device: torch.device) -> Any:
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.data.core import DataLoaders as FDataLoaders
    from fastai.learner import Learner as FLearner
    from fastai.metrics import accuracy as f_accuracy
    from fastai.optimizer import OptimWrapper
    from torch.utils.data import DataLoader, TensorDataset

    cuda = device.type == "cuda"
    opt_func = partial(OptimWrapper, opt=partial(torch.optim.AdamW, fused=True if cuda else None))

    def run() -> Sample:
        train = DataLoader(
            TensorDataset(d.x_train, d.y_train),
            batch_size=cfg.bs,
            shuffle=True,
            drop_last=True,
            pin_memory=cuda,
        )
        valid = DataLoader(TensorDataset(d.x_valid, d.y_valid), batch_size=2 * cfg.bs, pin_memory=cuda)
        learn = FLearner(
            FDataLoaders(train, valid, device=None),
            make_model(cfg).to(device),
            loss_func=nn.CrossEntropyLoss(),
            opt_func=opt_func,
            metrics=f_accuracy,
            wd=WD,
            wd_bn_bias=True,
        )
        torch.manual_seed(1)
        t0 = seconds()
        with quiet():
            learn.fit_one_cycle(
                cfg.epochs,
                cfg.lr_max,
                div=cfg.div,
                div_final=cfg.div_final,
                pct_start=cfg.pct_start,
                moms=(0.95, 0.85, 0.95),
            )
        sync(device)
        elapsed = seconds() - t0
        return Sample(elapsed, _final(learn.recorder.values))

    return run


def run_suite(opts: Options) -> SuiteResult:
    from lamina.data.loader import default_num_workers

    suite = SuiteResult("accuracy")
    cfg = (
        AccuracyConfig(epochs=1, width=8, max_train=1024, max_valid=256)
        if opts.quick
        else AccuracyConfig(epochs=3)
    )
    device = opts.torch_device
    workers = opts.workers if opts.workers is not None else default_num_workers()
    log("accuracy: decoding the MNIST sample once")
    d = load_digits(cfg)
    result = ConfigResult(
        f"mnist-{cfg.epochs}ep",
        "s",
        lower_is_better=True,
        baseline="plain",
        params={
            "train_items": len(d.y_train),
            "valid_items": len(d.y_valid),
            "epochs": cfg.epochs,
            "bs": cfg.bs,
            "lr_max": cfg.lr_max,
            "schedule": "1cycle (pct_start 0.25, div 25, div_final 1e5, cos)",
            "optimizer": "AdamW wd=0.01",
            "model": f"SmallCNN(width={cfg.width}): 3 conv-BN-ReLU + conv head, stride 2",
            "data": "decoded once to uint8 tensors (plain, lamina, fastai); PNG per epoch (lamina:folder)",
            "lamina_folder_workers": workers,
            "device": str(device),
        },
    )
    contenders = [
        Contender("plain", partial(plain_run, d, cfg, device)),
        Contender("lamina", lamina_tensors(d, cfg, device)),
        Contender("lamina:folder", lamina_folder(d, cfg, device, workers)),
    ]
    if optional_import("fastai.learner") is not None:
        contenders.append(Contender("fastai", fastai_tensors(d, cfg, device), optional=True))
    else:
        suite.note("fastai not installed: no fastai column (pip install -e '.[bench]')")
    result.notes.append(
        "time = the whole fit (every epoch's training and validation); accuracy = last epoch's"
    )
    interleave(result, contenders, reps=opts.n_reps(full=3, quick=1), warmup=0)
    suite.configs.append(result)
    return suite
