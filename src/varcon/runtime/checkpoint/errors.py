"""The error every checkpoint and export reader raises."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, unsafe or does not fit the model."""
