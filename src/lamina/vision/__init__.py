"""Vision application: image DataLoaders, transforms, timm-based learners."""

from lamina.core import TensorImage, TensorImageBW, TensorMask
from lamina.vision.augment import (
    Brightness,
    Contrast,
    Dihedral,
    Flip,
    GeometricAugment,
    LightingAugment,
    Normalize,
    Rotate,
    Saturation,
    Warp,
    Zoom,
    aug_transforms,
    imagenet_stats,
)
from lamina.vision.blocks import BBoxBlock, BBoxLblBlock, BBoxPad, PointBlock, PointScaler, bb_pad
from lamina.vision.core import (
    DecodeImage,
    DecodeMask,
    ImageBlock,
    IntToFloatTensor,
    MaskBlock,
    PILImage,
    PILImageBW,
    load_image,
)
from lamina.vision.data import ImageDataLoaders
from lamina.vision.item_tfms import CropPad, RandomResizedCrop, Resize
from lamina.vision.jpeg import (
    BytesBatch,
    DecodeJpegBatch,
    JpegImageBlock,
    ReadBytes,
    TensorBytes,
    gpu_jpeg_decoder,
)
from lamina.vision.learner import vision_learner
from lamina.vision.models import create_body, create_head, create_vision_model
from lamina.vision.segmentation import SegmentationDataLoaders, show_segmentation_results
from lamina.vision.unet import create_unet_model, unet_learner

__all__ = [
    "BBoxBlock",
    "BBoxLblBlock",
    "BBoxPad",
    "Brightness",
    "BytesBatch",
    "Contrast",
    "CropPad",
    "DecodeImage",
    "DecodeJpegBatch",
    "DecodeMask",
    "Dihedral",
    "Flip",
    "GeometricAugment",
    "ImageBlock",
    "ImageDataLoaders",
    "IntToFloatTensor",
    "JpegImageBlock",
    "LightingAugment",
    "MaskBlock",
    "Normalize",
    "PILImage",
    "PILImageBW",
    "PointBlock",
    "PointScaler",
    "RandomResizedCrop",
    "ReadBytes",
    "Resize",
    "Rotate",
    "Saturation",
    "SegmentationDataLoaders",
    "TensorBytes",
    "TensorImage",
    "TensorImageBW",
    "TensorMask",
    "Warp",
    "Zoom",
    "aug_transforms",
    "bb_pad",
    "create_body",
    "create_head",
    "create_unet_model",
    "create_vision_model",
    "gpu_jpeg_decoder",
    "imagenet_stats",
    "load_image",
    "show_segmentation_results",
    "unet_learner",
    "vision_learner",
]
