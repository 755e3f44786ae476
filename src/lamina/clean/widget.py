"""The review in a Jupyter notebook: ipywidgets with the page's filters and Keep / Delete / Relabel choices,
saving the same decisions CSV that `lamina clean apply` reads (ipywidgets is imported when it is built)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.clean.apply import DECISION_COLUMNS
from lamina.clean.review import review_records

if TYPE_CHECKING:
    import pandas as pd

    from lamina.clean.issues import Issues

__all__ = ["ReviewWidget"]


class ReviewWidget:
    """`issues.widget()`: shows the worst `max_items` items; `decisions()` and `save(path)` read the choices.

    Each item's choice is a dropdown: Keep, Delete, or "Relabel: <class>" (the suggested class first)."""

    def __init__(self, issues: Issues, max_items: int = 200) -> None:
        try:
            import ipywidgets as w
        except ImportError as e:
            raise ImportError(
                "ReviewWidget needs ipywidgets.\nhelp: pip install ipywidgets (or 'lamina[clean]'), or use "
                "issues.review('review.html') and open the page in a browser"
            ) from e
        self._w = w
        self.issues = issues
        self.records = review_records(issues, max_items=max_items)
        src = issues.source
        self._meta = {
            "root": str(Path(src.root).absolute()) if src is not None else "",
            "labels_csv": str(src.labels_csv) if src is not None and src.labels_csv is not None else "",
            "fn_col": src.fn_col if src is not None else "",
            "label_col": src.label_col if src is not None else "",
        }
        self.classes = list(issues.vocab or sorted(set(issues.labels)))
        self.choices: dict[str, Any] = {}
        types = sorted({i["issue"] for r in self.records for i in r["issues"]})
        self.issue_filter = w.Dropdown(options=["all", *types], description="issue")
        self.class_filter = w.Dropdown(options=["all", *sorted({r["label"] for r in self.records})],
                                       description="class")  # fmt: skip
        self.path = w.Text(value="decisions.csv", description="save to")
        self.save_button = w.Button(description="Save decisions")
        self.status = w.Label()
        self.items_box = w.VBox()
        self.issue_filter.observe(lambda _: self._render(), names="value")
        self.class_filter.observe(lambda _: self._render(), names="value")
        self.save_button.on_click(lambda _: self._save_clicked())
        self._rows = {r["item"]: self._row(r) for r in self.records}
        self.box = w.VBox([
            w.HBox([self.issue_filter, self.class_filter]),
            w.HBox([self.path, self.save_button, self.status]),
            self.items_box,
        ])  # fmt: skip
        self._render()

    def _row(self, r: dict[str, Any]) -> Any:
        w = self._w
        if r["thumb"]:
            import base64

            png = base64.b64decode(r["thumb"].split(",", 1)[1])
            view: Any = w.Image(value=png, format="png", width=96, height=96)
        else:
            view = w.HTML(value=f"<pre>{_escape(r['text'])}</pre>")
        about = "<br>".join(
            f"<b>{_escape(i['issue'])}</b> {i['score']:.3f} {_escape(i['detail'])}" for i in r["issues"]
        )
        info = w.HTML(value=f"<code>{_escape(r['item'])}</code><br>label: {_escape(r['label'])}<br>{about}")
        others = [c for c in self.classes if c != r["label"]]
        if r["suggested"] in others:
            others.remove(r["suggested"])
            others.insert(0, r["suggested"])
        options = ["(undecided)", "Keep", "Delete", *(f"Relabel: {c}" for c in others)]
        choice = w.Dropdown(options=options, value="(undecided)", layout=w.Layout(width="200px"))
        self.choices[r["item"]] = choice
        return w.HBox([view, info, choice])

    def _render(self) -> None:
        fi, fc = self.issue_filter.value, self.class_filter.value
        keep = [
            r["item"]
            for r in self.records
            if (fi == "all" or any(i["issue"] == fi for i in r["issues"]))
            and (fc == "all" or r["label"] == fc)
        ]
        self.items_box.children = tuple(self._rows[k] for k in keep)

    def decisions(self) -> pd.DataFrame:
        """The decisions made so far, with the columns of the review page's CSV."""
        import pandas as pd

        by_item = {r["item"]: r for r in self.records}
        rows = []
        for item, dd in self.choices.items():
            v = str(dd.value)
            if v == "(undecided)":
                continue
            action, new = ("relabel", v.split(": ", 1)[1]) if v.startswith("Relabel: ") else (v.lower(), "")
            rows.append({"item": item, "action": action, "new_label": new,
                         "given_label": by_item[item]["label"], **self._meta})  # fmt: skip
        return pd.DataFrame(rows, columns=DECISION_COLUMNS)

    def save(self, path: str | os.PathLike[str] = "decisions.csv") -> Path:
        """Write the decisions CSV (what `lamina clean apply` reads)."""
        p = Path(path)
        self.decisions().to_csv(p, index=False, quoting=csv.QUOTE_ALL)
        return p

    def _save_clicked(self) -> None:
        p = self.save(self.path.value)
        self.status.value = f"saved {len(self.decisions())} decisions to {p}"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def _escape(s: str) -> str:
    import html

    return html.escape(str(s))
