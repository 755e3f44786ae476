"""`lamina train table.csv --target ...` and `lamina predict model.lamina rows.csv`, run as a user would."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _cli import run_lamina
from lamina.data import samples

pytestmark = pytest.mark.slow


def test_train_on_a_csv_then_predict_its_rows(tmp_path: Path) -> None:
    df = pd.read_parquet(samples.adult_sample()).sample(3000, random_state=1)
    df.to_csv(tmp_path / "adult.csv", index=False)
    run = tmp_path / "run"
    r = run_lamina(
        "train", "adult.csv", "--target", "income", "--epochs", "3", "--out", str(run), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "categorical (9)" in r.stdout and "continuous (5)" in r.stdout  # the inferred kinds are printed
    for name in ("model.lamina", "metrics.csv", "results.csv", "feature_importance.csv", "summary.json"):
        assert (run / name).exists(), name
    last = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))[-1]
    assert float(last["accuracy"]) > 0.8
    rows = df.drop(columns="income").iloc[:20]
    rows.to_parquet(tmp_path / "rows.parquet")
    p = run_lamina("predict", str(run / "model.lamina"), "rows.parquet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(out) == 20 and {o["prediction"] for o in out} <= {"<=50K", ">50K"}
    agree = sum(o["prediction"] == y for o, y in zip(out, df["income"].iloc[:20], strict=True))
    assert agree >= 14


def test_a_missing_target_column_is_one_clear_line(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]}).to_csv(tmp_path / "t.csv", index=False)
    r = run_lamina("train", "t.csv", "--target", "income", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 2 and "'income'" in r.stderr and "Traceback" not in r.stderr


def test_the_example_runs(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "tabular_adult.py"
    r = subprocess.run(
        [sys.executable, str(example), "--epochs", "1", "--limit", "2000", "--out", "a.lamina"],
        cwd=tmp_path,
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.lamina").exists() and (tmp_path / "feature_importance.png").exists()
