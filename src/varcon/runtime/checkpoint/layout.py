"""The run directory: what a run writes where, and finding a run's checkpoint.

::

    RUN_DIR/
      config.yaml              the resolved config (``varcon pretrain --resume RUN_DIR`` reads it)
      checkpoints/last.pt      the latest checkpoint (every epoch, and on SIGTERM/SIGINT)
      checkpoints/epoch_K.pt   kept every ``train.save_every`` epochs
      metrics.jsonl            one record per epoch
      tau2/epoch_K.npy         per-sample tau2 every ``train.tau2_every`` epochs (VarCon)
      tensorboard/             scalars
      trackers.json            W&B and MLflow run ids (``train.loggers``: runtime/trackers)
      eval/                    evaluation results (``varcon linear|knn|...`` default here)

Every function that maps a path a user gives (a run directory or a checkpoint file) to a
checkpoint, a run directory or an evaluation folder is here, so they agree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from varcon.runtime.distributed import DistContext, broadcast_object

from .errors import CheckpointError

if TYPE_CHECKING:
    from varcon.runtime.config import Config

__all__ = [
    "CHECKPOINT_DIR",
    "LAST",
    "checkpoint_path",
    "eval_dir_of",
    "find_checkpoint",
    "has_checkpoint",
    "prepare_run_dir",
    "run_dir_of",
]

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def checkpoint_path(run_dir: str | Path, name: str = LAST) -> Path:
    """``RUN_DIR/checkpoints/<name>`` (``last.pt``, ``epoch_K.pt``)."""
    return Path(run_dir) / CHECKPOINT_DIR / name


def _last_in(run_dir: Path) -> Path:
    """A run directory's checkpoint: ``checkpoints/last.pt``, else a bare ``last.pt``."""
    candidate = checkpoint_path(run_dir)
    return candidate if candidate.exists() else run_dir / LAST


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint file named by ``path``: a file, or a run directory (its
    ``checkpoints/last.pt``, else ``last.pt``). ``CheckpointError`` when there is none."""
    path = Path(path)
    if path.is_dir():
        path = _last_in(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}; pass a run directory or its checkpoints/last.pt"
        )
    return path


def has_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` (a checkpoint file or a run directory) names a checkpoint; a file
    that does not exist counts, so that loading it reports the problem."""
    path = Path(path)
    if not path.is_dir():
        return True
    return _last_in(path).exists()


def run_dir_of(path: str | Path) -> Path:
    """The run directory of ``path`` (a run directory, or a checkpoint file in it)."""
    path = Path(path)
    if path.is_file():
        return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
    return path


def eval_dir_of(checkpoint: str | Path) -> Path:
    """Where evaluation results go by default: ``RUN_DIR/eval`` for a run directory or
    ``RUN_DIR/checkpoints/<file>.pt``; otherwise ``<folder of the checkpoint>/eval``."""
    path = Path(checkpoint)
    if path.is_dir():
        return path / "eval"
    if path.parent.name == CHECKPOINT_DIR:
        return path.parent.parent / "eval"
    return path.parent / "eval"


# ------------------------------------------------------------------------ creating one


def _default_dir(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_writable(path: Path) -> None:
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"0" * 4096)
    except OSError as exc:
        raise ValueError(
            f"cannot write to the output directory {path} ({exc.strerror}); choose another "
            "with --output-dir, or free disk space"
        ) from exc
    finally:
        probe.unlink(missing_ok=True)


def _holds_results(path: Path) -> bool:
    """Anything in ``path`` beyond what a run writes before its first step (config.yaml,
    an empty checkpoints/): a run that failed during set-up can be retried in place."""
    if not path.is_dir():
        return path.exists()
    for entry in path.iterdir():
        if entry.name == "config.yaml" and entry.is_file():
            continue
        if entry.name == CHECKPOINT_DIR and entry.is_dir() and not any(entry.iterdir()):
            continue
        return True
    return False


def prepare_run_dir(cfg: Config, ctx: DistContext) -> Path:
    """Create the output directory and save the resolved config (rank 0), then share
    the path with every rank.

    A fresh run refuses a non-empty directory unless ``train.overwrite`` is true, so
    an earlier run's results are never overwritten by accident; ``resume`` reuses its
    own directory.
    """
    from varcon.runtime.config import save_config

    error = None
    path = None
    if ctx.is_main:
        try:
            if cfg.resume:
                path = Path(cfg.output_dir) if cfg.output_dir else run_dir_of(cfg.resume)
            else:
                path = Path(cfg.output_dir) if cfg.output_dir else _default_dir(cfg)
                if _holds_results(path) and not cfg.train.overwrite:
                    raise ValueError(
                        f"output directory {path} already holds a run; choose another "
                        "--output-dir, continue it with --resume, or pass train.overwrite=true"
                    )
            path.mkdir(parents=True, exist_ok=True)
            (path / CHECKPOINT_DIR).mkdir(exist_ok=True)
            _check_writable(path)
            save_config(cfg, path / "config.yaml")
        except ValueError as exc:
            error = str(exc)
        except OSError as exc:  # e.g. a parent is a regular file, permission denied, disk full
            error = (
                f"cannot create the output directory {path} ({exc.strerror or exc}"
                f"{': ' + str(exc.filename) if exc.filename else ''}); choose another with "
                "--output-dir, or free disk space"
            )
    shared = cast(tuple[str | None, str | None],
                  broadcast_object(ctx, (error, str(path) if path else None)))
    if shared[0]:
        raise ValueError(shared[0])
    return Path(cast(str, shared[1]))
