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
from lamina.vision.learner import vision_learner
from lamina.vision.models import create_body, create_head, create_vision_model

__all__ = [
    "Brightness",
    "Contrast",
    "CropPad",
    "DecodeImage",
    "DecodeMask",
    "Dihedral",
    "Flip",
    "GeometricAugment",
    "ImageBlock",
    "ImageDataLoaders",
    "IntToFloatTensor",
    "LightingAugment",
    "MaskBlock",
    "Normalize",
    "PILImage",
    "PILImageBW",
    "RandomResizedCrop",
    "Resize",
    "Rotate",
    "Saturation",
    "TensorImage",
    "TensorImageBW",
    "TensorMask",
    "Warp",
    "Zoom",
    "aug_transforms",
    "create_body",
    "create_head",
    "create_vision_model",
    "imagenet_stats",
    "load_image",
    "vision_learner",
]
