"""Shards: a DataBlock's items written once into Arrow files, then read back through the same DataBlock
from a local folder or an http(s) URL, without holding the data in memory.

>>> write_shards(dblock, "images/", "shards/")             # doctest: +SKIP
>>> dls = dblock.dataloaders(Shards("shards/"), seed=0)     # doctest: +SKIP

The files are Hugging Face `datasets`' Arrow format (written by its `ArrowWriter`, opened memory-mapped
with `Dataset.from_file`), so a shard is also a `datasets.Dataset`. What is stored is each item's getter
outputs (the raw inputs and labels, before any type transform): a file path is stored as the file's bytes,
text and numbers as they are. `index.arrow` holds the small columns of every item (name, split, targets),
so a loader can be set up, and the vocabulary read, before any large shard is fetched; the inputs live in
`shard-NNNNN.arrow` files of about `shard_bytes` each, fetched (and sha256-checked) on first use.

The order of an epoch is the loader's own, as for any other source: a seeded loader gives the same batches
whatever its `num_workers`, and resumes in the middle of an epoch exactly (`ResumeCallback`). Why not a
streaming engine's iterable loader (MosaicML `streaming`, `litdata`, `datasets`' `streaming=True` with
torchdata's `StatefulDataLoader`): their order depends on the number of workers (each reads its own
shards) or loses its shuffle buffer on resume, so a restart is not the same run; random access into
memory-mapped Arrow keeps lamina's seeded order, item seeds and process sharding unchanged.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lamina.core.transform import as_transform
from lamina.data.datasets import describe_item

__all__ = [
    "MANIFEST",
    "ShardError",
    "ShardKey",
    "Shards",
    "storer",
    "write_shards",
]

MANIFEST = "lamina-shards.json"
_FORMAT = 1
_INDEX = "index.arrow"
_SHARD_RE = re.compile(r"shard-\d{5}\.arrow")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_STORED_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_COL_RE = re.compile(r"e\d{1,3}")
_MAX_MANIFEST_BYTES = 16 << 20
_MAX_SHARD_BYTES = 2 << 30  # binary columns use 32-bit offsets: a shard stays under 2 GiB
_CHUNK = 1024  # items whose values are computed (and stored by a type transform, e.g. tokenized) together
_KINDS = ("bytes", "str", "int", "float", "bool", "list[str]", "list[int]", "list[float]", "list[int32]")
_IDS = "list[int32]"  # what a type transform stores (token ids): half the bytes of list[int]


class ShardError(ValueError):
    """A shard folder or file that cannot be used: missing, truncated, tampered with, or not lamina's."""


class ShardKey(NamedTuple):
    """One item of a `Shards` source: its position and the name it had when written (for messages)."""

    pos: int
    name: str

    def __repr__(self) -> str:
        return repr(self.name)


# -- writing -----------------------------------------------------------------------------------------------
def _kind_of(v: Any) -> str | None:
    if isinstance(v, bytes | bytearray | memoryview | os.PathLike):
        return "bytes"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "str"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, list | tuple) and v:
        inner = {_kind_of(e) for e in v}
        if len(inner) == 1 and (k := inner.pop()) in ("str", "int", "float"):
            return f"list[{k}]"
    if isinstance(v, list | tuple):
        return "list[str]"  # an empty label list
    return None


def _require_datasets() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "lamina.data.shards: needs Hugging Face `datasets` (its Arrow files are the shard format).\n"
            "help: pip install 'lamina[shards]' (or pip install datasets)"
        ) from e


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    scalar = {"bytes": pa.binary(), "str": pa.string(), "int": pa.int64(), "float": pa.float64()}
    scalar["bool"], scalar["int32"] = pa.bool_(), pa.int32()
    if kind.startswith("list["):
        return pa.list_(scalar[kind[5:-1]])
    return scalar[kind]


def _stored(v: Any, kind: str, max_item_bytes: int, who: Callable[[], str]) -> Any:
    """The value as written: a path's file bytes (size checked before reading), text and numbers as is."""
    if _kind_of(v) != ("list[int]" if kind == _IDS else kind):
        raise TypeError(
            f"write_shards: {who()} is {type(v).__name__} {_short_repr(v)}, but the first item's was "
            f"{kind}.\n"
            "help: make the getter return the same kind of value for every item"
        )
    if isinstance(v, os.PathLike):
        size = os.stat(v).st_size
        if size > max_item_bytes:
            raise ValueError(
                f"write_shards: {who()} is the file {os.fspath(v)!r} of {size:,} bytes, more than "
                f"max_item_bytes={max_item_bytes:,}.\n"
                "help: shrink or leave out that file, or raise max_item_bytes"
            )
        with open(v, "rb") as f:
            return f.read(max_item_bytes + 1)
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def _short_repr(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 60 else s[:57] + "..."


@dataclass
class _ShardWriter:
    """Rows into numbered Arrow files of about `shard_bytes` each; records name, rows, size and sha256."""

    folder: Path
    schema: Any
    shard_bytes: int
    shards: list[dict[str, Any]]
    _writer: Any = None
    _rows: int = 0
    _bytes: int = 0
    _batch: dict[str, list[Any]] | None = None

    def add(self, row: dict[str, Any], nbytes: int) -> None:
        if self._batch is None:
            self._batch = {k: [] for k in self.schema.names}
        for k, v in row.items():
            self._batch[k].append(v)
        self._rows += 1
        self._bytes += nbytes
        if len(self._batch[self.schema.names[0]]) >= 256:
            self._flush()
        if self._bytes >= self.shard_bytes:
            self.close()

    def _flush(self) -> None:
        from datasets.arrow_writer import ArrowWriter

        if not self._batch or not self._batch[self.schema.names[0]]:
            return
        if self._writer is None:
            path = self.folder / f"shard-{len(self.shards):05d}.arrow"
            self._writer = ArrowWriter(schema=self.schema, path=str(path))
        self._writer.write_batch(self._batch)
        self._batch = None

    def close(self) -> None:
        self._flush()
        if self._writer is None:
            return
        self._writer.finalize()
        self._writer.close()
        path = self.folder / f"shard-{len(self.shards):05d}.arrow"
        self.shards.append(_file_record(path, self._rows))
        self._writer, self._rows, self._bytes = None, 0, 0


def _file_record(path: Path, rows: int) -> dict[str, Any]:
    return {"file": path.name, "rows": rows, "bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    """Whether the file at `path` has this sha256: hashed once, then remembered (a marker in lamina's
    cache, keyed by the file's path, inode, size and modification time) so that the next process or run,
    a loader worker or a restart, does not read every shard again (10 GB: ~9 s of hashing)."""
    from lamina.data.external import cache_dir

    st = path.stat()
    key = f"{path.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{sha256}"
    marker = cache_dir() / "shards-verified" / hashlib.sha256(key.encode()).hexdigest()
    if marker.exists():
        return True
    if _sha256(path) != sha256:
        return False
    with contextlib.suppress(OSError):  # a read-only cache only costs the next process a re-hash
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return True


def write_shards(
    dblock: Any,
    source: Any,
    out: str | os.PathLike[str],
    shard_bytes: int = 256 << 20,
    max_item_bytes: int = 256 << 20,
) -> Path:
    """Write every item of `dblock` from `source` (its getters' outputs and its split) as shards in `out`.

    The DataBlock's `get_items`, getters and splitter run here, once; reading the shards back
    (`dblock.dataloaders(Shards(out))`) skips them and runs the rest of the pipeline (type transforms,
    item and batch transforms) as usual. `out` must be new or empty; it appears complete or not at all.
    """
    _require_datasets()
    from datasets.arrow_writer import ArrowWriter

    if not 1 <= shard_bytes <= _MAX_SHARD_BYTES:
        raise ValueError(f"write_shards: shard_bytes must be 1 to {_MAX_SHARD_BYTES:,}, got {shard_bytes:,}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"write_shards: {str(out)!r} exists and is not an empty folder.\n"
            "help: give a new folder (shards are never written over existing files)"
        )
    items = dblock.items(source)
    train, valid = dblock.split(items)
    split_of = {i: 0 for i in train} | {i: 1 for i in valid}
    order = sorted(split_of)
    if not order:
        raise ValueError("write_shards: the splitter put no item in the training or validation set")
    getters = list(dblock.getters)
    n_inp = dblock.n_inp
    storers = _storers(dblock, n_inp)
    kinds: list[str] = []
    for k, v in enumerate(_values(items, order[:1], getters, storers)):
        kind = _kind_of(v[0])
        if kind is None:
            raise TypeError(
                f"write_shards: element {k} of the first item {describe_item(items[order[0]])} is "
                f"{type(v[0]).__name__}, which a shard cannot hold.\n"
                "help: shards hold what getters return: file paths, bytes, text, numbers or lists of them"
            )
        kinds.append(_IDS if kind == "list[int]" and storers[k] is not None else kind)
    import pyarrow as pa

    big = [k for k in range(len(kinds)) if k < n_inp]
    small = [k for k in range(len(kinds)) if k >= n_inp]
    shard_schema = pa.schema([(f"e{k}", _arrow_type(kinds[k])) for k in big])
    index_schema = pa.schema(
        [("name", pa.string()), ("split", pa.int8())]
        + [(f"e{k}", _arrow_type(kinds[k])) for k in small]
        + [(f"n{k}", pa.int64()) for k in big if _sized(kinds[k])]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        shards: list[dict[str, Any]] = []
        writer = _ShardWriter(tmp, shard_schema, shard_bytes, shards)
        index = ArrowWriter(schema=index_schema, path=str(tmp / _INDEX))
        batch: dict[str, list[Any]] = {k: [] for k in index_schema.names}
        for start in range(0, len(order), _CHUNK):
            chunk = order[start : start + _CHUNK]
            columns = _values(items, chunk, getters, storers)
            for j, i in enumerate(chunk):
                item = items[i]
                row_big, nbytes = {}, 0
                for k, values in enumerate(columns):
                    v = _stored(
                        values[j],
                        kinds[k],
                        max_item_bytes,
                        lambda k=k, item=item: f"element {k} of item {describe_item(item)}",  # type: ignore[misc]
                    )
                    if k < n_inp:
                        row_big[f"e{k}"] = v
                        nbytes += _nbytes(v, kinds[k])
                        if _sized(kinds[k]):
                            batch[f"n{k}"].append(len(v))
                    else:
                        batch[f"e{k}"].append(v)
                writer.add(row_big, nbytes)
                batch["name"].append(_item_name(item))
                batch["split"].append(split_of[i])
                if len(batch["name"]) >= 4096:
                    index.write_batch(batch)
                    batch = {k: [] for k in index_schema.names}
        writer.close()
        if batch["name"]:
            index.write_batch(batch)
        index.finalize()
        index.close()
        manifest = {
            "format": _FORMAT,
            "writer": "lamina",
            "items": len(order),
            "n_inp": n_inp,
            "elements": [
                {"column": f"e{k}", "kind": kind} | ({"stored": st.stored_as} if st is not None else {})
                for k, (kind, st) in enumerate(zip(kinds, storers, strict=True))
            ],
            "index": _file_record(tmp / _INDEX, len(order)),
            "shards": shards,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _nbytes(v: Any, kind: str) -> int:
    """About what a stored value takes in a shard (for cutting shards at `shard_bytes`)."""
    if isinstance(v, list):
        return (4 if kind == _IDS else 8) * len(v)
    return len(v) if isinstance(v, bytes | str) else 8


def _sized(kind: str) -> bool:
    """Whether an input of this kind has a length the index records (bytes, characters, list entries)."""
    return kind in ("bytes", "str") or kind.startswith("list[")


def storer(type_tfms: Sequence[Any], is_input: bool) -> Any:
    """The transform that turns an input's raw values into what shards hold (its first type transform,
    when that one `stores`: token ids), or None: raw values. Writing and reading both ask this."""
    first = as_transform(type_tfms[0]) if is_input and type_tfms else None
    return first if first is not None and first.stores else None


def _storers(dblock: Any, n_inp: int) -> list[Any]:
    return [storer(b.type_tfms, k < n_inp) for k, b in enumerate(dblock.new_blocks())]


def _values(
    items: Any, chunk: Sequence[int], getters: Sequence[Any], storers: Sequence[Any]
) -> list[list[Any]]:
    """Each element's values for the items at `chunk`: the getter's outputs, through the element's storer."""
    columns = []
    for g, st in zip(getters, storers, strict=True):
        raw = [g(items[i]) if g is not None else items[i] for i in chunk]
        if st is not None:
            stored = list(st.to_stored(raw))
            if len(stored) != len(raw):
                raise ValueError(f"write_shards: {st!r}.to_stored gave {len(stored)} values for {len(raw)}")
            raw = stored
        columns.append(raw)
    return columns


def _item_name(item: Any) -> str:
    return os.fspath(item) if isinstance(item, os.PathLike) else describe_item(item)


# -- reading ----------------------------------------------------------------------------------------------
def _is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https")


def _check_manifest(m: Any, where: str) -> dict[str, Any]:
    """The manifest, every field checked (types, names, sizes) before any of it is used."""

    def bad(why: str) -> ShardError:
        return ShardError(
            f"Shards: {where} is not a usable lamina shard manifest: {why}.\n"
            "help: write the shards again with write_shards / `lamina shard`"
        )

    def record(r: Any, name_ok: Callable[[str], bool]) -> dict[str, Any]:
        if not isinstance(r, dict) or set(r) != {"file", "rows", "bytes", "sha256"}:
            raise bad(f"a file record is {_short_repr(r)}")
        f, rows, size, sha = r["file"], r["rows"], r["bytes"], r["sha256"]
        if not (isinstance(f, str) and name_ok(f)):
            raise bad(f"file name {_short_repr(f)} (expected shard-NNNNN.arrow or index.arrow)")
        if not (type(rows) is int and type(size) is int and rows >= 0 and 0 < size <= _MAX_SHARD_BYTES):
            raise bad(f"{f}: rows {rows!r} / bytes {size!r}")
        if not (isinstance(sha, str) and _SHA_RE.fullmatch(sha)):
            raise bad(f"{f}: sha256 {_short_repr(sha)}")
        return r

    if not isinstance(m, dict) or m.get("writer") != "lamina":
        raise bad("no 'writer': 'lamina'")
    if m.get("format") != _FORMAT:
        raise bad(f"format {m.get('format')!r}; this lamina reads format {_FORMAT}")
    n, n_inp, elements = m.get("items"), m.get("n_inp"), m.get("elements")
    if type(n) is not int or n < 1 or type(n_inp) is not int or not isinstance(elements, list):
        raise bad("'items', 'n_inp' or 'elements' missing or of the wrong type")
    if not 1 <= n_inp <= len(elements) <= 64:
        raise bad(f"n_inp {n_inp} for {len(elements)} elements")
    for k, e in enumerate(elements):
        if not isinstance(e, dict) or e.get("column") != f"e{k}" or e.get("kind") not in _KINDS:
            raise bad(f"element {k} is {_short_repr(e)}")
        if not set(e) <= {"column", "kind", "stored"} or not _STORED_RE.fullmatch(str(e.get("stored", "-"))):
            raise bad(f"element {k} is {_short_repr(e)}")
    record(m.get("index"), lambda f: f == _INDEX)
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards or len(shards) > 1_000_000:
        raise bad("'shards' is not a non-empty list")
    names = [record(r, lambda f: bool(_SHARD_RE.fullmatch(f)))["file"] for r in shards]
    if len(set(names)) != len(names):
        raise bad("a shard is listed twice")
    if m["index"]["rows"] != n or sum(r["rows"] for r in shards) != n:
        raise bad(f"the index and shards do not hold {n} rows each")
    return m


class _ShardColumn:
    """A getter reading element `k` of an item from its shard (picklable: the loader's workers use it)."""

    def __init__(self, shards: Shards, k: int) -> None:
        self.shards, self.k = shards, k

    def __call__(self, key: ShardKey) -> Any:
        return self.shards.value(key, self.k)

    def __repr__(self) -> str:
        return f"shard column e{self.k}"


class Shards(Sequence[ShardKey]):
    """The items of a shard folder (a local path or an http(s) URL) written by `write_shards`: a DataBlock
    source.

    `dblock.dataloaders(Shards(...))` takes the items, their split and their getter outputs from the
    shards and runs the DataBlock's blocks and transforms on them. Remote files are downloaded to
    `cache` (default: lamina's cache folder) when first read, size-capped and checked against the
    manifest's sha256 (as local files are, once per process: `verify=False` skips that for local files);
    a missing, truncated or altered file raises `ShardError` naming it.
    """

    def __init__(
        self,
        location: str | os.PathLike[str],
        cache: str | os.PathLike[str] | None = None,
        verify: bool = True,
        timeout: float = 30,
    ) -> None:
        _require_datasets()
        self.location = os.fspath(location)
        self.remote = _is_url(self.location)
        self.verify, self.timeout = verify or self.remote, timeout
        if self.remote:
            from lamina.data.external import cache_dir

            key = hashlib.sha256(self.location.rstrip("/").encode()).hexdigest()[:24]
            self.folder = Path(cache) if cache is not None else cache_dir() / "shards" / key
        else:
            self.folder = Path(self.location)
        self.manifest = _check_manifest(self._read_manifest(), repr(self._where(MANIFEST)))
        self.n_inp: int = self.manifest["n_inp"]
        self.kinds: list[str] = [e["kind"] for e in self.manifest["elements"]]
        self.stored: list[str | None] = [e.get("stored") for e in self.manifest["elements"]]
        records = self.manifest["shards"]
        self._starts = [0]
        for r in records:
            self._starts.append(self._starts[-1] + r["rows"])
        self._tables: dict[int, Any] = {}
        self._columns: dict[tuple[int, str], tuple[list[Any], list[int]]] = {}
        self._index_table: Any = None
        _ = self._index  # the index is read (and checked) now: a bad folder fails here, not in a worker

    @property
    def _index(self) -> Any:
        if self._index_table is None:
            sized = [(f"n{k}", "int") for k in range(self.n_inp) if _sized(self.kinds[k])]
            columns = [("name", "str"), ("split", "int8"), *self._small(), *sized]
            self._index_table = self._open(self.manifest["index"], columns)
        return self._index_table

    # -- files ----------------------------------------------------------------------------------------------
    def _where(self, name: str) -> str:
        return self.location.rstrip("/") + "/" + name if self.remote else str(self.folder / name)

    def _read_manifest(self) -> Any:
        path = self.folder / MANIFEST
        if self.remote:
            from lamina._external.download import fetch

            self.folder.mkdir(parents=True, exist_ok=True)
            fetch(self._where(MANIFEST), path, None, None, False, self.timeout, _MAX_MANIFEST_BYTES)
        if not path.is_file():
            raise ShardError(
                f"Shards: no {MANIFEST} in {self.location!r}.\n"
                "help: point at a folder written by write_shards / `lamina shard` (or its URL)"
            )
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise ShardError(f"Shards: {str(path)!r} is over {_MAX_MANIFEST_BYTES:,} bytes: not a manifest")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ShardError(f"Shards: {str(path)!r} is not JSON ({e}).\nhelp: write the shards again") from e

    def _fetch(self, rec: dict[str, Any]) -> Path:
        """The local file of a record: downloaded (remote, once) and checked against its size and sha256."""
        path = self.folder / rec["file"]
        if self.remote and not (path.is_file() and path.stat().st_size == rec["bytes"]):
            from lamina.data.external import DownloadError, download_url

            try:
                download_url(self._where(rec["file"]), path, rec["sha256"], rec["bytes"], False, self.timeout)
            except DownloadError as e:
                raise ShardError(
                    f"Shards: fetching {self._where(rec['file'])} failed: {e}\n"
                    "help: nothing was kept; check the server and read again (the next read retries)"
                ) from e
        if not path.is_file():
            raise ShardError(
                f"Shards: {rec['file']} is missing from {self.location!r} (the manifest lists it).\n"
                "help: copy the whole shard folder, or write the shards again"
            )
        size = path.stat().st_size
        if size != rec["bytes"] or (self.verify and not _verified(path, rec["sha256"])):
            if self.remote:
                path.unlink(missing_ok=True)  # a bad cached copy is fetched again next time
            raise ShardError(
                f"Shards: {str(path)!r} is not the file the manifest describes ({size:,} bytes, expected "
                f"{rec['bytes']:,}, or its sha256 differs): truncated, altered or replaced.\n"
                "help: copy it again from the original, or write the shards again"
            )
        return path

    def _small(self) -> list[tuple[str, str]]:
        return [(f"e{k}", self.kinds[k]) for k in range(self.n_inp, len(self.kinds))]

    def _open(self, rec: dict[str, Any], columns: list[tuple[str, str]]) -> Any:
        """A file's Arrow table, memory-mapped through `datasets`, its schema and rows checked."""
        import pyarrow as pa
        from datasets import Dataset

        path = self._fetch(rec)
        try:
            table = Dataset.from_file(str(path)).data.table
            table.validate(full=True)
        except (OSError, pa.ArrowException, ValueError) as e:
            raise ShardError(f"Shards: {str(path)!r} is not a readable Arrow file: {e}") from e
        expected = pa.schema([(c, pa.int8() if kind == "int8" else _arrow_type(kind)) for c, kind in columns])
        if not table.schema.remove_metadata().equals(expected) or table.num_rows != rec["rows"]:
            raise ShardError(
                f"Shards: {str(path)!r} holds {table.num_rows} rows of {table.schema.remove_metadata()}; "
                f"the manifest says {rec['rows']} rows of {expected}.\nhelp: write the shards again"
            )
        return table

    def _table(self, s: int) -> Any:
        t = self._tables.get(s)
        if t is None:
            big = [(f"e{k}", self.kinds[k]) for k in range(self.n_inp)]
            t = self._tables[s] = self._open(self.manifest["shards"][s], big)
        return t

    # -- the source -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.manifest["items"])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"Shards: item {i} of {len(self)}")
        return ShardKey(i, str(self._cell(self._index, "name", i)))

    def __iter__(self) -> Iterator[ShardKey]:
        names = self._index.column("name").to_pylist()
        return (ShardKey(i, n) for i, n in enumerate(names))

    def splits(self) -> tuple[list[int], list[int]]:
        """The training and validation positions, as the writing DataBlock's splitter made them."""
        split = self._index.column("split").to_numpy()
        return (split == 0).nonzero()[0].tolist(), (split == 1).nonzero()[0].tolist()

    def groups(self) -> list[int]:
        """The shard file of every item: a distributed run deals whole files to its processes."""
        out: list[int] = []
        for s, r in enumerate(self.manifest["shards"]):
            out += [s] * r["rows"]
        return out

    def sizes(self, k: int = 0) -> Any:
        """The length of input element `k` of every item (bytes, characters or token ids), read from the
        index alone: a text loader buckets by length without opening a shard."""
        if not (0 <= k < self.n_inp and _sized(self.kinds[k])):
            raise ValueError(f"Shards: element {k} is not an input with recorded sizes (kinds {self.kinds})")
        return self._index.column(f"n{k}").to_numpy()

    def getters(self) -> list[Callable[[Any], Any]]:
        """One getter per element, reading it from the shards (what the DataBlock uses instead of its own)."""
        return [_ShardColumn(self, k) for k in range(len(self.kinds))]

    def value(self, key: ShardKey | int, k: int) -> Any:
        """Element `k` of item `key`: from the index (targets) or its shard (inputs, fetched if needed)."""
        i = key.pos if isinstance(key, ShardKey) else int(key)
        if k >= self.n_inp:
            return self._cell(self._index, f"e{k}", i)
        s = bisect.bisect_right(self._starts, i) - 1
        return self._cell(self._table(s), f"e{k}", i - self._starts[s])

    def _cell(self, table: Any, column: str, i: int) -> Any:
        """Row i of a column: its record batch found by bisection (indexing a chunked column walks its
        batches one by one: with 1,000 batches in a 4M-row index, reading every label took minutes)."""
        key = (id(table), column)
        found = self._columns.get(key)
        if found is None:
            chunks = table.column(column).chunks
            starts = [0]
            for c in chunks:
                starts.append(starts[-1] + len(c))
            found = self._columns[key] = (chunks, starts)
        chunks, starts = found
        c = bisect.bisect_right(starts, i) - 1
        return chunks[c][i - starts[c]].as_py()

    def __getstate__(self) -> dict[str, Any]:
        # open tables stay in this process; a worker re-opens (memory-maps) the files it reads
        state = dict(self.__dict__)
        state["_tables"], state["_index_table"], state["_columns"] = {}, None, {}
        return state

    def __repr__(self) -> str:
        n = len(self.manifest["shards"])
        return f"Shards({self.location!r}: {len(self)} items in {n} shard(s))"
