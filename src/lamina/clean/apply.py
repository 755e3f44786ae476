"""Apply review decisions to a dataset on disk, with an undo journal: nothing is ever deleted outright.

Deleted files move to a quarantine folder beside the dataset; a relabelled file moves to its new class
folder, or its CSV row gets the new label (the original CSV is kept). Every decision is checked before
anything moves, and the journal of planned moves is written first, so `undo` can put back whatever was
moved even after a crash. Quarantine and journals live in `<root>.lamina-clean/`, beside the dataset, so
that an undo leaves the dataset folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lamina.clean.source import DatasetSource
from lamina.core import atomic_write_bytes

__all__ = [
    "ACTIONS",
    "DECISION_COLUMNS",
    "ApplyError",
    "Decision",
    "Journal",
    "apply_decisions",
    "read_decisions",
    "undo",
]

ACTIONS = ("keep", "delete", "relabel")
DECISION_COLUMNS = ["item", "action", "new_label", "given_label", "root", "labels_csv", "fn_col", "label_col"]
MAX_DECISIONS_BYTES = 64 * 2**20
_JOURNAL_VERSION = 1


class ApplyError(ValueError):
    """Decisions that cannot be applied as written; nothing was moved."""


@dataclass(frozen=True)
class Decision:
    """One reviewed item: `action` is keep, delete or relabel (to `new_label`); `line` is its CSV line."""

    item: str
    action: str
    new_label: str
    given_label: str
    line: int


@dataclass
class Journal:
    """What an apply did (or planned): moves as (from, to) absolute paths, folders it created, the CSV it
    rewrote and where the original is kept."""

    path: Path
    root: str
    decisions_sha256: str
    state: str
    created: str
    moves: list[tuple[str, str]] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)
    csv: str | None = None
    csv_backup: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def save(self) -> None:
        doc = {
            "version": _JOURNAL_VERSION, "root": self.root, "decisions_sha256": self.decisions_sha256,
            "state": self.state, "created": self.created, "moves": self.moves,
            "created_dirs": self.created_dirs, "csv": self.csv, "csv_backup": self.csv_backup,
            "counts": self.counts, "problems": self.problems,
        }  # fmt: skip
        data = json.dumps(doc, indent=1).encode()
        atomic_write_bytes(self.path, lambda tmp: Path(tmp).write_bytes(data))

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            doc = json.loads(path.read_text())
            if doc.get("version") != _JOURNAL_VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            return cls(
                path=path, root=str(doc["root"]), decisions_sha256=str(doc["decisions_sha256"]),
                state=str(doc["state"]), created=str(doc["created"]),
                moves=[(str(a), str(b)) for a, b in doc["moves"]],
                created_dirs=[str(d) for d in doc["created_dirs"]], csv=doc.get("csv"),
                csv_backup=doc.get("csv_backup"), counts=dict(doc.get("counts", {})),
                problems=list(doc.get("problems", [])),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ApplyError(
                f"undo: {str(path)!r} is not a readable lamina clean journal ({type(e).__name__}: {e}).\n"
                "help: pass the dataset folder or a journal-*.json that `lamina clean apply` wrote"
            ) from e


def _err(msg: str, help_: str) -> ApplyError:
    return ApplyError(f"{msg}\nhelp: {help_}")


def _cell(row: dict[str, str], col: str) -> str:
    return (row.get(col) or "").strip()


def read_decisions(path: str | os.PathLike[str]) -> tuple[DatasetSource, list[Decision], str]:
    """Read and check a decisions CSV (as the review page downloads it): its dataset, decisions, SHA-256.

    Every problem found is reported at once, by CSV line; nothing is applied from a file with problems."""
    import csv
    import io

    p = Path(path)
    if not p.is_file():
        raise _err(f"apply: decisions file {str(p)!r} does not exist.", "download it from the review page")
    size = p.stat().st_size
    if size > MAX_DECISIONS_BYTES:
        raise _err(
            f"apply: {str(p)!r} is {size:,} bytes, over {MAX_DECISIONS_BYTES:,}.", "is it the right file?"
        )
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _err(f"apply: {str(p)!r} is not UTF-8 text ({e}).", "save the CSV as UTF-8") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in ("item", "action", "new_label", "given_label", "root") if c not in cols]
    if missing:
        raise _err(
            f"apply: {str(p)!r} has columns {cols}; missing {missing}.",
            f"use the CSV the review page downloads (columns {', '.join(DECISION_COLUMNS)})",
        )
    reader.fieldnames = cols
    rows = list(reader)
    if not rows:
        raise _err(f"apply: {str(p)!r} holds no decisions.", "mark some items on the review page first")
    problems: list[str] = []
    roots = {
        (_cell(r, "root"), _cell(r, "labels_csv"), _cell(r, "fn_col"), _cell(r, "label_col")) for r in rows
    }
    if len(roots) != 1:
        raise _err(f"apply: the decisions name {len(roots)} different datasets: {sorted(roots)[:3]}.",
                   "apply one dataset's decisions at a time (one review page = one CSV)")  # fmt: skip
    root_s, csv_s, fn_col, label_col = roots.pop()
    if not root_s:
        raise _err("apply: the 'root' column is empty.", "use the CSV the review page downloads")
    out: list[Decision] = []
    seen: dict[str, int] = {}
    for k, r in enumerate(rows):
        line = k + 2  # the header is line 1
        item, action = _cell(r, "item"), _cell(r, "action").lower()
        new, given = _cell(r, "new_label"), _cell(r, "given_label")
        if None in r or any(v is None for v in r.values()):
            problems.append(f"line {line}: {len(cols)} columns expected (a stray or missing comma?)")
            continue
        if action not in ACTIONS:
            problems.append(
                f"line {line}: action {action!r} for {item!r}; expected one of {', '.join(ACTIONS)}"
            )
            continue
        why = _bad_relative(item)
        if why:
            problems.append(f"line {line}: item {item!r} {why}")
            continue
        if action == "relabel":
            bad = _bad_label(new)
            if bad:
                problems.append(f"line {line}: relabel {item!r} to {new!r}: {bad}")
                continue
            if new == given:
                problems.append(f"line {line}: relabel {item!r} to its own label {new!r}")
                continue
        if item in seen:
            problems.append(f"line {line}: {item!r} is decided twice (also on line {seen[item]})")
            continue
        seen[item] = line
        out.append(Decision(item, action, new, given, line))
    if problems:
        shown = "\n  ".join(problems[:20]) + (
            f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise _err(f"apply: {len(problems)} problem(s) in {str(p)!r}; nothing was changed:\n  {shown}",
                   "fix those lines (or download the decisions again from the review page)")  # fmt: skip
    source = DatasetSource(Path(root_s), Path(csv_s) if csv_s else None, fn_col or "0", label_col or "1")
    return source, out, digest


def _bad_relative(item: str) -> str | None:
    if not item:
        return "is empty"
    if "\x00" in item or "\\" in item:
        return "holds a NUL or a backslash"
    pp = PurePosixPath(item)
    if pp.is_absolute() or (len(item) > 1 and item[1] == ":"):
        return "is an absolute path; expected a path relative to the dataset folder"
    if any(part in ("..", "") for part in item.split("/")):
        return "leaves the dataset folder (..) or has an empty part"
    return None


def _bad_label(label: str) -> str | None:
    if not label:
        return "no new label given"
    if label in (".", "..") or label.startswith(".") or any(c in label for c in "/\\\x00:"):
        return "a label must be a plain folder name (no '/', '\\', ':' or leading '.')"
    return None


def _now_id() -> tuple[str, str]:
    t = dt.datetime.now()
    return t.isoformat(timespec="seconds"), t.strftime("%Y%m%d-%H%M%S-%f")


def _journals(clean_dir: Path) -> list[Journal]:
    if not clean_dir.is_dir():
        return []
    return [Journal.load(p) for p in sorted(clean_dir.glob("journal-*.json"))]


def _inside(root: Path, item: str) -> Path:
    """`root/item`, refusing a path that a symlinked folder would lead out of the dataset."""
    target = root / item
    real_root, real_parent = os.path.realpath(root), os.path.realpath(target.parent)
    if os.path.commonpath([real_root, real_parent]) != real_root:
        raise _err(f"apply: {item!r} leads outside {str(root)!r} (through a symbolic link).",
                   "move the file into the dataset folder, or leave it out of the decisions")  # fmt: skip
    return target


def apply_decisions(
    decisions: str | os.PathLike[str], allow_new_labels: bool = False, clean_dir: Path | None = None
) -> Journal:
    """Apply a decisions CSV: quarantine deletions, move or rewrite relabelled items; returns the journal.

    Refused, with nothing changed, when a decision names an item that no longer exists (or whose label
    changed since the review), a new label that is not a class yet (unless `allow_new_labels`), or when
    these decisions were applied already and not undone."""
    source, decs, digest = read_decisions(decisions)
    root = Path(source.root)
    if not root.is_dir():
        raise _err(
            f"apply: the dataset folder {str(root)!r} does not exist.",
            "run apply on the machine where the review was made, or fix the 'root' column",
        )
    cdir = clean_dir if clean_dir is not None else source.clean_dir
    for j in _journals(cdir):
        if j.decisions_sha256 == digest and j.state in ("applying", "applied"):
            raise _err(
                f"apply: these decisions were applied already ({j.created}, journal {str(j.path)!r}).",
                f"nothing to do; to apply them again, undo first: lamina clean undo {root}",
            )
    stamp, jid = _now_id()
    journal = Journal(cdir / f"journal-{jid}.json", str(root.absolute()), digest, "applying", stamp)
    quarantine = cdir / "quarantine" / jid
    active = [d for d in decs if d.action != "keep"]
    journal.counts = {a: sum(d.action == a for d in decs) for a in ACTIONS}
    if source.layout == "folders":
        moves, new_dirs = _plan_folders(root, active, quarantine, allow_new_labels)
        journal.moves, journal.created_dirs = moves, new_dirs
        cdir.mkdir(parents=True, exist_ok=True)
        journal.save()  # the plan first: an interrupted apply can still be undone
        _do_moves(journal)
    else:
        _apply_csv(source, root, active, quarantine, allow_new_labels, journal, cdir)
    journal.state = "applied"
    journal.save()
    return journal


def _plan_folders(
    root: Path, decs: list[Decision], quarantine: Path, allow_new: bool
) -> tuple[list[tuple[str, str]], list[str]]:
    problems: list[str] = []
    moves: list[tuple[str, str]] = []
    new_dirs: list[str] = []
    targets: set[str] = set()
    classes = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for d in decs:
        src = _inside(root, d.item)
        if not src.is_file() and not src.is_symlink():
            problems.append(f"line {d.line}: {d.item!r} no longer exists in {str(root)!r}")
            continue
        current = src.parent.name
        if d.given_label and current != d.given_label:
            problems.append(f"line {d.line}: {d.item!r} is now in folder {current!r}, not {d.given_label!r} "
                            "as when reviewed")  # fmt: skip
            continue
        if d.action == "delete":
            moves.append((str(src.absolute()), str((quarantine / d.item).absolute())))
            continue
        dest_dir = src.parent.parent / d.new_label
        siblings = {p.name for p in src.parent.parent.iterdir() if p.is_dir()}
        if d.new_label not in siblings | classes:
            if not allow_new:
                problems.append(f"line {d.line}: relabel {d.item!r} to {d.new_label!r}, which is not a class "
                                f"folder (classes: {', '.join(sorted(siblings)[:12])})")  # fmt: skip
                continue
            if str(dest_dir.absolute()) not in new_dirs:
                new_dirs.append(str(dest_dir.absolute()))
        dest = dest_dir / src.name
        if dest.exists() or str(dest) in targets:
            dest = dest_dir / f"{src.stem}__from_{current}{src.suffix}"
        if dest.exists() or str(dest) in targets:
            problems.append(f"line {d.line}: {str(dest)!r} exists already; {d.item!r} cannot move there")
            continue
        targets.add(str(dest))
        moves.append((str(src.absolute()), str(dest.absolute())))
    if problems:
        shown = "\n  ".join(problems[:20]) + (
            f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise _err(f"apply: {len(problems)} decision(s) cannot be applied; nothing was changed:\n  {shown}",
                   "review the dataset again (lamina clean PATH) or fix those lines; "
                   "--allow-new-labels lets a relabel create a class folder")  # fmt: skip
    return moves, new_dirs


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:  # another file system: copy, then remove the original (a whole copy exists first)
        shutil.move(str(src), str(dst))


def _do_moves(journal: Journal) -> None:
    for d in journal.created_dirs:
        Path(d).mkdir(parents=True, exist_ok=True)
    for i, (src, dst) in enumerate(journal.moves):
        if Path(dst).exists():
            raise _err(f"apply: {dst!r} appeared while applying; stopped after {i} of {len(journal.moves)} "
                       "moves.", f"undo what was done: lamina clean undo {journal.path}")  # fmt: skip
        _move(Path(src), Path(dst))


def _read_table(path: Path) -> Any:
    import pandas as pd

    size = path.stat().st_size
    if size > MAX_DECISIONS_BYTES * 4:
        raise _err(f"apply: {str(path)!r} is {size:,} bytes.", "is it the labels CSV?")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _column(df: Any, col: str, what: str, path: Path) -> str:
    cols = [str(c) for c in df.columns]
    if col in cols:
        return col
    if col.isdigit() and int(col) < len(cols):
        return cols[int(col)]
    raise _err(f"apply: the {what} column {col!r} is not in {str(path)!r} (columns {cols}).",
               "check the labels CSV named by the decisions")  # fmt: skip


def _apply_csv(
    source: DatasetSource, root: Path, decs: list[Decision], quarantine: Path, allow_new: bool,
    journal: Journal, cdir: Path,
) -> None:  # fmt: skip
    named = source.labels_csv if source.labels_csv is not None else Path("labels.csv")
    csv_path = named if named.is_absolute() else root / named
    if not csv_path.is_file():
        raise _err(f"apply: the labels CSV {str(csv_path)!r} does not exist.", "fix the 'labels_csv' column")
    df = _read_table(csv_path)
    fn = _column(df, source.fn_col, "file name", csv_path)
    lab = _column(df, source.label_col, "label", csv_path)
    norm = [PurePosixPath(str(v).replace("\\", "/")).as_posix() for v in df[fn]]
    rows_of: dict[str, list[int]] = {}
    for i, v in enumerate(norm):
        rows_of.setdefault(v, []).append(i)
    known = set(df[lab])
    problems: list[str] = []
    drop: list[int] = []
    moves: list[tuple[str, str]] = []
    for d in decs:
        rows = rows_of.get(PurePosixPath(d.item).as_posix())
        if not rows:
            problems.append(f"line {d.line}: {d.item!r} is not in {csv_path.name} (column {fn!r})")
            continue
        current = {df.at[r, lab] for r in rows}
        if d.given_label and current != {d.given_label}:
            problems.append(
                f"line {d.line}: {d.item!r} is labelled {sorted(current)} now, not {d.given_label!r}"
            )
            continue
        if d.action == "delete":
            src = _inside(root, d.item)
            if not src.is_file() and not src.is_symlink():
                problems.append(f"line {d.line}: {d.item!r} no longer exists in {str(root)!r}")
                continue
            drop += rows
            moves.append((str(src.absolute()), str((quarantine / d.item).absolute())))
        else:
            if d.new_label not in known and not allow_new:
                problems.append(f"line {d.line}: new label {d.new_label!r} is not used in {csv_path.name}")
                continue
            for r in rows:
                df.at[r, lab] = d.new_label
    if problems:
        shown = "\n  ".join(problems[:20])
        raise _err(f"apply: {len(problems)} decision(s) cannot be applied; nothing was changed:\n  {shown}",
                   "review the dataset again or fix those lines")  # fmt: skip
    backup = cdir / "originals" / f"{journal.path.stem}-{csv_path.name}"
    journal.moves, journal.csv, journal.csv_backup = moves, str(csv_path.absolute()), str(backup.absolute())
    cdir.mkdir(parents=True, exist_ok=True)
    original = csv_path.read_bytes()
    atomic_write_bytes(backup, lambda tmp: Path(tmp).write_bytes(original))
    journal.save()
    new_df = df.drop(index=drop)
    data = new_df.to_csv(index=False).encode()
    atomic_write_bytes(csv_path, lambda tmp: Path(tmp).write_bytes(data))
    _do_moves(journal)


def _find_journal(target: Path) -> Journal:
    if target.is_file() and target.suffix == ".json":
        return Journal.load(target)
    if target.is_file():  # a decisions CSV: its dataset
        source = read_decisions(target)[0]
        cdir = source.clean_dir
    elif target.is_dir():
        cdir = target if target.name.endswith(".lamina-clean") else DatasetSource(target).clean_dir
    else:
        raise _err(f"undo: {str(target)!r} does not exist.",
                   "pass the dataset folder, its decisions CSV or a journal-*.json")  # fmt: skip
    live = [j for j in _journals(cdir) if j.state in ("applying", "applied")]
    if not live:
        raise _err(f"undo: nothing to undo for {str(target)!r} (no applied journal in {str(cdir)!r}).",
                   "apply writes its journal there; were the decisions applied to another copy?")  # fmt: skip
    return live[-1]


def undo(target: str | os.PathLike[str]) -> Journal:
    """Undo the latest apply on a dataset (or the journal given): files back from quarantine and from
    their new class folders, the original CSV restored byte for byte, created folders removed if empty."""
    journal = _find_journal(Path(target))
    if journal.state == "undone":
        raise _err(f"undo: {str(journal.path)!r} was undone already.", "nothing to do")
    problems: list[str] = []
    for src, dst in reversed(journal.moves):
        s, d = Path(src), Path(dst)
        s_there, d_there = s.exists() or s.is_symlink(), d.exists() or d.is_symlink()
        if d_there and not s_there:
            _move(d, s)
        elif s_there and d_there:
            problems.append(f"{src!r} exists again and {dst!r} too: left both as they are")
        elif not s_there and not d_there:
            problems.append(f"{dst!r} is gone (it was {src!r})")
    if journal.csv and journal.csv_backup:
        backup = Path(journal.csv_backup)
        if backup.is_file():
            original = backup.read_bytes()
            atomic_write_bytes(Path(journal.csv), lambda tmp: Path(tmp).write_bytes(original))
        else:
            problems.append(f"the original CSV {journal.csv_backup!r} is gone; {journal.csv!r} left as it is")
    for made in reversed(journal.created_dirs):
        with contextlib.suppress(OSError):
            Path(made).rmdir()  # only when empty
    for _, dst in journal.moves:  # empty quarantine folders
        q = Path(dst).parent
        while q.name and "quarantine" in q.parts:
            with contextlib.suppress(OSError):
                q.rmdir()
            if q.exists():
                break
            q = q.parent
    journal.state = "undone" if not problems else "undone with problems"
    journal.problems = problems
    journal.save()
    if problems:
        shown = "\n  ".join(problems[:20])
        raise _err(
            f"undo: {len(problems)} item(s) could not be put back (the rest was):\n  {shown}",
            f"see {str(journal.path)!r}; nothing was deleted",
        )
    return journal
