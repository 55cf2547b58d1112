"""Fixtures for the reporting tests; the run-directory builder is in fake_runs.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_runs import write_run


@pytest.fixture(scope="session")
def full_run_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A complete varcon run and the result of make_figures on it (drawn once per session)."""
    from varcon.reporting import make_figures

    run = write_run(tmp_path_factory.mktemp("figs") / "full", method="varcon", seed=0)
    return run, make_figures(run)
