"""Training and evaluation engine: config, pre-training loop, linear probe, checkpoints."""

from .config import Config, ConfigError, load_config
from .pretrain import TrainingDiverged, TrainingInterrupted, pretrain

__all__ = [
    "Config",
    "ConfigError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "load_config",
    "pretrain",
]
