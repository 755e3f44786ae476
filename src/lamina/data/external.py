"""Public datasets by name: a registry of URLs, a verified atomic download and a safe extract into a cache.

`untar_data("imagenette_160")` downloads the archive once into `cache_dir()/archives`, checks its size and
sha256, extracts it into `cache_dir()/data/imagenette_160` and returns the dataset folder; later calls
touch no network. Nothing half-written is ever left where a later call would mistake it for a good copy:
downloads land in a temporary file that is renamed into place only after the checks pass, and archives are
extracted, member by member by lamina itself, into a temporary sibling folder that is renamed into place
only when every member was extracted. The code lives in `lamina._external`, which needs no torch.
"""

from lamina._external.archive import ExtractLimits, UnsafeArchiveError, extract_archive
from lamina._external.download import ChecksumError, DownloadError, download_url
from lamina._external.registry import DATASETS, DatasetInfo, UnknownDatasetError, get_dataset, list_datasets
from lamina._external.untar import TrustOnFirstUseWarning, cache_dir, untar_data

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DatasetInfo",
    "DownloadError",
    "ExtractLimits",
    "TrustOnFirstUseWarning",
    "UnknownDatasetError",
    "UnsafeArchiveError",
    "cache_dir",
    "download_url",
    "extract_archive",
    "get_dataset",
    "list_datasets",
    "untar_data",
]
