"""One small module per family of callbacks."""

from lamina.train.callbacks.gather import GatherPreds
from lamina.train.callbacks.progress import ProgressCallback
from lamina.train.callbacks.recorder import Recorder
from lamina.train.callbacks.schedule import ParamScheduler, flat_cos_scheduler, one_cycle_scheduler

__all__ = ["GatherPreds", "ParamScheduler", "ProgressCallback", "Recorder", "flat_cos_scheduler", "one_cycle_scheduler"]
