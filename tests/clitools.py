"""Helpers for tests that drive the command line in-process (``from clitools import ...``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from varcon.cli.main import main

__all__ = ["assert_clean_error", "read_json", "run_cli"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``varcon ARGV``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(err: str, *needles: str) -> None:
    """One ``error:`` line naming every needle, no traceback."""
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
