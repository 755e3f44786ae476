"""Images in the data pipeline: decoding files to uint8 tensors, ImageBlock and MaskBlock, IntToFloatTensor.

Files are decoded with torchvision's decoders (libjpeg/libpng) straight to (C, H, W) uint8 tensors, and
with Pillow for what they don't read (CMYK, 16-bit, palette, BMP, TIFF); either way the result has the
channels the block asks for.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lamina.core import (
    TensorImage,
    TensorImageBW,
    TensorMask,
    Transform,
    register_transform,
)
from lamina.data.blocks import TransformBlock
from lamina.data.losses import CrossEntropyLossFlat

__all__ = [
    "MAX_IMAGE_PIXELS",
    "DecodeImage",
    "DecodeMask",
    "ImageBlock",
    "ImageTooLargeError",
    "IntToFloatTensor",
    "MaskBlock",
    "PILImage",
    "PILImageBW",
    "check_image_pixels",
    "load_image",
]

# fastai users know these names: here they select the decoded type (RGB or one channel)
PILImage = TensorImage
PILImageBW = TensorImageBW

_MODES = {"RGB": 3, "L": 1}

#: The most pixels lamina decodes in one image (a decompression-bomb guard: a 900 KB PNG can hold 30000 x
#: 30000 pixels, 2.7 GB decoded). Read when each file is opened, from the headers, before decoding. Set it
#: in the main module before the loaders start (worker processes that spawn import their own); None: no limit.
MAX_IMAGE_PIXELS: int | None = 178_956_970  # Pillow's: past 2 x PIL.Image.MAX_IMAGE_PIXELS it refuses too

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (hold the size): C0-CF except DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageTooLargeError(ValueError):
    """An image whose header announces more pixels than `MAX_IMAGE_PIXELS`: refused before decoding."""


def _header_size(data: Any) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame, without decoding; None if not found.

    `data` is any bytes-like object (bytes, memoryview, numpy uint8 array)."""
    n = len(data)
    if n >= 24 and bytes(data[:8]) == _PNG_SIG:
        return int.from_bytes(bytes(data[16:20]), "big"), int.from_bytes(bytes(data[20:24]), "big")
    if n < 4 or bytes(data[:2]) != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= n:
        if data[i] != 0xFF:
            return None
        marker = int(data[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF:
            h = int.from_bytes(bytes(data[i + 5 : i + 7]), "big")
            return int.from_bytes(bytes(data[i + 7 : i + 9]), "big"), h
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            return None
        i += 2 + int.from_bytes(bytes(data[i + 2 : i + 4]), "big")
    return None


def check_image_pixels(data: Any, name: str = "<bytes>") -> None:
    """Raise `ImageTooLargeError` when the PNG or JPEG header in `data` announces over `MAX_IMAGE_PIXELS`."""
    limit = MAX_IMAGE_PIXELS
    size = _header_size(data) if limit is not None else None
    if size is None or limit is None or size[0] * size[1] <= limit:
        return
    w, h = size
    raise ImageTooLargeError(
        f"image {name!r} ({len(data):,} bytes) is {w} x {h} = {w * h:,} pixels, more than lamina decodes "
        f"({limit:,}: a decompression-bomb guard; decoded it would take {w * h * 3 / 1e9:.1f} GB).\n"
        "help: if you trust the file, raise the limit before loading: "
        f"lamina.vision.core.MAX_IMAGE_PIXELS = {w * h} (None: no limit); or shrink the file"
    )


def _from_pil(img: Any, mode: str) -> torch.Tensor:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits rather than clip
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # composite transparency on white, as viewers show it
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    arr = np.asarray(img.convert(mode), dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def load_image(source: str | os.PathLike[str] | bytes | Any, mode: str = "RGB") -> torch.Tensor:
    """Decode an image file (path or bytes), a PIL image, an array or a tensor to a (C, H, W) uint8 tensor.

    `mode` is "RGB" (3 channels) or "L" (1 channel). A file that cannot be decoded raises an error naming it.
    """
    if mode not in _MODES:
        raise ValueError(f"load_image: mode must be 'RGB' or 'L', got {mode!r}")
    if isinstance(source, torch.Tensor):
        return _channels(source.as_subclass(torch.Tensor), mode)
    if isinstance(source, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(source))
        return _channels(t.permute(2, 0, 1) if t.ndim == 3 and t.shape[-1] in (1, 3, 4) else t, mode)
    if hasattr(source, "convert") and hasattr(source, "mode"):  # a PIL image
        return _from_pil(source, mode)
    if isinstance(source, bytes):
        data, name = source, "<bytes>"
    else:
        path = Path(source)
        name = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"load_image: file {name!r} does not exist.\nhelp: check the path"
            ) from None
    return _decode_bytes(data, mode, name)


def _decode_bytes(data: bytes, mode: str, name: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    check_image_pixels(data, name)  # from the header, before any decoder allocates the pixels
    # fast path: JPEG and 8-bit PNG through torchvision; anything unusual through Pillow
    # (PNG: 8-bit grey or RGB only; transparency and palettes go through Pillow, which composites on white)
    if data[:3] == b"\xff\xd8\xff" or (
        len(data) > 25 and data[:8] == _PNG_SIG and data[24] == 8 and data[25] in (0, 2)
    ):
        try:
            buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            rm = ImageReadMode.RGB if mode == "RGB" else ImageReadMode.GRAY
            t = decode_image(buf, mode=rm)
            if t.dtype == torch.uint8:
                return t
        except Exception:
            pass  # CMYK JPEGs, odd PNGs: Pillow below
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return _from_pil(img, mode)
    except Image.DecompressionBombError as e:  # other formats: Pillow's own guard
        raise ImageTooLargeError(
            f"image {name!r} ({len(data):,} bytes): {e}.\n"
            "help: if you trust the file, raise Pillow's limit: PIL.Image.MAX_IMAGE_PIXELS = None"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise OSError(
            f"cannot decode image {name!r} ({len(data)} bytes): {e}.\n"
            "help: the file is corrupt, truncated or not an image; remove it, or pass skip_bad_files=True"
        ) from e


def _channels(t: torch.Tensor, mode: str) -> torch.Tensor:
    """(H, W) or (C, H, W) -> the channels `mode` asks for, uint8."""
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.dtype != torch.uint8:
        t = (
            (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
            if t.is_floating_point()
            else t.to(torch.uint8)
        )
    c = t.shape[0]
    if c == 4:
        t = t[:3]
        c = 3
    if mode == "RGB" and c == 1:
        return t.expand(3, -1, -1).contiguous()
    if mode == "L" and c == 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (t.float() * w).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return t


@register_transform("vision.DecodeImage")
class DecodeImage(Transform):
    """A path (or bytes, PIL image, array) -> `TensorImage` (C, H, W) uint8; `mode="L"` -> `TensorImageBW`."""

    def __init__(self, mode: str = "RGB") -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"DecodeImage: mode must be 'RGB' or 'L', got {mode!r}")
        self.mode = mode

    @property
    def name(self) -> str:
        return "decode_image"

    def encodes(self, o: object) -> TensorImage:
        t = load_image(o, self.mode)
        return t.as_subclass(TensorImageBW if self.mode == "L" else TensorImage)

    def to_config(self) -> dict[str, Any]:
        return {"mode": self.mode}


@register_transform("vision.DecodeMask")
class DecodeMask(Transform):
    """A mask file (one class code per pixel) -> `TensorMask` (H, W) int64; `codes` names the classes.

    Without `codes`, setup reads every training mask once and names the classes "0" .. "<largest code>"
    (a warning says so: passing codes skips that pass and gives the classes their names).
    """

    def __init__(self, codes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.codes = list(codes) if codes is not None else None

    def setup(self, items: Sequence[Any]) -> None:
        if self.codes is not None or not len(items):
            return
        warnings.warn(
            f"DecodeMask: no codes given: reading the {len(items)} training masks to find their class codes."
            "\nhelp: pass codes=[...] (MaskBlock(codes=...), `lamina train --codes`) to name the classes and "
            "skip this pass",
            stacklevel=2,
        )
        largest = 0
        for o in items:
            m = self._decode(o)
            largest = max(largest, int(m.max()) if m.numel() else 0)
        n = max(largest + 1, 2)
        self.codes = [str(i) for i in range(n)]

    @property
    def vocab(self) -> list[str] | None:
        return self.codes

    @property
    def c(self) -> int:
        return len(self.codes) if self.codes else 2

    def encodes(self, o: object) -> TensorMask:
        m = self._decode(o)
        self._check_codes(m, o)
        return m.as_subclass(TensorMask)

    @staticmethod
    def _decode(o: object) -> torch.Tensor:
        if isinstance(o, torch.Tensor):
            return o.as_subclass(torch.Tensor).long().squeeze()
        from PIL import Image

        src: Any = o if hasattr(o, "convert") else Image.open(o)  # type: ignore[arg-type]
        # palette masks keep their indices; others are read as grey levels (the code of each pixel)
        arr = np.asarray(src if src.mode in ("P", "L", "I") else src.convert("L"))
        return torch.from_numpy(arr.astype(np.int64)).squeeze()

    def _check_codes(self, m: torch.Tensor, source: object) -> None:
        """A code outside 0..c-1 would fail deep inside the loss ("target out of bounds"): say it here."""
        if not m.numel():
            return
        lo, hi = int(m.min()), int(m.max())
        if lo >= 0 and hi < self.c:
            return
        name = str(source) if not isinstance(source, torch.Tensor) else f"a tensor of shape {tuple(m.shape)}"
        known = f"codes={self.codes}" if self.codes else "no codes given, so 2 classes are assumed"
        found = sorted(int(v) for v in torch.unique(m)[:10])
        hint = " (0 and 255: a binary mask saved as black and white? map 255 to 1)" if hi == 255 else ""
        raise ValueError(
            f"DecodeMask: mask {name} has class codes {found}{hint}, outside 0..{self.c - 1} ({known}).\n"
            "help: pass codes naming every class, in the order of their pixel values, e.g. "
            "MaskBlock(codes=['background', 'road', 'car']) or `lamina train --codes background,road,car`"
        )

    def to_config(self) -> dict[str, Any]:
        return {"codes": self.codes}


@register_transform("vision.IntToFloatTensor")
class IntToFloatTensor(Transform):
    """uint8 images -> float in [0, 1] on the device (masks stay integer); decodes back to uint8."""

    order = 10

    def __init__(self, div: float = 255.0) -> None:
        super().__init__()
        self.div = div

    def encodes(self, x: TensorImage) -> TensorImage:
        return x.float().div_(self.div) if not x.is_floating_point() else x  # type: ignore[return-value]

    def decodes(self, x: TensorImage) -> TensorImage:
        if not x.is_floating_point():
            return x
        return (x * self.div).round().clamp(0, 255).to(torch.uint8)  # type: ignore[return-value]

    def to_config(self) -> dict[str, Any]:
        return {"div": self.div}


def ImageBlock(cls: type[TensorImage] = TensorImage) -> TransformBlock:
    """Images decoded to `cls`: `TensorImage` (RGB, the default) or `TensorImageBW` (one channel)."""
    mode = "L" if issubclass(cls, TensorImageBW) else "RGB"
    return TransformBlock(type_tfms=[DecodeImage(mode)], batch_tfms=[IntToFloatTensor()])


def MaskBlock(codes: Sequence[str] | None = None) -> TransformBlock:
    """A segmentation target: a mask file of class codes; per-pixel cross entropy. Without `codes` the
    classes are "0" .. the largest code found in the training masks."""
    return TransformBlock(
        type_tfms=[DecodeMask(codes)], batch_tfms=[IntToFloatTensor()], loss=CrossEntropyLossFlat
    )
