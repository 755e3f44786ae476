"""ImageDataLoaders: one-line DataLoaders for the common layouts of image datasets."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lamina.core import TensorImage, TensorImageBW, TransformsLike, as_transforms
from lamina.data import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    DataLoaders,
    GrandparentSplitter,
    MultiCategoryBlock,
    RandomSplitter,
    RegexLabeller,
    Shards,
    default_device,
    get_image_files,
    parent_label,
)
from lamina.data.sources import Splits
from lamina.vision.core import ImageBlock
from lamina.vision.jpeg import DecodeJpegBatch, JpegImageBlock, gpu_jpeg_decoder

__all__ = ["ImageDataLoaders", "resolve_files"]

PathLike = str | os.PathLike[str]


def _splitter(valid_pct: float | None, seed: int | None, train: str, valid: str) -> Callable[[Any], Splits]:
    return (
        RandomSplitter(valid_pct, seed=seed) if valid_pct is not None else GrandparentSplitter(train, valid)
    )


def _check_folders(root: Path, folders: list[str] | None) -> None:
    if folders is not None and not all((root / f).is_dir() for f in folders):
        present = sorted(p.name for p in root.iterdir() if p.is_dir())[:10] if root.is_dir() else []
        raise FileNotFoundError(
            f"ImageDataLoaders.from_folder: expected sub-folders {folders!r} in {str(root)!r}; "
            f"found {present}.\n"
            "help: for a folder of class sub-folders without a train/valid split, pass valid_pct=0.2"
        )


def resolve_files(path: PathLike, fnames: Sequence[PathLike]) -> list[Path]:
    """Each file as given when it exists there (e.g. from `get_image_files(path)`), else under `path`."""
    root = Path(path)
    return [p if p.is_absolute() or p.exists() else root / p for p in map(Path, fnames)]


class ImageDataLoaders:
    """Factories for image classification DataLoaders; each is a thin DataBlock you can write yourself.

    `skip_bad_files=True` replaces an image that fails to load by the next good one, with a warning."""

    @staticmethod
    def from_folder(
        path: PathLike,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        img_cls: type[TensorImage] = TensorImage,
        gpu_jpeg: bool | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images in class folders: `path/<train>/<label>/x.jpg` and `path/<valid>/<label>/y.jpg`, or
        `path/<label>/x.jpg` with `valid_pct` of them held out at random.

        `gpu_jpeg`: decode, crop and resize whole batches on the device (`lamina.vision.jpeg`) instead of
        in the workers. None (automatic) does so when the device is CUDA, every file is a .jpg/.jpeg and
        `item_tfms` is empty or one `RandomResizedCrop`/`Resize`, which it takes over; True forces it (any
        device); False never."""
        item_tfms = as_transforms(item_tfms)
        root = Path(path)
        folders = None if valid_pct is not None else [train, valid]
        decoder: DecodeJpegBatch | None = None
        files: list[Path] | None = None
        if gpu_jpeg is None and not issubclass(img_cls, TensorImageBW):
            dev = torch.device(device) if device is not None else default_device()
            if dev.type == "cuda":
                _check_folders(root, folders)
                files = get_image_files(root, folders=folders)
                decoder = gpu_jpeg_decoder(dev, files, item_tfms)
        elif gpu_jpeg:
            decoder = DecodeJpegBatch.from_item_tfms(item_tfms)
            if decoder is None or issubclass(img_cls, TensorImageBW):
                raise ValueError(
                    "ImageDataLoaders.from_folder: gpu_jpeg=True decodes RGB images and replaces item_tfms "
                    f"by one batch crop; got item_tfms={item_tfms!r}, img_cls={img_cls.__name__}.\n"
                    "help: pass item_tfms=[RandomResizedCrop(size)] or [Resize(size)] (or none), "
                    "or gpu_jpeg=False"
                )
        dblock = ImageDataLoaders.folder_block(
            root,
            train=train,
            valid=valid,
            valid_pct=valid_pct,
            seed=seed,
            vocab=vocab,
            item_tfms=item_tfms if decoder is None else None,
            batch_tfms=batch_tfms,
            img_cls=img_cls,
            files=files,
            decoder=decoder,
        )
        return dblock.dataloaders(
            root, bs=bs, num_workers=num_workers, device=device, seed=seed, skip_bad_files=skip_bad_files
        )

    @staticmethod
    def folder_block(
        path: PathLike,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        img_cls: type[TensorImage] = TensorImage,
        files: list[Path] | None = None,
        decoder: DecodeJpegBatch | None = None,
    ) -> DataBlock:
        """The DataBlock `from_folder` uses (class folders, split by `train`/`valid` folders or `valid_pct`):
        for `write_shards`, or to change one step. `files`: the image files when already listed."""
        root = Path(path)
        folders = None if valid_pct is not None else [train, valid]
        _check_folders(root, folders)

        def get_items(p: Any) -> list[Path]:
            return files if files is not None else get_image_files(p, folders=folders)

        return DataBlock(
            blocks=(
                JpegImageBlock(decoder) if decoder is not None else ImageBlock(img_cls),
                CategoryBlock(vocab=vocab),
            ),
            get_items=get_items,
            get_y=parent_label,
            splitter=_splitter(valid_pct, seed, train, valid),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )

    @staticmethod
    def from_shards(
        location: PathLike,
        vocab: Sequence[Any] | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        img_cls: type[TensorImage] = TensorImage,
        skip_bad_files: bool = False,
        cache: PathLike | None = None,
    ) -> DataLoaders:
        """Images and labels from shards (a folder or an http(s) URL) written from an image classification
        DataBlock (`write_shards`, `lamina shard`): the split is the one written; nothing held in memory."""
        dblock = DataBlock(
            blocks=(ImageBlock(img_cls), CategoryBlock(vocab=vocab)),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return dblock.dataloaders(
            Shards(location, cache=cache),
            bs=bs,
            num_workers=num_workers,
            device=device,
            seed=seed,
            skip_bad_files=skip_bad_files,
        )

    @staticmethod
    def from_path_func(
        path: PathLike,
        fnames: Sequence[PathLike],
        label_func: Callable[[Any], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        img_cls: type[TensorImage] = TensorImage,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images listed in `fnames`, labelled by `label_func(path)`."""
        dblock = DataBlock(
            blocks=(ImageBlock(img_cls), CategoryBlock()),
            get_y=label_func,
            splitter=RandomSplitter(valid_pct, seed=seed),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return dblock.dataloaders(
            resolve_files(path, fnames),
            bs=bs,
            num_workers=num_workers,
            device=device,
            seed=seed,
            skip_bad_files=skip_bad_files,
        )

    @staticmethod
    def from_name_func(
        path: PathLike,
        fnames: Sequence[PathLike],
        label_func: Callable[[str], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        img_cls: type[TensorImage] = TensorImage,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images listed in `fnames`, labelled by `label_func(name)` on each file's name (`"Cat_1.jpg"`).

        >>> dls = ImageDataLoaders.from_name_func(path, fnames, lambda n: n[0].isupper())  # doctest: +SKIP
        """
        return ImageDataLoaders.from_path_func(
            path,
            fnames,
            _OnName(label_func),
            valid_pct=valid_pct,
            seed=seed,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            bs=bs,
            num_workers=num_workers,
            device=device,
            img_cls=img_cls,
            skip_bad_files=skip_bad_files,
        )

    @staticmethod
    def from_name_re(
        path: PathLike,
        fnames: Sequence[PathLike],
        pat: str,
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images labelled by the first group of regex `pat` matched on the file name."""
        return ImageDataLoaders.from_path_func(
            path,
            fnames,
            RegexLabeller(pat, match=True),
            valid_pct=valid_pct,
            seed=seed,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            bs=bs,
            num_workers=num_workers,
            device=device,
            skip_bad_files=skip_bad_files,
        )

    @staticmethod
    def from_path_re(
        path: PathLike,
        fnames: Sequence[PathLike],
        pat: str,
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images labelled by the first group of regex `pat` searched in the whole path."""
        return ImageDataLoaders.from_path_func(
            path,
            fnames,
            RegexLabeller(pat, match=False),
            valid_pct=valid_pct,
            seed=seed,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            bs=bs,
            num_workers=num_workers,
            device=device,
            skip_bad_files=skip_bad_files,
        )

    @staticmethod
    def from_lists(
        path: PathLike,
        fnames: Sequence[PathLike],
        labels: Sequence[Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images and their labels given as two parallel lists."""
        if len(fnames) != len(labels):
            raise ValueError(
                f"from_lists: {len(fnames)} files but {len(labels)} labels; give one label per file"
            )
        root = Path(path)
        items = [(root / f, lbl) for f, lbl in zip(fnames, labels, strict=True)]
        dblock = DataBlock(
            blocks=(ImageBlock(), CategoryBlock()),
            get_x=_first,
            get_y=_second,
            splitter=RandomSplitter(valid_pct, seed=seed),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return dblock.dataloaders(
            items, bs=bs, num_workers=num_workers, device=device, seed=seed, skip_bad_files=skip_bad_files
        )

    @staticmethod
    def from_df(
        df: Any,
        path: PathLike = ".",
        fn_col: int | str = 0,
        label_col: int | str = 1,
        label_delim: str | None = None,
        valid_col: int | str | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        folder: str | None = None,
        suff: str = "",
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Images named in column `fn_col` of a DataFrame (relative to `path`/`folder`), labels in
        `label_col` (several per image when `label_delim` is set: a multi-label problem)."""
        cols = list(df.columns)
        for c in (fn_col, label_col, valid_col):
            if isinstance(c, str) and c not in cols:
                raise KeyError(
                    f"ImageDataLoaders.from_df: column {c!r} not found; the table has columns {cols}.\n"
                    "help: pass fn_col=, label_col= (and valid_col=) with names from that list"
                )
        df = _labels_as_read(df, label_col, multi=label_delim is not None)
        pref = Path(path) / folder if folder else Path(path)
        splitter: Callable[[Any], Splits] = (
            ColSplitter(valid_col) if valid_col is not None else RandomSplitter(valid_pct, seed=seed)
        )
        dblock = DataBlock(
            blocks=(ImageBlock(), MultiCategoryBlock() if label_delim is not None else CategoryBlock()),
            get_x=ColReader(fn_col, pref=pref, suff=suff),
            get_y=ColReader(label_col, label_delim=label_delim),
            splitter=splitter,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return dblock.dataloaders(
            df, bs=bs, num_workers=num_workers, device=device, seed=seed, skip_bad_files=skip_bad_files
        )

    @staticmethod
    def from_csv(
        path: PathLike,
        csv_fname: str = "labels.csv",
        fn_col: int | str = 0,
        label_col: int | str = 1,
        label_delim: str | None = None,
        valid_col: int | str | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        folder: str | None = None,
        suff: str = "",
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """Like `from_df`, reading the table from `path/csv_fname`."""
        import pandas as pd

        df = pd.read_csv(Path(path) / csv_fname)
        return ImageDataLoaders.from_df(
            df,
            path=path,
            fn_col=fn_col,
            label_col=label_col,
            label_delim=label_delim,
            valid_col=valid_col,
            valid_pct=valid_pct,
            seed=seed,
            folder=folder,
            suff=suff,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            bs=bs,
            num_workers=num_workers,
            device=device,
            skip_bad_files=skip_bad_files,
        )


def _labels_as_read(df: Any, label_col: int | str, multi: bool) -> Any:
    """`df` with whole-number labels as ints again (pandas reads a column of ints with empty cells as floats);
    a single-label table with empty labels is refused, naming the rows."""
    col = df.columns[label_col] if isinstance(label_col, int) else label_col
    labels = df[col]
    missing = labels.isna()
    if not bool(missing.any()):
        return df
    if not multi:
        rows = list(df.index[missing.to_numpy()])
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        raise ValueError(
            f"ImageDataLoaders: {len(rows)} of {len(df)} rows have no label in column {col!r}: rows {shown} "
            f"(a CSV's row 0 is the line after the header), e.g. {df.loc[rows[0]].to_dict()}.\n"
            f"help: fill in those labels, or drop the rows first: df.dropna(subset=[{col!r}])"
        )
    if labels.dtype.kind == "f" and bool((labels[~missing] % 1 == 0).all()):
        import pandas as pd

        df = df.copy()
        ints = [None if m else int(v) for v, m in zip(labels, missing, strict=True)]
        df[col] = pd.Series(ints, index=df.index, dtype=object)
    return df


class _OnName:
    """A labelling function of a file's name, called on its path (picklable for loader workers)."""

    def __init__(self, label_func: Callable[[str], Any]) -> None:
        self.label_func = label_func

    def __call__(self, path: PathLike) -> Any:
        return self.label_func(Path(path).name)


def _first(o: tuple[Any, Any]) -> Any:
    return o[0]


def _second(o: tuple[Any, Any]) -> Any:
    return o[1]
