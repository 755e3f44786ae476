"""The progress bar in a real Jupyter kernel: one live display (table + bar) updated while training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

CELL = """
import torch
from torch import nn
from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import Learner, ProgressCallback

g = torch.Generator().manual_seed(0)
x = torch.randn(64, 4, generator=g)
items = [(x[i], (x[i, 0] > 0).long()) for i in range(64)]
dls = DataLoaders.from_dsets(items, items, bs=8, num_workers=0, device="cpu")
learn = Learner(dls, nn.Linear(4, 2), loss_func=CrossEntropyLossFlat())
learn.get_cb(ProgressCallback).refresh = 0.0  # redraw at every batch, to see it move
learn.fit(2, lr=0.1)
print("fit done")
"""


def test_the_bar_renders_live_in_a_notebook(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    seen: list[dict[str, Any]] = []

    class Recording(nbclient.NotebookClient):  # type: ignore[misc]
        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            seen.append(msg)
            return super().process_message(msg, cell, cell_index)

    resources = {"metadata": {"path": str(tmp_path)}}
    client = Recording(nb, timeout=120, kernel_name="python3", resources=resources)
    client.execute()

    outputs = nb.cells[0].outputs
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert len(displays) == 1, outputs  # one display, updated in place: no table printed as text
    final = displays[0].data
    assert 'class="lamina-progress"' in final["text/html"] and "<progress" not in final["text/html"]
    assert final["text/html"].count("<tr>") == 3  # the header and one row per epoch
    assert final["text/plain"].splitlines()[0].split() == ["epoch", "train_loss", "valid_loss", "time"]
    assert "fit done" in "".join(o.get("text", "") for o in outputs if o.output_type == "stream")

    updates = [m["content"]["data"]["text/html"] for m in seen if m["msg_type"] == "update_display_data"]
    bars = [u for u in updates if "<progress" in u]
    # per epoch: the start and each of 8 training batches, the start and each of 4 validation batches
    assert len(bars) == 2 * ((1 + 8) + (1 + 4))
    assert any('value="3" max="8"' in u and "epoch 1/2 train" in u for u in bars)
    assert any("epoch 2/2 valid" in u for u in bars)
