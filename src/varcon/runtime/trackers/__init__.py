"""Experiment trackers: TensorBoard, Weights & Biases and MLflow (``train.loggers``).

:class:`~varcon.runtime.logger.RunLogger` is what the training loop and the commands talk to;
it fans each value out to the trackers opened here (:func:`open_trackers`). A tracker is one
:class:`Tracker` subclass in its own module, registered once (:func:`register_tracker`):

* :mod:`.tensorboard_tracker`: ``tensorboard`` (the default), scalars in ``RUN_DIR/tensorboard``;
* :mod:`.wandb_tracker`: ``wandb`` (``pip install "varcon[wandb]"``);
* :mod:`.mlflow_tracker`: ``mlflow`` (``pip install "varcon[mlflow]"``).

:mod:`.base` holds the tracker interface and the names values get (``epoch/loss``,
``eval/linear/top1``, ``optim.lr``); :mod:`.session` opens a config's trackers for a run
directory and keeps their run ids in ``RUN_DIR/trackers.json``. Importing this package imports
no tracking package: ``wandb`` and ``mlflow`` are imported when their tracker opens.
"""

from __future__ import annotations

# the built-in trackers register themselves (one registration each, in their modules)
from . import mlflow_tracker as _mlflow_tracker  # noqa: F401
from . import tensorboard_tracker as _tensorboard_tracker  # noqa: F401
from . import wandb_tracker as _wandb_tracker  # noqa: F401
from .base import (
    TrackedRun,
    Tracker,
    TrackerError,
    evaluation_metrics,
    flatten_config,
    metric_name,
)
from .registry import (
    TrackerSpec,
    get_tracker,
    logger_problems,
    missing_package,
    register_tracker,
    tracker_names,
    unregister_tracker,
)
from .session import TRACKERS_FILE, open_trackers, read_tracker_state

__all__ = [
    "TRACKERS_FILE",
    "TrackedRun",
    "Tracker",
    "TrackerError",
    "TrackerSpec",
    "evaluation_metrics",
    "flatten_config",
    "get_tracker",
    "logger_problems",
    "metric_name",
    "missing_package",
    "open_trackers",
    "read_tracker_state",
    "register_tracker",
    "tracker_names",
    "unregister_tracker",
]
