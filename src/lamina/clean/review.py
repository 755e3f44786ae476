"""The review page: one self-contained HTML file (thumbnails inlined, no server, no network) that lists the
issues worst first, filters them by issue type and class, takes Keep / Delete / Relabel per item and
downloads the decisions as the CSV that `lamina clean apply` reads.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.clean.apply import DECISION_COLUMNS
from lamina.core import atomic_write_bytes

if TYPE_CHECKING:
    from lamina.clean.issues import Issues

__all__ = ["review_records", "thumbnail_png", "write_review"]


def thumbnail_png(path: Path, size: int = 96) -> bytes | None:
    """A PNG at most `size` pixels on a side, or None when the file does not decode."""
    from PIL import Image

    from lamina.vision import load_image

    try:
        t = load_image(path)  # (3, H, W) uint8, with lamina's size guard
    except Exception:
        return None
    img = Image.fromarray(t.permute(1, 2, 0).numpy())
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def review_records(issues: Issues, max_items: int = 2000, thumb: int = 96) -> list[dict[str, Any]]:
    """One record per item with issues, worst first: name, label, issues, a thumbnail data URI or text."""
    by_item: dict[int, dict[str, Any]] = {}
    for r in issues.table.to_dict("records"):
        i = int(r["index"])
        rec = by_item.get(i)
        if rec is None:
            if len(by_item) >= max_items:
                continue
            rec = by_item[i] = {
                "i": i, "item": str(r["item"]), "label": str(r["label"]), "split": str(r["split"]),
                "score": 0.0, "issues": [], "suggested": "",
            }  # fmt: skip
        score = float(r["score"])
        rec["issues"].append({"issue": str(r["issue"]), "score": score, "detail": str(r["detail"])})
        rec["score"] = max(rec["score"], score)
        if r["issue"] == "label" and r["suggested"]:
            rec["suggested"] = str(r["suggested"])
    for i, rec in by_item.items():
        p = issues.paths[i] if i < len(issues.paths) else None
        png = thumbnail_png(p, thumb) if p is not None else None
        rec["thumb"] = "data:image/png;base64," + base64.b64encode(png).decode() if png else ""
        rec["text"] = "" if p is not None else issues.previews.get(i, rec["item"])
    return sorted(by_item.values(), key=lambda r: (-r["score"], r["i"]))


def write_review(
    issues: Issues, path: str | os.PathLike[str], max_items: int = 2000, thumb: int = 96
) -> Path:
    """Write the review page for `issues` to `path` (one HTML file that works offline in any browser)."""
    recs = review_records(issues, max_items=max_items, thumb=thumb)
    src = issues.source
    meta = {
        "root": str(Path(src.root).absolute()) if src is not None else "",
        "labels_csv": str(src.labels_csv) if src is not None and src.labels_csv is not None else "",
        "fn_col": src.fn_col if src is not None else "",
        "label_col": src.label_col if src is not None else "",
        "columns": DECISION_COLUMNS,
        "classes": issues.vocab or sorted(set(issues.labels)),
        "n_items": len(issues.items),
        "shown": len(recs),
        "with_issues": int(issues.table["item"].nunique()) if len(issues.table) else 0,
        "summary": issues.summary(),
    }
    # JSON inside <script>: "<" escaped so that no item name can close the tag
    payload = json.dumps({"meta": meta, "items": recs}).replace("<", "\\u003c")
    page = _PAGE.replace("__DATA__", payload).replace(
        "__TITLE__", html.escape(f"lamina clean: {meta['root']}")
    )
    out = Path(path)
    atomic_write_bytes(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 12px;z-index:1}
header select,header button{margin-right:8px}
#summary{white-space:pre-wrap;font:12px monospace;color:#555;margin:4px 0}
#cards{display:flex;flex-wrap:wrap;gap:10px;padding:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:230px}
.card.keep{border-color:#2a2}.card.delete{border-color:#c22;opacity:.7}.card.relabel{border-color:#c80}
.card img{image-rendering:pixelated;width:96px;height:96px;object-fit:contain;background:#eee;display:block}
.text{font:11px monospace;max-height:96px;overflow:auto;background:#f3f3f3;padding:2px}
.name{font:11px monospace;word-break:break-all}.iss{font-size:12px;margin:2px 0;color:#444}
.iss b{color:#a30}.acts label{margin-right:6px;font-size:12px}.card select{max-width:100%}
</style></head><body>
<header>
 <label>issue <select id="f-issue"><option value="">all</option></select></label>
 <label>class <select id="f-class"><option value="">all</option></select></label>
 <label><input type="checkbox" id="f-open"> undecided only</label>
 <button id="keep-shown">Keep all shown</button>
 <button id="download">Download decisions (CSV)</button>
 <span id="count"></span>
 <div id="summary"></div>
</header>
<div id="cards"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const META = DATA.meta, ITEMS = DATA.items;
const decisions = new Map();  // item name -> {action, new_label}
function el(tag, props, kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of kids || []) e.appendChild(c);
  return e;
}
function fillSelect(sel, values) {
  for (const v of values) sel.appendChild(el("option", {value: v, text: v}));
}
const issueTypes = [...new Set(ITEMS.flatMap(r => r.issues.map(i => i.issue)))].sort();
fillSelect(document.getElementById("f-issue"), issueTypes);
fillSelect(document.getElementById("f-class"), [...new Set(ITEMS.map(r => r.label))].sort());
document.getElementById("summary").textContent = META.summary +
  (META.shown < META.with_issues ? `\n(showing the worst ${META.shown} of ${META.with_issues} items)` : "");
function shown() {
  const fi = document.getElementById("f-issue").value, fc = document.getElementById("f-class").value;
  const open = document.getElementById("f-open").checked;
  return ITEMS.filter(r => (!fi || r.issues.some(i => i.issue === fi)) && (!fc || r.label === fc) &&
                           (!open || !decisions.has(r.item)));
}
function decide(r, action, card, sel) {
  decisions.set(r.item, {action: action, new_label: action === "relabel" ? sel.value : ""});
  card.className = "card " + action;
  updateCount();
}
function card(r) {
  const c = el("div", {cls: "card", "data-item": r.item});
  c.appendChild(r.thumb ? el("img", {src: r.thumb, alt: r.item})
                        : el("div", {cls: "text", text: r.text || "(no preview)"}));
  c.appendChild(el("div", {cls: "name", text: r.item}));
  c.appendChild(el("div", {cls: "iss", text: "label: " + r.label + " (" + r.split + ")"}));
  for (const i of r.issues) {
    const about = document.createTextNode(" " + i.score.toFixed(3) + " " + i.detail);
    c.appendChild(el("div", {cls: "iss"}, [el("b", {text: i.issue}), about]));
  }
  const sel = el("select", {"aria-label": "new label"});
  fillSelect(sel, META.classes.filter(x => x !== r.label));
  if (r.suggested && r.suggested !== r.label) sel.value = r.suggested;
  const acts = el("div", {cls: "acts"});
  for (const a of ["keep", "delete", "relabel"]) {
    const inp = el("input", {type: "radio", name: "d-" + r.i, value: a});
    const prev = decisions.get(r.item);
    if (prev && prev.action === a) { inp.checked = true; c.className = "card " + a; }
    inp.addEventListener("change", () => decide(r, a, c, sel));
    const name = document.createTextNode(a[0].toUpperCase() + a.slice(1));
    acts.appendChild(el("label", {}, [inp, name]));
  }
  sel.addEventListener("change", () => {
    const d = decisions.get(r.item);
    if (d && d.action === "relabel") d.new_label = sel.value;
  });
  c.appendChild(acts); c.appendChild(sel);
  return c;
}
function render() {
  const box = document.getElementById("cards");
  box.replaceChildren(...shown().map(card));
  updateCount();
}
function updateCount() {
  document.getElementById("count").textContent = `${decisions.size} decided / ${ITEMS.length} items`;
}
function q(v) { return '"' + String(v).replace(/"/g, '""') + '"'; }
function csv() {
  const byItem = new Map(ITEMS.map(r => [r.item, r]));
  const lines = [META.columns.join(",")];
  for (const [item, d] of decisions) {
    const r = byItem.get(item);
    const row = {item: item, action: d.action, new_label: d.new_label, given_label: r.label, root: META.root,
                 labels_csv: META.labels_csv, fn_col: META.fn_col, label_col: META.label_col};
    lines.push(META.columns.map(k => q(row[k])).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}
document.getElementById("download").addEventListener("click", () => {
  const url = URL.createObjectURL(new Blob([csv()], {type: "text/csv"}));
  const a = el("a", {href: url, download: "decisions.csv"});
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});
document.getElementById("keep-shown").addEventListener("click", () => {
  for (const r of shown()) if (!decisions.has(r.item)) decisions.set(r.item, {action: "keep", new_label: ""});
  render();
});
for (const id of ["f-issue", "f-class", "f-open"]) {
  document.getElementById(id).addEventListener("change", render);
}
render();
</script></body></html>
"""
