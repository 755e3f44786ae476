"""`lamina shard PATH --out DIR`: write an image folder, or a table of texts, as shards that `lamina train
DIR` (or its URL) reads.

The folder is read as `lamina train` reads it (class sub-folders, train/ and valid/ or --valid-pct), and
each image is stored as its file's bytes with its label and split (`lamina.data.shards`); a CSV or parquet
table with `--text-col` is stored as token ids (tokenized once, here) with its labels and split.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_shard_parser", "cmd_shard", "holds_text", "is_shards"]


def is_shards(path: str) -> bool:
    """Whether `path` names shards: an http(s) URL or a folder holding a shard manifest."""
    from lamina.data.shards import MANIFEST

    return path.startswith(("http://", "https://")) or (Path(path) / MANIFEST).is_file()


def holds_text(path: str) -> bool:
    """Whether the shards at `path` hold texts as token ids (written from a TextBlock)."""
    from lamina.data import Shards

    stored = Shards(path, verify=False).stored
    return bool(stored) and str(stored[0]).startswith("Tokenize-")


def add_shard_parser(sub: Any, add_data_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `shard` command to the `lamina` parser (the data options are `train`'s)."""
    s = sub.add_parser(
        "shard",
        help="write an image folder or a table of texts (--text-col) as shards to train from a folder / URL",
    )
    add_data_args(s)
    from lamina.cli.text import add_text_args

    add_text_args(s)
    s.add_argument("--out", required=True, help="a new (or empty) folder for the shards")
    s.add_argument("--shard-mb", type=float, default=256, help="about this many MB per shard (default 256)")
    s.set_defaults(func=cmd_shard)


def cmd_shard(args: argparse.Namespace) -> int:
    from lamina.data import samples
    from lamina.data.shards import write_shards
    from lamina.vision import ImageDataLoaders

    if args.text_col is not None:
        return _shard_texts(args)
    if args.csv or args.masks:
        raise ValueError(
            "lamina shard: writes class folders of images (PATH/<label>/*.jpg, or train/ and valid/); "
            "--csv and --masks are not supported yet.\n"
            "help: call lamina.data.write_shards with your own DataBlock for other layouts"
        )
    path = Path(args.path) if args.path is not None else samples.mnist_sample()
    has_split = (path / "train").is_dir() and (path / "valid").is_dir()
    dblock = ImageDataLoaders.folder_block(
        path, valid_pct=None if has_split else args.valid_pct, seed=args.seed
    )
    start = time.perf_counter()
    out = write_shards(dblock, path, args.out, shard_bytes=max(1, int(args.shard_mb * 1e6)))
    from lamina.data import Shards

    shards = Shards(out, verify=False)
    train, valid = shards.splits()
    print(
        f"wrote {len(shards)} images ({len(train)} training, {len(valid)} validation) in "
        f"{len(shards.manifest['shards'])} shard(s) to {out} in {time.perf_counter() - start:.1f} s; "
        f"train on them with: lamina train {out}"
    )
    return 0


def _shard_texts(args: argparse.Namespace) -> int:
    from lamina.cli.text import text_shard_block
    from lamina.data import Shards
    from lamina.data.shards import write_shards

    dblock, df = text_shard_block(args)
    start = time.perf_counter()
    out = write_shards(dblock, df, args.out, shard_bytes=max(1, int(args.shard_mb * 1e6)))
    shards = Shards(out, verify=False)
    train, valid = shards.splits()
    tokens = int(shards.sizes(0).sum())
    print(
        f"wrote {len(shards)} texts ({len(train)} training, {len(valid)} validation; {tokens:,} tokens) in "
        f"{len(shards.manifest['shards'])} shard(s) to {out} in {time.perf_counter() - start:.1f} s; "
        f"train on them with: lamina train {out}"
        + (f" --model {args.model}" if args.model else "")
        + (f" --max-len {args.max_len}" if args.max_len else "")
    )
    return 0
