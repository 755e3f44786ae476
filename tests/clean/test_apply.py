"""apply / undo on disk: quarantine, relabel, CSV rewrite, the journal; bad input refused, nothing lost."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from _clean_kit import tree_digest

from lamina.clean import ApplyError, DatasetSource, apply_decisions, undo
from lamina.clean.apply import DECISION_COLUMNS


def _write(path: Path, rows: list[dict[str, str]], source: DatasetSource) -> Path:
    meta = {
        "root": str(source.root), "labels_csv": str(source.labels_csv or ""),
        "fn_col": source.fn_col, "label_col": source.label_col,
    }  # fmt: skip
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=DECISION_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({"new_label": "", **meta, **r})
    return path


def _row(item: str, action: str, given: str, new: str = "") -> dict[str, str]:
    return {"item": item, "action": action, "given_label": given, "new_label": new}


def test_folders_apply_then_undo_restores_every_byte(digits: Any, tmp_path: Path) -> None:
    root = digits.root
    before = tree_digest(root)
    flipped = digits.flipped[0]  # e.g. "1/0003.png", really a 0
    rows = [
        _row(digits.duplicate, "delete", "0"),
        _row(digits.broken, "delete", "7"),
        _row(flipped, "relabel", flipped.split("/")[0], "0"),
        _row("0/0012.png", "keep", "0"),
    ]
    dec = _write(tmp_path / "decisions.csv", rows, DatasetSource(root))
    j = apply_decisions(dec)
    assert j.state == "applied" and j.counts == {"keep": 1, "delete": 2, "relabel": 1}
    assert not (root / digits.duplicate).exists() and not (root / digits.broken).exists()
    name = flipped.split("/")[1]
    assert (root / "0" / name).exists() and not (root / flipped).exists()
    quarantine = root.parent / "digits.lamina-clean" / "quarantine"
    assert sorted(p.name for p in quarantine.rglob("*") if p.is_file()) == [
        "broken.png",
        "copy_of_a_zero.png",
    ]
    # quarantined bytes are the originals: nothing deleted
    q_dup = next(quarantine.rglob("copy_of_a_zero.png"))
    assert tree_digest(q_dup.parent)["copy_of_a_zero.png"] == before[digits.duplicate]

    with pytest.raises(ApplyError, match="applied already") as e:
        apply_decisions(dec)  # twice
    assert "undo" in str(e.value)

    undo(root)
    assert tree_digest(root) == before
    with pytest.raises(ApplyError, match="nothing to undo"):
        undo(root)
    j2 = apply_decisions(dec)  # after an undo the same decisions apply again
    assert j2.state == "applied"
    undo(dec)  # by decisions CSV
    assert tree_digest(root) == before


def test_relabel_to_a_name_taken_in_the_new_class_keeps_both(digits: Any, tmp_path: Path) -> None:
    root = digits.root
    target = sorted((root / "1").glob("0*.png"))[5]
    clash = root / "0" / target.name
    clash.write_bytes(b"not the same")
    before = tree_digest(root)
    dec = _write(tmp_path / "d.csv", [_row(f"1/{target.name}", "relabel", "1", "0")], DatasetSource(root))
    apply_decisions(dec)
    assert clash.read_bytes() == b"not the same"
    assert (root / "0" / f"{target.stem}__from_1{target.suffix}").exists()
    undo(root)
    assert tree_digest(root) == before


def test_csv_layout_rewrites_labels_keeps_the_original_and_undo_restores_it(
    digits: Any, tmp_path: Path
) -> None:
    root = digits.root
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    lines = ["name,label,note"] + [f'{f},{f.split("/")[0]},"a, quoted note"' for f in files]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    before = tree_digest(root)
    src = DatasetSource(root, labels_csv=Path("labels.csv"), fn_col="name", label_col="label")
    rows = [_row(digits.broken, "delete", "7"), _row(files[60], "relabel", files[60].split("/")[0], "7")]
    j = apply_decisions(_write(tmp_path / "d.csv", rows, src))
    import pandas as pd

    df = pd.read_csv(root / "labels.csv", dtype=str)
    assert digits.broken not in set(df["name"]) and len(df) == len(files) - 1
    assert df.set_index("name").loc[files[60], "label"] == "7"
    assert df["note"].eq("a, quoted note").all()
    assert j.csv_backup is not None and Path(j.csv_backup).read_bytes() == (b"\n".join(
        line.encode() for line in lines) + b"\n")  # fmt: skip
    assert not (root / digits.broken).exists()
    undo(root)
    assert tree_digest(root) == before


def test_items_that_vanished_or_changed_since_the_scan_refuse_everything(digits: Any, tmp_path: Path) -> None:
    root = digits.root
    (root / "0" / "0012.png").unlink()  # vanished between scan and apply
    before = tree_digest(root)
    rows = [
        _row(digits.duplicate, "delete", "0"),  # fine on its own
        _row("0/0012.png", "delete", "0"),
        _row("1/0500.png", "relabel", "0", "7"),  # the review saw it labelled 0: it is in 1/ now
    ]
    with pytest.raises(ApplyError) as e:
        apply_decisions(_write(tmp_path / "d.csv", rows, DatasetSource(root)))
    msg = str(e.value)
    assert "nothing was changed" in msg and "no longer exists" in msg and "not '0'" in msg and "help:" in msg
    assert tree_digest(root) == before
    assert not (root.parent / "digits.lamina-clean").exists()


@pytest.mark.parametrize(
    ("row", "says"),
    [
        (_row("0/nope.png", "delete", "0"), "no longer exists"),
        (_row("../outside.png", "delete", "0"), "leaves the dataset folder"),
        (_row("/etc/passwd", "delete", "0"), "absolute path"),
        (_row("0/0012.png", "burn", "0"), "expected one of keep, delete, relabel"),
        (_row("0/0012.png", "relabel", "0", ""), "no new label"),
        (_row("0/0012.png", "relabel", "0", "../x"), "plain folder name"),
        (_row("0/0012.png", "relabel", "0", "cat"), "not a class folder"),
    ],
)
def test_bad_decisions_are_refused_with_help(
    digits: Any, tmp_path: Path, row: dict[str, str], says: str
) -> None:
    before = tree_digest(digits.root)
    with pytest.raises(ApplyError, match=says) as e:
        apply_decisions(_write(tmp_path / "d.csv", [row], DatasetSource(digits.root)))
    assert "help:" in str(e.value)
    assert tree_digest(digits.root) == before


def test_new_label_allowed_on_request_and_its_folder_removed_by_undo(digits: Any, tmp_path: Path) -> None:
    before = tree_digest(digits.root)
    dec = _write(tmp_path / "d.csv", [_row("0/0012.png", "relabel", "0", "nine")], DatasetSource(digits.root))
    apply_decisions(dec, allow_new_labels=True)
    assert (digits.root / "nine" / "0012.png").exists()
    undo(digits.root)
    assert tree_digest(digits.root) == before


def test_hand_edited_csvs_badly(digits: Any, tmp_path: Path) -> None:
    src = DatasetSource(digits.root)
    before = tree_digest(digits.root)
    bad = tmp_path / "bad.csv"
    bad.write_text("item;action\n0/0012.png;delete\n")
    with pytest.raises(ApplyError, match="missing"):
        apply_decisions(bad)
    good = _write(tmp_path / "d.csv", [_row("0/0012.png", "delete", "0")], src).read_text()
    bad.write_text(good.rstrip("\n") + ',"extra"\n')  # a stray column
    with pytest.raises(ApplyError, match="columns expected"):
        apply_decisions(bad)
    bad.write_text(good + good.splitlines()[1] + "\n")  # the same item twice
    with pytest.raises(ApplyError, match="decided twice"):
        apply_decisions(bad)
    bad.write_text(good.splitlines()[0] + "\n")
    with pytest.raises(ApplyError, match="no decisions"):
        apply_decisions(bad)
    bad.write_bytes(b"\xff\xfe" + "x".encode("utf-16"))
    with pytest.raises(ApplyError, match="UTF-8"):
        apply_decisions(bad)
    other = _write(tmp_path / "o.csv", [_row("0/0013.png", "keep", "0")], DatasetSource(tmp_path))
    bad.write_text(good + other.read_text().splitlines()[1] + "\n")
    with pytest.raises(ApplyError, match="different datasets"):
        apply_decisions(bad)
    assert tree_digest(digits.root) == before


def test_undo_after_an_interrupted_apply_puts_back_what_moved(digits: Any, tmp_path: Path) -> None:
    """A journal is written before the first move: undo works from it whatever was done."""
    root = digits.root
    before = tree_digest(root)
    rows = [_row("0/0012.png", "delete", "0"), _row("0/0013.png", "delete", "0")]
    j = apply_decisions(_write(tmp_path / "d.csv", rows, DatasetSource(root)))
    src, dst = j.moves[1]
    Path(dst).rename(src)  # as if the second move had never happened
    j.state = "applying"
    j.save()
    undo(j.path)
    assert tree_digest(root) == before
