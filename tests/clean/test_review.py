"""The review page is self-contained and safe with hostile file names; the notebook widget decides alike."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lamina.clean import DatasetSource, find_issues
from lamina.vision import ImageDataLoaders, Resize


def _file_issues(root: Path) -> Any:
    """Issues from the model-free checks only (broken, blank, odd size): a page in well under a second."""
    dls = ImageDataLoaders.from_folder(
        root, valid_pct=0.2, seed=0, bs=16, num_workers=0, item_tfms=[Resize(28)]
    )
    return find_issues(dls, checks=("file",), source=DatasetSource(root))


def test_page_is_self_contained_and_lists_the_issues(digits: Any, tmp_path: Path) -> None:
    issues = _file_issues(digits.root)
    assert set(issues.table["issue"]) == {"broken", "blank", "odd_size"}
    page = issues.review(tmp_path / "review.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from anywhere
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1])
    items = {r["item"]: r for r in data["items"]}
    assert set(items) == {digits.broken, digits.blank, digits.near_duplicate}
    assert items[digits.blank]["thumb"].startswith("data:image/png;base64,")
    assert items[digits.broken]["thumb"] == ""  # does not decode: no preview, still listed
    assert data["meta"]["root"] == str(digits.root.absolute()) and data["meta"]["classes"] == ["0", "1", "7"]


def test_a_hostile_file_name_cannot_close_the_script(digits: Any, tmp_path: Path) -> None:
    # "</script>" cannot be a file name (the slash), but "<!--<script>" puts a parser in script-data-escaped
    # state, where the page's own closing tag would no longer close the data block
    evil = digits.root / "7" / "<!--<script>alert(1)<script>.png"
    evil.write_bytes(b"not an image")
    page = _file_issues(digits.root).review(tmp_path / "r.html").read_text()
    assert page.count("</script>") == 2  # the data block's and the code's own
    assert "<script>alert(1)" not in page and "<!--" not in page
    assert "\\u003c!--\\u003cscript>alert(1)" in page


def test_widget_records_decisions_like_the_page(digits: Any, tmp_path: Path) -> None:
    pytest.importorskip("ipywidgets")
    w = _file_issues(digits.root).widget()
    assert len(w.items_box.children) == 3
    w.issue_filter.value = "broken"
    assert len(w.items_box.children) == 1
    w.choices[digits.broken].value = "Delete"
    w.choices[digits.blank].value = "Relabel: 0"
    d = w.decisions().set_index("item")
    assert d.loc[digits.broken, "action"] == "delete"
    assert (d.loc[digits.blank, "action"], d.loc[digits.blank, "new_label"]) == ("relabel", "0")
    assert d.loc[digits.blank, "given_label"] == "7" and d.loc[digits.blank, "root"] == str(digits.root)
    from lamina.clean import apply_decisions, undo

    j = apply_decisions(w.save(tmp_path / "decisions.csv"))
    assert (digits.root / "0" / "blank.png").exists()
    undo(j.path)
    assert (digits.root / "7" / "blank.png").exists()
