"""Mid level: from raw items (files, rows) to batches, with the data-block API."""

from lamina.data import samples
from lamina.data.blocks import (
    CategoryBlock,
    Categorize,
    EncodedMultiCategorize,
    MultiCategorize,
    MultiCategoryBlock,
    RegressionBlock,
    RegressionSetup,
    TransformBlock,
)
from lamina.data.datablock import DataBlock
from lamina.data.datasets import Datasets, ItemError
from lamina.data.loader import DataLoader, DataLoaders, default_device, to_device
from lamina.data.losses import BCEWithLogitsLossFlat, BaseLoss, CrossEntropyLossFlat, L1LossFlat, MSELossFlat
from lamina.data.sources import (
    ColReader,
    ColSplitter,
    EndSplitter,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    MaskSplitter,
    RandomSplitter,
    RegexLabeller,
    TrainTestSplitter,
    get_files,
    get_image_files,
    parent_label,
    using_attr,
)

__all__ = [
    "BCEWithLogitsLossFlat",
    "BaseLoss",
    "CategoryBlock",
    "Categorize",
    "ColReader",
    "ColSplitter",
    "CrossEntropyLossFlat",
    "DataBlock",
    "DataLoader",
    "DataLoaders",
    "Datasets",
    "EncodedMultiCategorize",
    "EndSplitter",
    "FuncSplitter",
    "GrandparentSplitter",
    "IndexSplitter",
    "ItemError",
    "L1LossFlat",
    "MSELossFlat",
    "MaskSplitter",
    "MultiCategorize",
    "MultiCategoryBlock",
    "RandomSplitter",
    "RegexLabeller",
    "RegressionBlock",
    "RegressionSetup",
    "TrainTestSplitter",
    "TransformBlock",
    "default_device",
    "get_files",
    "get_image_files",
    "parent_label",
    "samples",
    "to_device",
    "using_attr",
]
