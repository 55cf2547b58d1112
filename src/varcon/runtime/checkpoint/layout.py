"""The run directory: created (or checked) before any work starts, on rank 0."""

from __future__ import annotations

import os
import time
from pathlib import Path

from varcon.runtime.config import Config, save_config
from varcon.runtime.distributed import DistContext, broadcast_object

__all__ = ["prepare_run_dir"]


def _default_dir(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def resume_dir(resume: str) -> Path:
    """The run directory of ``resume`` (a run directory or a checkpoint file in it)."""
    path = Path(resume)
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


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
        if entry.name == "checkpoints" and entry.is_dir() and not any(entry.iterdir()):
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
    error = None
    path = None
    if ctx.is_main:
        try:
            if cfg.resume:
                path = Path(cfg.output_dir) if cfg.output_dir else resume_dir(cfg.resume)
            else:
                path = Path(cfg.output_dir) if cfg.output_dir else _default_dir(cfg)
                if _holds_results(path) and not cfg.train.overwrite:
                    raise ValueError(
                        f"output directory {path} already holds a run; choose another "
                        "--output-dir, continue it with --resume, or pass train.overwrite=true"
                    )
            path.mkdir(parents=True, exist_ok=True)
            (path / "checkpoints").mkdir(exist_ok=True)
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
    error, path = broadcast_object(ctx, (error, str(path) if path else None))  # type: ignore[misc]
    if error:
        raise ValueError(error)
    return Path(path)
