"""One small module per family of callbacks."""

from lamina.train.callbacks.accumulate import GradientAccumulation, GradientClip
from lamina.train.callbacks.gather import GatherPreds
from lamina.train.callbacks.hardware import ChannelsLast, Compile
from lamina.train.callbacks.loggers import CSVLogger, TensorBoardCallback
from lamina.train.callbacks.lr_find import LRFinder, SuggestedLRs, lr_find, plot_lr_find
from lamina.train.callbacks.mixup import CutMix, MixUp
from lamina.train.callbacks.precise_bn import PreciseBN, refresh_batchnorm, with_precise_bn
from lamina.train.callbacks.precision import MixedPrecision
from lamina.train.callbacks.progress import ProgressCallback
from lamina.train.callbacks.recorder import Recorder
from lamina.train.callbacks.resume import ResumeCallback
from lamina.train.callbacks.schedule import ParamScheduler, flat_cos_scheduler, one_cycle_scheduler
from lamina.train.callbacks.tracker import (
    EarlyStoppingCallback,
    NonFiniteLossError,
    SaveModelCallback,
    TerminateOnNaN,
    TrackerCallback,
)

__all__ = [
    "CSVLogger",
    "ChannelsLast",
    "Compile",
    "CutMix",
    "EarlyStoppingCallback",
    "GatherPreds",
    "GradientAccumulation",
    "GradientClip",
    "LRFinder",
    "MixUp",
    "MixedPrecision",
    "NonFiniteLossError",
    "ParamScheduler",
    "PreciseBN",
    "ProgressCallback",
    "Recorder",
    "ResumeCallback",
    "SaveModelCallback",
    "SuggestedLRs",
    "TensorBoardCallback",
    "TerminateOnNaN",
    "TrackerCallback",
    "flat_cos_scheduler",
    "lr_find",
    "one_cycle_scheduler",
    "plot_lr_find",
    "refresh_batchnorm",
    "with_precise_bn",
]
