"""The training checkpoint format: what ``last.pt`` holds, written and read in one place.

A checkpoint is a dict of tensors and plain data only, so it loads with
``torch.load(..., weights_only=True)`` (a file that would need arbitrary unpickling, e.g.
one crafted to run code, is refused)::

    format            "varcon"
    format_version    FORMAT_VERSION (2: per-rank random states)
    model             the network's state dict (encoder + head)
    optimizer         the optimiser's state dict
    scaler            the GradScaler's state dict (fp16 autocast), else None
    epoch             epochs completed
    step_in_epoch     steps done in the epoch ``epoch`` (0 at an epoch boundary)
    network           the network spec: plain data that rebuilds the architecture
                      (:func:`varcon.models.network_spec`)
    config            the run's config as plain data
    rng               rank 0's Python / NumPy / torch (CPU, CUDA) random states
    rng_per_rank      every rank's random states, rank order (version 2)
    loss              the loss module's buffers (e.g. loss.prototypes=ema), when it has any

Writes are atomic: a temporary file in the same directory, flushed to disk, then renamed
over the target (``os.replace``), so a crash or ``kill -9`` at any moment leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from varcon._atomic import atomic_path

from .errors import CheckpointError
from .layout import find_checkpoint

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_save",
    "capture_rng_state",
    "load_checkpoint",
    "restore_loss_state",
    "restore_rng_state",
    "restore_training_state",
    "save_checkpoint",
]

# 1: the first format. 2: ``rng_per_rank`` (each rank's own random state; version 1 held
# rank 0's only, which every rank restored).
FORMAT_VERSION = 2


# ------------------------------------------------------------------------------ writing


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (tmp file + fsync + rename)."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as weights_only-safe data."""
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the Python, NumPy and torch random states :func:`capture_rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
         npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _every_rank_rng_state() -> list[dict[str, Any]]:
    """Each rank's :func:`capture_rng_state`, in rank order, on every rank (a collective:
    every rank must call it). One process: a list of one."""
    own = capture_rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [own]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, own)
    return states


def save_checkpoint(
    path: str | Path,
    *,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: nn.Module,
    epoch: int,
    step_in_epoch: int,
    spec: dict[str, Any],
    config: dict[str, Any],
    is_main: bool,
    resume_hint: str,
) -> Path:
    """Write the checkpoint of a training run to ``path`` (rank 0 writes; every rank must
    call it, as each contributes its random state).

    ``network`` is the bare network (not the DDP or compiled wrapper). A failed write (disk
    full, quota, read-only) raises :class:`CheckpointError` and leaves the previous file
    intact; ``resume_hint`` is the command that continues the run, for that message.
    """
    path = Path(path)
    rng = _every_rank_rng_state()
    if not is_main:
        return path
    state: dict[str, Any] = {
        "format": "varcon",
        "format_version": FORMAT_VERSION,
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "network": spec,
        "config": config,
        "rng": rng[0],
        "rng_per_rank": rng,
    }
    loss_state = loss.state_dict()
    if loss_state:  # e.g. loss.prototypes=ema's class prototypes; batch mode has none
        state["loss"] = loss_state
    try:
        atomic_save(state, path)
    except OSError as exc:  # atomic_save kept the old file
        kept = " (the previous one is intact)" if path.exists() else ""
        raise CheckpointError(
            f"could not save checkpoint {path}{kept}: {exc.strerror or exc}. Free disk "
            f"space, then continue with `{resume_hint}`"
        ) from exc
    return path


# ------------------------------------------------------------------------------ reading


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a varcon checkpoint (file or run directory) with ``weights_only=True``."""
    path = find_checkpoint(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data, "
            "which could run code when unpickled (only weights_only=True loading is allowed). "
            f"Details: {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            # a non-zip file goes to the legacy unpickler, which fails on arbitrary bytes
            # with these (e.g. a text file starting with "h": BINGET of a missing memo key)
            KeyError, IndexError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Use an earlier checkpoint (checkpoints/epoch_<k>.pt) if there is one."
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != "varcon" or "model" not in obj:
        raise CheckpointError(f"{path} is not a varcon checkpoint (no 'format: varcon' entry)")
    version = obj.get("format_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer varcon (checkpoint format version {version}; this "
            f"varcon reads up to {FORMAT_VERSION}): upgrade varcon (pip install -U varcon)"
        )
    if not isinstance(obj.get("network"), dict):
        raise CheckpointError(f"{path} has no 'network' entry: it cannot be rebuilt")
    return obj


def restore_loss_state(loss: nn.Module, state: dict[str, Any], verbose: bool) -> None:
    """Load the loss module's buffers from a checkpoint's "loss" entry. Checkpoints
    written before the entry existed, or by a loss without state, have none: the loss
    then starts from its initial state (for loss.prototypes=ema: no class seen yet)."""
    has_state = bool(loss.state_dict())
    saved = state.get("loss")
    if has_state and saved:
        loss.load_state_dict(saved)
    elif verbose and has_state:
        print("note: the checkpoint holds no loss state (class prototypes): they start "
              "empty and fill up again from the next batches", flush=True)
    elif verbose and saved:
        print("note: the checkpoint's loss state (class prototypes) is not used by this "
              "config's loss (loss.prototypes=batch): ignored", flush=True)


def _own_rng_state(state: dict[str, Any], rank: int, world_size: int,
                   verbose: bool) -> dict[str, Any]:
    """This rank's saved random state. A checkpoint of version 1, or one written with
    another number of processes, holds no state for this rank: rank 0's is used (as
    version 1 did on every rank), with a note."""
    per_rank = state.get("rng_per_rank")
    if isinstance(per_rank, list) and len(per_rank) == world_size:
        return per_rank[rank]
    if verbose and world_size > 1:
        saved = len(per_rank) if isinstance(per_rank, list) else "an unknown number of"
        print(f"note: the checkpoint holds the random state of {saved} process(es), not "
              f"{world_size}: every process continues from rank 0's, so random draws "
              "(augmentations, dropout) are not those of an uninterrupted run", flush=True)
    return state["rng"]


def restore_training_state(
    state: dict[str, Any],
    *,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: nn.Module,
    rank: int,
    world_size: int,
) -> tuple[int, int]:
    """Put a checkpoint's weights, optimiser, scaler, loss buffers and this rank's random
    state back; returns ``(epoch, step_in_epoch)`` to continue from."""
    network.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(_own_rng_state(state, rank, world_size, verbose=rank == 0))
    restore_loss_state(loss, state, verbose=rank == 0)
    return int(state["epoch"]), int(state["step_in_epoch"])
