"""Where items come from and how they are labelled and split: file listers, labellers and splitters.

Splitters take the list of items and return `(train_indices, valid_indices)`.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lamina.core import MissingKeyError, register_function

__all__ = [
    "IMAGE_EXTENSIONS",
    "ColReader",
    "ColSplitter",
    "EndSplitter",
    "FuncSplitter",
    "GrandparentSplitter",
    "IndexSplitter",
    "MaskSplitter",
    "RandomSplitter",
    "RegexLabeller",
    "Splits",
    "TrainTestSplitter",
    "get_files",
    "get_image_files",
    "parent_label",
    "using_attr",
]

Splits = tuple[list[int], list[int]]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def get_files(
    path: str | os.PathLike[str],
    extensions: Iterable[str] | None = None,
    recurse: bool = True,
    folders: Iterable[str] | None = None,
) -> list[Path]:
    """Files under `path` with one of `extensions` (case-insensitive), sorted for reproducibility.

    `folders` restricts the search to those sub-folders of `path`; hidden files and folders are skipped.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"get_files: folder {str(root)!r} does not exist.\nhelp: check the path")
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions} if extensions else None
    starts = [root / f for f in folders] if folders else [root]
    out: list[Path] = []
    for start in starts:
        if recurse:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out += _keep(Path(dirpath), filenames, exts)
        elif start.is_dir():
            out += _keep(start, [p.name for p in start.iterdir() if p.is_file()], exts)
    return sorted(out)


def _keep(folder: Path, names: Iterable[str], exts: set[str] | None) -> list[Path]:
    return [
        folder / n
        for n in sorted(names)
        if not n.startswith(".") and (exts is None or os.path.splitext(n)[1].lower() in exts)
    ]


@register_function("data.get_image_files")
def get_image_files(
    path: str | os.PathLike[str], recurse: bool = True, folders: Iterable[str] | None = None
) -> list[Path]:
    """Image files under `path`; an empty result is an error that names the folder and the extensions."""
    files = get_files(path, IMAGE_EXTENSIONS, recurse=recurse, folders=folders)
    if not files:
        where = f"{str(path)!r}" + (f" (sub-folders {list(folders)})" if folders else "")
        raise FileNotFoundError(
            f"get_image_files: no image found in {where}; looked for {', '.join(sorted(IMAGE_EXTENSIONS))}.\n"
            "help: point to the folder that holds the images (or their class sub-folders)"
        )
    return files


@register_function("data.parent_label")
def parent_label(o: str | os.PathLike[str]) -> str:
    """The name of the folder that holds the file: `train/cat/01.jpg` -> `'cat'`."""
    return Path(o).parent.name


class RegexLabeller:
    """Label an item by the first group of `pat`: `re.match` on its file name (`match=True`), or `re.search`
    in its whole path or string (`match=False`)."""

    def __init__(self, pat: str, match: bool = False) -> None:
        self.pat = pat
        self.match = match
        self._re = re.compile(pat)

    def __call__(self, o: Any) -> str:
        s = os.path.basename(os.fspath(o)) if self.match and isinstance(o, str | os.PathLike) else str(o)
        m = self._re.match(s) if self.match else self._re.search(s)
        if m is None:
            raise ValueError(
                f"RegexLabeller: pattern {self.pat!r} matched nothing in {s!r}.\n"
                "help: test the pattern on one file name with re.search"
            )
        return m.group(1)


class ColReader:
    """Read column(s) of a pandas row; `pref`/`suff` wrap the value, `label_delim` splits it into labels.

    An empty cell (NaN, None, pd.NA) reads as None (no labels with `label_delim`)."""

    def __init__(
        self,
        cols: int | str | Sequence[int | str],
        pref: str | Path = "",
        suff: str = "",
        label_delim: str | None = None,
    ) -> None:
        self.cols = [cols] if isinstance(cols, int | str) else list(cols)
        self.pref = str(pref) + (os.sep if isinstance(pref, Path) else "")
        self.suff = suff
        self.label_delim = label_delim

    def _one(self, row: Any, c: int | str) -> Any:
        try:
            v = row.iloc[c] if isinstance(c, int) else row[c]
        except (KeyError, IndexError) as e:
            cols = list(getattr(row, "index", []))
            raise MissingKeyError(
                f"ColReader: column {c!r} not found; the table has columns {cols}.\n"
                "help: pass one of those names (or a position) to ColReader / fn_col / label_col"
            ) from e
        if v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType":  # empty cell
            # no labels; else no value rather than a 'nan' label or file (the Datasets name such rows)
            return [] if self.label_delim is not None else None
        if self.pref or self.suff:
            v = f"{self.pref}{v}{self.suff}"
        if self.label_delim is not None:
            v = [lbl for lbl in str(v).split(self.label_delim) if lbl]
        return v

    def __call__(self, row: Any) -> Any:
        vals = [self._one(row, c) for c in self.cols]
        return vals[0] if len(vals) == 1 else vals


def using_attr(f: Callable[[Any], Any], attr: str) -> Callable[[Any], Any]:
    """Apply `f` to attribute `attr` of the item: `using_attr(RegexLabeller(r'(.+)_\\d+'), 'name')`."""

    def _inner(o: Any) -> Any:
        return f(getattr(o, attr))

    _inner.__name__ = f"using_attr({attr})"
    return _inner


def _check_pct(name: str, pct: float) -> None:
    if not 0 <= pct < 1:
        raise ValueError(
            f"{name}: valid_pct must be in [0, 1), got {pct}.\nhelp: e.g. 0.2 for 20% validation"
        )


class RandomSplitter:
    """A random `valid_pct` of the items for validation; the same split for the same seed."""

    def __init__(self, valid_pct: float = 0.2, seed: int | None = None) -> None:
        _check_pct("RandomSplitter", valid_pct)
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: Sequence[Any]) -> Splits:
        idx = list(range(len(items)))
        random.Random(self.seed).shuffle(idx)
        cut = int(self.valid_pct * len(items))
        return sorted(idx[cut:]), sorted(idx[:cut])


class IndexSplitter:
    """The items at `valid_idx` for validation, the rest for training."""

    def __init__(self, valid_idx: Iterable[int]) -> None:
        self.valid_idx = sorted(set(valid_idx))

    def __call__(self, items: Sequence[Any]) -> Splits:
        valid = set(self.valid_idx)
        bad = [i for i in valid if not 0 <= i < len(items)]
        if bad:
            raise IndexError(
                f"IndexSplitter: valid indices {bad[:5]} out of range for {len(items)} items.\n"
                f"help: give positions in [0, {len(items) - 1}]"
            )
        return [i for i in range(len(items)) if i not in valid], sorted(valid)


class EndSplitter:
    """The last `valid_pct` of the items for validation (`valid_last=False`: the first)."""

    def __init__(self, valid_pct: float = 0.2, valid_last: bool = True) -> None:
        _check_pct("EndSplitter", valid_pct)
        self.valid_pct, self.valid_last = valid_pct, valid_last

    def __call__(self, items: Sequence[Any]) -> Splits:
        n = len(items)
        cut = int(self.valid_pct * n)
        idx = list(range(n))
        return (idx[: n - cut], idx[n - cut :]) if self.valid_last else (idx[cut:], idx[:cut])


class FuncSplitter:
    """Items for which `func(item)` is true go to validation."""

    def __init__(self, func: Callable[[Any], bool]) -> None:
        self.func = func

    def __call__(self, items: Sequence[Any]) -> Splits:
        mask = [bool(self.func(o)) for o in items]
        return [i for i, m in enumerate(mask) if not m], [i for i, m in enumerate(mask) if m]


class MaskSplitter:
    """A boolean sequence: true means validation."""

    def __init__(self, mask: Sequence[bool]) -> None:
        self.mask = list(mask)

    def __call__(self, items: Sequence[Any]) -> Splits:
        if len(self.mask) != len(items):
            raise ValueError(
                f"MaskSplitter: the mask has {len(self.mask)} values for {len(items)} items.\n"
                "help: give one boolean per item (true: validation)"
            )
        return FuncSplitter(lambda i: self.mask[i])(range(len(items)))


class GrandparentSplitter:
    """Split by grandparent folder: `train/cat/1.jpg` goes to training, `valid/cat/2.jpg` to validation."""

    def __init__(self, train_name: str = "train", valid_name: str = "valid") -> None:
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[Any]) -> Splits:
        gp = [Path(o).parent.parent.name for o in items]
        train = [i for i, g in enumerate(gp) if g == self.train_name]
        valid = [i for i, g in enumerate(gp) if g == self.valid_name]
        if not train or not valid:
            found = sorted(set(gp))
            raise ValueError(
                f"GrandparentSplitter: found {len(train)} items under {self.train_name!r} and {len(valid)} "
                f"under {self.valid_name!r}; grandparent folders present: {found[:10]}.\n"
                "help: pass train_name/valid_name matching your folders, or use RandomSplitter"
            )
        return train, valid


class ColSplitter:
    """Split a DataFrame by a boolean column (true: validation), `'is_valid'` by default."""

    def __init__(self, col: int | str = "is_valid") -> None:
        self.col = col

    def __call__(self, items: Any) -> Splits:
        cols = list(getattr(items, "columns", []))
        if isinstance(self.col, str) and self.col not in cols:
            raise MissingKeyError(
                f"ColSplitter: column {self.col!r} not found; the table has columns {cols}.\n"
                "help: pass valid_col=<a boolean column>"
            )
        col = items.iloc[:, self.col] if isinstance(self.col, int) else items[self.col]
        mask = [bool(v) for v in col]
        return [i for i, m in enumerate(mask) if not m], [i for i, m in enumerate(mask) if m]


class TrainTestSplitter:
    """A random split of `test_size`, stratified by the labels `stratify` if given (same seed, same split)."""

    def __init__(
        self, test_size: float = 0.2, seed: int | None = None, stratify: Sequence[Any] | None = None
    ) -> None:
        _check_pct("TrainTestSplitter", test_size)
        self.test_size, self.seed, self.stratify = test_size, seed, stratify

    def __call__(self, items: Sequence[Any]) -> Splits:
        if self.stratify is None:
            return RandomSplitter(self.test_size, self.seed)(items)
        if len(self.stratify) != len(items):
            raise ValueError(
                f"TrainTestSplitter: stratify has {len(self.stratify)} labels for {len(items)} items.\n"
                "help: pass one label per item, in the order of the items"
            )
        rng = random.Random(self.seed)
        groups: dict[Any, list[int]] = {}
        for i, lbl in enumerate(self.stratify):
            groups.setdefault(lbl, []).append(i)
        valid: list[int] = []
        for key in sorted(groups, key=str):
            idx = groups[key]
            rng.shuffle(idx)
            valid += idx[: round(self.test_size * len(idx))]
        vs = set(valid)
        return [i for i in range(len(items)) if i not in vs], sorted(valid)
