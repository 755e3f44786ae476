"""A JPEG path that keeps a GPU fed: workers only read bytes; the device decodes, crops and resizes batches.

`ReadBytes` turns a path into its encoded bytes (cheap, in the loader workers); collation keeps them as a
list; `DecodeJpegBatch` decodes the whole batch with one `torchvision.io.decode_jpeg` call (nvjpeg on
CUDA), pads the images into one tensor and does every crop and resize with one `torchvision.ops.roi_align`
call. `ImageDataLoaders.from_folder` picks this path by itself for JPEG files on a CUDA device.

>>> dls = ImageDataLoaders.from_folder(path, item_tfms=RandomResizedCrop(224))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from lamina.core import (
    DisplayedTransform,
    ItemTransform,
    TensorBase,
    TensorImage,
    Transform,
    register_transform,
)
from lamina.data.blocks import TransformBlock
from lamina.vision._checks import as_size
from lamina.vision.core import check_image_pixels
from lamina.vision.item_tfms import RandomResizedCrop, Resize

__all__ = [
    "JPEG_EXTENSIONS",
    "BytesBatch",
    "DecodeJpegBatch",
    "JpegCropMode",
    "JpegImageBlock",
    "ReadBytes",
    "TensorBytes",
    "gpu_jpeg_decoder",
]


class TensorBytes(TensorBase):
    """A file's encoded bytes (a 1-d uint8 tensor of any length), decoded later in batches on the device.

    Collation keeps a batch of them as a `BytesBatch` list instead of stacking them (their lengths differ).
    """

    @classmethod
    def collate(cls, elems: list[torch.Tensor]) -> BytesBatch:
        return BytesBatch(e.as_subclass(torch.Tensor) for e in elems)


class BytesBatch(list[torch.Tensor]):
    """A batch of `TensorBytes` as a list of plain 1-d uint8 tensors, kept in host memory.

    Decoders (nvjpeg included) read encoded bytes from the host, so moving the batch to a device leaves the
    bytes where they are and records in `device` where the decoded batch belongs.
    """

    def __init__(self, tensors: Any = (), device: torch.device | None = None) -> None:
        super().__init__(tensors)
        self.device = device

    def to_device(self, device: torch.device) -> BytesBatch:
        return BytesBatch(self, device=device)


JPEG_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg"})
JpegCropMode = Literal["random_resized", "resize", "squish"]

_SOI = b"\xff\xd8\xff"  # every JPEG file starts with these bytes
_HELP_DEFAULT = "help: use the default decoding path (gpu_jpeg=False), which reads any image format"


@register_transform("vision.ReadBytes")
class ReadBytes(Transform):
    """A JPEG file's path (or its bytes) -> `TensorBytes`, its encoded bytes: all a loader worker does."""

    def encodes(self, o: object) -> TensorBytes:
        if isinstance(o, bytes | bytearray):
            data = torch.frombuffer(bytearray(o), dtype=torch.uint8)
            name = "<bytes>"
        elif isinstance(o, str | os.PathLike):
            name = str(o)
            try:
                data = torch.from_numpy(np.fromfile(name, dtype=np.uint8))  # (n,)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"ReadBytes: file {name!r} does not exist.\nhelp: check the path"
                ) from None
        else:
            raise TypeError(
                f"ReadBytes: expected a path or bytes, got {type(o).__name__}.\n"
                "help: give it the image file's path (get_x should return a path)"
            )
        if bytes(data[:3].tolist()) != _SOI:
            raise ValueError(
                f"ReadBytes: {name!r} is not a JPEG file (it starts with {bytes(data[:8].tolist())!r}, "
                f"expected {_SOI!r}).\n{_HELP_DEFAULT}, or convert the file to JPEG"
            )
        check_image_pixels(data.numpy().data, name)  # the frame header, before the batch decoder sees it
        return data.as_subclass(TensorBytes)

    def to_config(self) -> dict[str, Any]:
        return {}


def _center(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    return (outer - inner) / 2


def _find_bytes(x: tuple[Any, ...]) -> int | None:
    """Position of the batch of encoded images in the tuple (a BytesBatch, or else any list of tensors)."""
    for k, e in enumerate(x):
        if isinstance(e, BytesBatch):
            return k
    for k, e in enumerate(x):
        if isinstance(e, list) and e and all(isinstance(t, torch.Tensor) for t in e):
            return k
    return None


def _chunks(hs: Sequence[int], ws: Sequence[int], max_pixels: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) runs of images whose padded batch (n * Hmax * Wmax) fits `max_pixels`."""
    out, start, hmax, wmax = [], 0, 0, 0
    for i, (h, w) in enumerate(zip(hs, ws, strict=True)):
        nh, nw = max(hmax, h), max(wmax, w)
        if i > start and (i - start + 1) * nh * nw > max_pixels:
            out.append((start, i))
            start, nh, nw = i, h, w
        hmax, wmax = nh, nw
    out.append((start, len(hs)))
    return out


def _pad(imgs: Sequence[torch.Tensor]) -> torch.Tensor:
    """(3, h_i, w_i) uint8 images -> (B, 3, Hmax, Wmax) float32 in [0, 255], each at the top left with its
    last row and column repeated into the padding (so bilinear sampling at its border sees no black)."""
    hs, ws = [int(t.shape[-2]) for t in imgs], [int(t.shape[-1]) for t in imgs]
    if len(set(hs)) == 1 and len(set(ws)) == 1:
        return torch.stack(list(imgs)).float()  # (B, 3, H, W): nothing to pad
    dev = imgs[0].device
    H, W = max(hs), max(ws)
    flat = torch.cat([t.reshape(t.shape[0], -1) for t in imgs], dim=1)  # (3, sum of h*w): views, one copy
    h = torch.tensor(hs, device=dev)  # (B,)
    w = torch.tensor(ws, device=dev)  # (B,)
    off = torch.cumsum(h * w, 0) - h * w  # (B,) where each image starts in `flat`
    ys = torch.minimum(torch.arange(H, device=dev)[None], h[:, None] - 1)  # (B, H)
    xs = torch.minimum(torch.arange(W, device=dev)[None], w[:, None] - 1)  # (B, W)
    idx = off[:, None, None] + ys[:, :, None] * w[:, None, None] + xs[:, None, :]  # (B, H, W)
    padded = flat[:, idx]  # (3, B, H, W) uint8
    return padded.transpose(0, 1).to(torch.float32, memory_format=torch.contiguous_format)  # (B, 3, H, W)


@register_transform("vision.DecodeJpegBatch")
class DecodeJpegBatch(ItemTransform, DisplayedTransform):
    """A batch of JPEG bytes -> (B, 3, size) float `TensorImage` in [0, 1]: one batched decode (nvjpeg on
    CUDA), one padded tensor, one `roi_align` for every crop and resize.

    Crops, like the item transforms they replace (continuous boxes, so no rounding to whole pixels):
    - `mode="random_resized"` (`RandomResizedCrop`): training crops a random fraction in [`min_scale`, 1] of
      the area with a log-uniform aspect in `ratio` (10 draws, then the largest centred crop `ratio`
      allows); validation takes the centre of the image resized to cover `size` enlarged by `val_xtra`
      (rounded up to a multiple of 8 pixels).
    - `mode="resize"` (`Resize(method="crop")`): the largest crop with the output's aspect, at a random
      place in training and centred on validation. `mode="squish"`: the whole image.
    - `size=None`: no crop; every image of a batch must have one size.

    Runs before `IntToFloatTensor` (order 0), which lets the float images through. Each output pixel averages
    `sampling_ratio` x `sampling_ratio` bilinear samples: no antialiasing beyond that, so strong downscales
    alias more than the item path's antialiased resize. Batches whose padded size passes `max_pixels`
    (B * Hmax * Wmax) are cut into a few runs, one `roi_align` each, to bound memory.
    """

    order = 0

    def __init__(
        self,
        size: int | Sequence[int] | None,
        min_scale: float = 0.08,
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        val_xtra: float = 0.14,
        mode: JpegCropMode = "random_resized",
        sampling_ratio: int = 2,
        max_pixels: int = 2**26,
    ) -> None:
        super().__init__()
        self.size = as_size(size, "DecodeJpegBatch") if size is not None else None
        if mode not in get_args(JpegCropMode):
            raise ValueError(
                f"DecodeJpegBatch: unknown mode {mode!r}.\n"
                f"help: use one of {', '.join(repr(m) for m in get_args(JpegCropMode))}"
            )
        if not 0 < min_scale <= 1:
            raise ValueError(
                f"DecodeJpegBatch: min_scale must be in (0, 1], got {min_scale!r}.\nhelp: e.g. 0.08"
            )
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(
                f"DecodeJpegBatch: ratio must be (low, high) with 0 < low <= high, got {ratio!r}.\n"
                "help: pass the range of width / height, e.g. (3/4, 4/3)"
            )
        if val_xtra < 0 or sampling_ratio < 1 or max_pixels < 1:
            raise ValueError(
                f"DecodeJpegBatch: got val_xtra={val_xtra!r}, sampling_ratio={sampling_ratio!r}, "
                f"max_pixels={max_pixels!r}; expected val_xtra >= 0 and the others >= 1.\n"
                "help: the defaults are val_xtra=0.14, sampling_ratio=2, max_pixels=2**26"
            )
        self.mode: JpegCropMode = mode
        self.min_scale = float(min_scale)
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.val_xtra = float(val_xtra)
        self.sampling_ratio = int(sampling_ratio)
        self.max_pixels = int(max_pixels)

    @classmethod
    def from_item_tfms(cls, item_tfms: Sequence[Transform] | None) -> DecodeJpegBatch | None:
        """The batch equivalent of `item_tfms` when there is one: none (`size=None`), or a single
        `RandomResizedCrop` or `Resize` (method "crop" or "squish"); else None."""
        tfms = list(item_tfms or [])
        if not tfms:
            return cls(None)
        if len(tfms) != 1:
            return None
        t = tfms[0]
        if type(t) is RandomResizedCrop:
            return cls(t.size, min_scale=t.min_scale, ratio=t.ratio, val_xtra=t.val_xtra)
        if type(t) is Resize and t.method in ("crop", "squish"):
            return cls(t.size, mode="resize" if t.method == "crop" else "squish")
        return None

    # -- boxes ----------------------------------------------------------------------------------------------
    def boxes(self, hw: torch.Tensor, train: bool) -> torch.Tensor:
        """(B, 2) image (height, width) -> (B, 4) crop boxes (x1, y1, x2, y2) in pixel-edge coordinates, all
        inside their image; random draws from torch's generator on `hw`'s device."""
        assert self.size is not None
        hw = hw.float()
        h, w = hw[:, 0], hw[:, 1]  # (B,)
        out_h, out_w = self.size
        if self.mode == "squish":
            ch, cw = h, w
        elif self.mode == "resize" or not train:
            xtra = 0 if self.mode == "resize" else math.ceil(max(out_h, out_w) * self.val_xtra / 8) * 8
            s = torch.minimum(h / (out_h + xtra), w / (out_w + xtra))  # (B,) source pixels per output pixel
            ch, cw = torch.minimum(out_h * s, h), torch.minimum(out_w * s, w)
        else:
            ch, cw = self._random_sizes(h, w)
        if train and self.mode != "squish":
            u = torch.rand(hw.shape[0], 2, device=hw.device)  # (B, 2)
            top, left = u[:, 0] * (h - ch), u[:, 1] * (w - cw)
        else:
            top, left = _center(h, ch), _center(w, cw)
        return torch.stack([left, top, left + cw, top + ch], dim=1)  # (B, 4)

    def _random_sizes(self, h: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop's (height, width) per image: the first of 10 draws that fits, else a fallback."""
        n, tries = h.shape[0], 10
        u = torch.rand(n, tries, 2, device=h.device)  # (B, 10, 2)
        area = (self.min_scale + (1 - self.min_scale) * u[..., 0]) * (h * w)[:, None]  # (B, 10)
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        r = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])  # (B, 10) width / height
        cw, ch = torch.sqrt(area * r), torch.sqrt(area / r)  # (B, 10)
        fits = (cw <= w[:, None]) & (ch <= h[:, None])  # (B, 10)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1) the first draw that fits
        cw, ch = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]  # (B,)
        # no draw fits: the largest centred crop whose aspect lies in `ratio`
        aspect = w / h
        fb_w = torch.where(aspect > self.ratio[1], h * self.ratio[1], w)
        fb_h = torch.where(aspect < self.ratio[0], w / self.ratio[0], h)
        ok = fits.any(dim=1)
        return torch.where(ok, ch, fb_h), torch.where(ok, cw, fb_w)

    # -- the transform ---------------------------------------------------------------------------------------
    def __call__(self, x: Any, split_idx: int | None = None) -> Any:
        if split_idx is not None and self.split_idx is not None and split_idx != self.split_idx:
            return x
        items = x if isinstance(x, tuple) else (x,)
        k = _find_bytes(items)
        if k is None:
            return x
        data = items[k]
        dev = getattr(data, "device", None) or next(
            (e.device for e in items if isinstance(e, torch.Tensor)), torch.device("cpu")
        )
        imgs = self._decode([t.cpu() for t in data], torch.device(dev))
        out = self._crop_resize(imgs, train=split_idx == 0).as_subclass(TensorImage)
        res = (*items[:k], out, *items[k + 1 :])
        return res if isinstance(x, tuple) else res[0]

    def _decode(self, data: list[torch.Tensor], dev: torch.device) -> list[torch.Tensor]:
        """One batched decode to (3, h_i, w_i) uint8 images on `dev`; on failure, find the bad items."""
        import torchvision.io  # deferred: importing torchvision costs ~1.5 s

        mode = torchvision.io.ImageReadMode.RGB
        try:
            out = torchvision.io.decode_jpeg(data, mode=mode, device=dev)
            return list(out)
        except Exception as e:  # the batched call fails as a whole: decode one by one to find out more
            batch_error = e
        imgs, bad = [], []
        for i, t in enumerate(data):
            try:
                imgs.append(torchvision.io.decode_jpeg(t, mode=mode, device=dev))
                continue
            except Exception:
                pass
            try:  # e.g. CMYK JPEGs, which nvjpeg may refuse: libjpeg on the CPU, then to the device
                imgs.append(torchvision.io.decode_jpeg(t, mode=mode, device="cpu").to(dev))
            except Exception as e:
                bad.append((i, e))
        if bad:
            where = ", ".join(str(i) for i, _ in bad[:10])
            raise ValueError(
                f"DecodeJpegBatch: {len(bad)} of the {len(data)} files in this batch are not valid JPEG "
                f"images (positions {where} in the batch): {type(bad[0][1]).__name__}: {bad[0][1]}.\n"
                f"{_HELP_DEFAULT} and names the bad file, or find it with DataBlock.summary"
            ) from bad[0][1]
        if not imgs:
            raise batch_error
        return imgs

    def _crop_resize(self, imgs: list[torch.Tensor], train: bool) -> torch.Tensor:
        """(3, h_i, w_i) uint8 images -> (B, 3, out_h, out_w) float in [0, 1]."""
        if self.size is None:
            shapes = sorted({tuple(t.shape) for t in imgs})
            if len(shapes) > 1:
                raise ValueError(
                    f"DecodeJpegBatch: size=None but the images of this batch have {len(shapes)} sizes, e.g. "
                    f"{shapes[:3]}.\nhelp: give a size, e.g. item_tfms=Resize(224) or DecodeJpegBatch(224)"
                )
            return torch.stack(imgs).float().div_(255)  # (B, 3, H, W)
        import torchvision.ops

        dev = imgs[0].device
        hs, ws = [int(t.shape[-2]) for t in imgs], [int(t.shape[-1]) for t in imgs]
        boxes = self.boxes(torch.tensor([hs, ws], device=dev).T, train)  # (B, 4)
        outs = []
        for start, stop in _chunks(hs, ws, self.max_pixels):
            batch = _pad(imgs[start:stop])  # (n, 3, Hmax, Wmax) in [0, 255]
            idx = torch.arange(stop - start, device=dev, dtype=batch.dtype)[:, None]  # (n, 1)
            rois = torch.cat([idx, boxes[start:stop].to(batch.dtype)], dim=1)  # (n, 5)
            outs.append(
                torchvision.ops.roi_align(
                    batch,
                    rois,
                    output_size=self.size,
                    spatial_scale=1.0,
                    sampling_ratio=self.sampling_ratio,
                    aligned=True,
                )
            )  # (n, 3, out_h, out_w)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.div_(255).clamp_(0, 1)  # (B, 3, out_h, out_w)

    def to_config(self) -> dict[str, Any]:
        return {
            "size": list(self.size) if self.size is not None else None,
            "min_scale": self.min_scale,
            "ratio": list(self.ratio),
            "val_xtra": self.val_xtra,
            "mode": self.mode,
            "sampling_ratio": self.sampling_ratio,
            "max_pixels": self.max_pixels,
        }


def JpegImageBlock(decode: DecodeJpegBatch) -> TransformBlock:
    """Images read as bytes in the workers and decoded in batches on the device by `decode`."""
    return TransformBlock(type_tfms=[ReadBytes()], batch_tfms=[decode])


def gpu_jpeg_decoder(
    device: torch.device | str,
    files: Iterable[str | os.PathLike[str]],
    item_tfms: Sequence[Transform] | None,
) -> DecodeJpegBatch | None:
    """The automatic choice: a `DecodeJpegBatch` taking over `item_tfms` when `device` is CUDA, every file is
    a .jpg/.jpeg and `item_tfms` has a batch equivalent (see `DecodeJpegBatch.from_item_tfms`); else None."""
    if torch.device(device).type != "cuda":
        return None
    decoder = DecodeJpegBatch.from_item_tfms(item_tfms)
    if decoder is None:
        return None
    if not all(Path(f).suffix.lower() in JPEG_EXTENSIONS for f in files):
        return None
    return decoder
