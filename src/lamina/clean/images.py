"""Checks of image files that need no model: files that fail to decode, odd sizes and aspects, blank images.

Each file is read once (bounded in size) and decoded by `lamina.vision.load_image`, with its pixel-count
guard, to grey values; sizes are judged against the dataset's own typical size with robust statistics.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lamina.vision import load_image

__all__ = ["MAX_FILE_BYTES", "FileCheck", "check_image_files", "file_sha256", "odd_shapes"]

MAX_FILE_BYTES = 256 * 2**20  # a larger "image" is reported as broken rather than read into memory
BLANK_STD = 2.0  # grey-level standard deviation (0-255) below which an image is called blank


@dataclass(frozen=True)
class FileCheck:
    """One file's facts: its hash, whether it decodes (else `error`), size and grey-level spread."""

    sha256: str | None
    error: str | None
    height: int = 0
    width: int = 0
    std: float = 0.0


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_one(path: Path) -> FileCheck:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return FileCheck(None, f"{size:,} bytes, over the {MAX_FILE_BYTES:,} lamina reads")
        data = path.read_bytes()
    except OSError as e:
        return FileCheck(None, f"cannot be read: {type(e).__name__}: {e.strerror or e}")
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return FileCheck(digest, "the file is empty")
    try:
        img = load_image(data, mode="L")  # (1, H, W) uint8
    except Exception as e:
        first = str(e).strip().split("\n")[0] or type(e).__name__
        return FileCheck(digest, f"does not decode: {first}")
    h, w = int(img.shape[-2]), int(img.shape[-1])
    return FileCheck(digest, None, h, w, float(img.float().std()) if img.numel() > 1 else 0.0)


def check_image_files(paths: Sequence[Path | None]) -> list[FileCheck | None]:
    """Decode every file once; None where the item is not a file."""
    return [_check_one(p) if p is not None else None for p in paths]


def _robust_z(x: np.ndarray) -> np.ndarray:
    """Distance from the median in units of the median absolute deviation (floored, so a dataset of one
    size flags any other size strongly, yet small jitter around a typical size stays quiet)."""
    med = np.median(x)
    mad = np.median(np.abs(x - med))
    return (x - med) / max(1.4826 * mad, 0.05)


def odd_shapes(checks: Sequence[FileCheck | None], z: float = 4.0) -> dict[int, tuple[str, float, str]]:
    """Position -> (issue, score, detail) for decoded images whose area or aspect is far from typical,
    or whose pixels are nearly constant."""
    ok = [i for i, c in enumerate(checks) if c is not None and c.error is None]
    out: dict[int, tuple[str, float, str]] = {}
    if not ok:
        return out
    hs = np.asarray([checks[i].height for i in ok], dtype=np.float64)  # type: ignore[union-attr]
    ws = np.asarray([checks[i].width for i in ok], dtype=np.float64)  # type: ignore[union-attr]
    z_area = _robust_z(np.log(hs * ws))
    z_aspect = _robust_z(np.log(ws / hs))
    typical = f"{int(np.median(ws))} x {int(np.median(hs))}"
    for k, i in enumerate(ok):
        c = checks[i]
        assert c is not None
        if c.std < BLANK_STD:
            out[i] = ("blank", 1.0 - c.std / BLANK_STD / 2, f"nearly one colour (grey-level std {c.std:.2f})")
        elif max(abs(z_area[k]), abs(z_aspect[k])) >= z:
            worst = max(abs(z_area[k]), abs(z_aspect[k]))
            what = "aspect" if abs(z_aspect[k]) > abs(z_area[k]) else "size"
            out[i] = (
                "odd_size",
                float(1.0 - 1.0 / (1.0 + worst / z)),
                f"{c.width} x {c.height}: unusual {what} (typical {typical})",
            )
    return out
