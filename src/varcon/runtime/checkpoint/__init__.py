"""The one owner of a run's directory and checkpoint format.

* :mod:`.layout`: what a run writes where; a run directory or checkpoint file -> its
  checkpoint (``find_checkpoint``), run directory (``run_dir_of``), evaluation folder
  (``eval_dir_of``); creating the directory (``prepare_run_dir``).
* :mod:`.format`: the checkpoint's contents, its version, writing it atomically
  (``save_checkpoint``), reading it safely (``load_checkpoint``, ``weights_only=True``) and
  resuming from it (``restore_training_state``).
* :mod:`.trained`: a trained network or encoder, with its preprocessing, from a run, a
  checkpoint or an exported folder (``load_trained``, ``load_encoder``, ``load_network``).
"""

from .format import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_loss_state,
    restore_rng_state,
    restore_training_state,
    save_checkpoint,
)
from .layout import (
    checkpoint_path,
    eval_dir_of,
    find_checkpoint,
    has_checkpoint,
    prepare_run_dir,
    run_dir_of,
)
from .trained import (
    TrainedModel,
    find_export,
    load_encoder,
    load_network,
    load_trained,
    preprocessing,
    read_export_meta,
)

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "TrainedModel",
    "atomic_save",
    "capture_rng_state",
    "checkpoint_path",
    "eval_dir_of",
    "find_checkpoint",
    "find_export",
    "has_checkpoint",
    "load_checkpoint",
    "load_encoder",
    "load_network",
    "load_trained",
    "prepare_run_dir",
    "preprocessing",
    "read_export_meta",
    "restore_loss_state",
    "restore_rng_state",
    "restore_training_state",
    "run_dir_of",
    "save_checkpoint",
]
