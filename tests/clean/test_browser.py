"""The review page in a real browser: headless Chromium (Debian's package, driven by Playwright) opens the
file, takes decisions by clicks, downloads the CSV; apply then undo restores the folder byte for byte.

Skipped, with the reason, where Playwright or Chromium is missing (`make browser` installs both)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from _clean_kit import tree_digest

from lamina.clean import DatasetSource, apply_decisions, find_issues, undo
from lamina.vision import ImageDataLoaders, Resize

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("LAMINA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
def browser_page(tmp_path: Path) -> Any:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (make browser)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (make browser: apt-get install chromium chromium-driver)")
    with sync_api.sync_playwright() as p:
        # a fresh profile folder per test (Playwright passes it as --user-data-dir)
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS, accept_downloads=True
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on(
            "request",
            lambda r: (
                errors.append(f"request {r.url}")
                if not r.url.startswith(("file:", "data:", "blob:"))
                else None
            ),
        )
        try:
            yield page, errors
        finally:
            browser.close()


def test_click_download_apply_undo_round_trip(browser_page: Any, digits: Any, tmp_path: Path) -> None:
    page, errors = browser_page
    root = digits.root
    before = tree_digest(root)
    dls = ImageDataLoaders.from_folder(
        root, valid_pct=0.2, seed=0, bs=16, num_workers=0, item_tfms=[Resize(28)]
    )
    html = find_issues(dls, checks=("file",), source=DatasetSource(root)).review(tmp_path / "review.html")

    page.goto(html.as_uri())
    cards = page.locator(".card")
    assert cards.count() == 3
    page.locator(f'.card[data-item="{digits.broken}"] input[value=delete]').check()
    blank = page.locator(f'.card[data-item="{digits.blank}"]')
    blank.locator("select").select_option("0")
    blank.locator("input[value=relabel]").check()
    page.select_option("#f-issue", "odd_size")  # the filter shows the resized copy only
    assert cards.count() == 1
    page.click("#keep-shown")
    page.select_option("#f-issue", "")
    page.check("#f-open")
    assert cards.count() == 0  # everything decided
    assert page.locator("#count").text_content() == "3 decided / 3 items"
    with page.expect_download() as dl:
        page.click("#download")
    decisions = tmp_path / "decisions.csv"
    dl.value.save_as(decisions)
    assert dl.value.suggested_filename == "decisions.csv"
    assert not errors, errors

    j = apply_decisions(decisions)
    assert j.counts == {"keep": 1, "delete": 1, "relabel": 1}
    assert not (root / digits.broken).exists() and (root / "0" / "blank.png").exists()
    assert (root / digits.near_duplicate).exists()
    undo(root)
    assert tree_digest(root) == before
