"""The registry of public datasets: name -> archive URL, size, sha256, description."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["DATASETS", "DatasetInfo", "UnknownDatasetError", "get_dataset", "list_datasets"]


class UnknownDatasetError(KeyError):
    """A dataset name that is not in the registry; the message lists close matches."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument, which would show the message quoted with literal \n
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DatasetInfo:
    """One public dataset: where its archive lives and what the downloaded archive must look like.

    `size_bytes` and `sha256` are checked after the download when known; `archive_root` is the folder the
    archive extracts to (the one `untar_data` returns).
    """

    name: str
    url: str
    size_bytes: int | None
    sha256: str | None
    description: str
    archive_root: str | None


_FASTAI_S3 = "https://s3.amazonaws.com/fast-ai-"

# Sizes are the ones fast.ai records for these archives (fastai/data/download_checks.py) and are enforced:
# a download of another size is refused before it is kept. No sha256 is pinned: fast.ai publishes md5
# hashes, not sha256, GroupLens publishes none we could check, and this code was written without network
# access to compute one, so none is invented. untar_data trusts the first download of each archive (with a
# TrustOnFirstUseWarning), records its sha256 beside it, and verifies the cached copy against that record.
_ENTRIES = (
    DatasetInfo(
        "imagenette",
        f"{_FASTAI_S3}imageclas/imagenette2.tgz",
        1557161267,
        None,
        "Imagenette (full size): 10 easy ImageNet classes, ~13k images, train/val folders",
        "imagenette2",
    ),
    DatasetInfo(
        "imagenette_320",
        f"{_FASTAI_S3}imageclas/imagenette2-320.tgz",
        341663724,
        None,
        "Imagenette, shortest side resized to 320 px",
        "imagenette2-320",
    ),
    DatasetInfo(
        "imagenette_160",
        f"{_FASTAI_S3}imageclas/imagenette2-160.tgz",
        99003388,
        None,
        "Imagenette, shortest side resized to 160 px: the quickest real image benchmark",
        "imagenette2-160",
    ),
    DatasetInfo(
        "imagewoof",
        f"{_FASTAI_S3}imageclas/imagewoof2.tgz",
        1343715595,
        None,
        "Imagewoof (full size): 10 hard-to-tell dog breeds from ImageNet, train/val folders",
        "imagewoof2",
    ),
    DatasetInfo(
        "imagewoof_320",
        f"{_FASTAI_S3}imageclas/imagewoof2-320.tgz",
        328387740,
        None,
        "Imagewoof, shortest side resized to 320 px",
        "imagewoof2-320",
    ),
    DatasetInfo(
        "imagewoof_160",
        f"{_FASTAI_S3}imageclas/imagewoof2-160.tgz",
        92612825,
        None,
        "Imagewoof, shortest side resized to 160 px",
        "imagewoof2-160",
    ),
    DatasetInfo(
        "pets",
        f"{_FASTAI_S3}imageclas/oxford-iiit-pet.tgz",
        811706944,
        None,
        "Oxford-IIIT Pets: 37 cat and dog breeds, ~7.4k images, breed in the file name, plus masks",
        "oxford-iiit-pet",
    ),
    DatasetInfo(
        "mnist",
        f"{_FASTAI_S3}imageclas/mnist_png.tgz",
        15683414,
        None,
        "MNIST as png files: 70k handwritten digits in training/testing/<digit> folders",
        "mnist_png",
    ),
    DatasetInfo(
        "mnist_sample",
        f"{_FASTAI_S3}sample/mnist_sample.tgz",
        3214948,
        None,
        "MNIST sample: only the digits 3 and 7, train/valid folders and a labels.csv",
        "mnist_sample",
    ),
    DatasetInfo(
        "cifar10",
        f"{_FASTAI_S3}sample/cifar10.tgz",
        168168549,
        None,
        "CIFAR-10 as png files: 60k 32x32 images in 10 classes, train/test folders",
        "cifar10",
    ),
    DatasetInfo(
        "cifar100",
        f"{_FASTAI_S3}imageclas/cifar100.tgz",
        169168619,
        None,
        "CIFAR-100 as png files: 60k 32x32 images in 100 classes",
        "cifar100",
    ),
    DatasetInfo(
        "camvid_tiny",
        f"{_FASTAI_S3}sample/camvid_tiny.tgz",
        2314212,
        None,
        "CamVid tiny: 100 street scenes with segmentation masks, for quick segmentation tests",
        "camvid_tiny",
    ),
    DatasetInfo(
        "camvid",
        f"{_FASTAI_S3}imagelocal/camvid.tgz",
        598913237,
        None,
        "CamVid: 701 street scenes with per-pixel labels in 32 classes",
        "camvid",
    ),
    DatasetInfo(
        "adult",
        f"{_FASTAI_S3}sample/adult_sample.tgz",
        968212,
        None,
        "Adult census income (UCI): 32,561 rows in one adult.csv, predict salary >= 50k",
        "adult_sample",
    ),
    DatasetInfo(
        "movielens_100k",
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        None,
        None,
        "MovieLens 100k: 100,000 ratings from 943 users on 1,682 movies (u.data, u.item, ...)",
        "ml-100k",
    ),
    DatasetInfo(
        "imdb",
        f"{_FASTAI_S3}nlp/imdb.tgz",
        144440600,
        None,
        "IMDb movie reviews: 50k labelled (pos/neg) in train/test plus 50k unlabelled",
        "imdb",
    ),
)

DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({d.name: d for d in _ENTRIES})


def list_datasets() -> list[str]:
    """Names of the datasets `untar_data` knows, sorted, so a user can pick one without reading the source."""
    return sorted(DATASETS)


def get_dataset(name: str) -> DatasetInfo:
    """Registry entry for `name`; an unknown name raises an error that suggests the closest known names."""
    try:
        return DATASETS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name.lower(), list(DATASETS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownDatasetError(
        f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(list_datasets())}.\n"
        "help: pick a name from lamina.data.external.list_datasets(), or pass the archive's full URL "
        "(https://...) to untar_data"
    )
