"""`lamina train ratings.csv --user ...` and `lamina recommend`, and the collab example, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lamina.cli import main
from lamina.collab import CollabEnsemble, EmbeddingDotBias, load_collab_learner


def _csv(path: Path) -> Path:
    rows = [(u, i, 1 + (u * 7 + i * 3) % 5) for u in range(1, 41) for i in range(1, 31) if (u + i) % 3]
    pd.DataFrame(rows, columns=["uid", "film", "stars"]).to_csv(path, index=False)
    return path


def test_train_then_recommend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _csv(tmp_path / "ratings.csv")
    out = tmp_path / "run"
    argv = ["train", str(csv), "--user", "uid", "--item", "film", "--rating", "stars", "--epochs", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"rmse", "recall@10", "ndcg@10"} <= set(summary)
    assert (out / "model.lamina").is_file() and (out / "item_factors.png").is_file()
    capsys.readouterr()
    assert main(["recommend", str(out / "model.lamina"), "3", "nobody", "-k", "4", "--json"]) == 0
    captured = capsys.readouterr()
    recs = json.loads(captured.out)
    assert "not in the training data: nobody" in captured.err
    assert [r["rank"] for r in recs] == [1, 2, 3, 4] * 2
    meta = load_collab_learner(out / "model.lamina").meta
    seen = {meta.items[i] for i in meta.seen[meta.user_index(3)]}  # type: ignore[index]
    assert len(seen) > 10
    assert not {r["film"] for r in recs if r["uid"] == "3"} & seen  # films rated in training are left out


def test_autorec_0_trains_the_dot_product_alone(tmp_path: Path) -> None:
    csv = _csv(tmp_path / "ratings.csv")
    argv = ["train", str(csv), "--user", "uid", "--item", "film", "--rating", "stars", "--epochs", "1"]
    for flag, want in ((["--autorec", "0"], EmbeddingDotBias), ([], CollabEnsemble)):
        out = tmp_path / f"run{len(flag)}"
        assert main([*argv, *flag, "--out", str(out)]) == 0
        assert type(load_collab_learner(out / "model.lamina").model) is want


def test_train_refuses_a_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _csv(tmp_path / "ratings.csv")
    assert main(["train", str(csv), "--user", "user", "--item", "film", "--rating", "stars"]) == 2
    err = capsys.readouterr().err
    assert "no column ['user']" in err and "help:" in err


def test_example_runs(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "collab_movielens.py"
    r = subprocess.run(
        [
            sys.executable,
            str(example),
            "--epochs",
            "1",
            "--limit",
            "5000",
            "--out",
            str(tmp_path / "m.lamina"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert r.returncode == 0, r.stderr
    assert "reloaded export recommends" in r.stdout and (tmp_path / "item_factors.png").is_file()
