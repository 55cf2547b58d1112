"""The tutorial docs/tutorials/use_an_exported_encoder.py runs as a user would run it (a
subprocess) and its classifier on the exported encoder's embeddings is far above chance."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "use_an_exported_encoder.py"


@pytest.mark.slow
def test_tutorial_trains_exports_loads_embeds_and_classifies(tmp_path):
    proc = subprocess.run([sys.executable, str(TUTORIAL), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "exported: README.md, encoder.safetensors, varcon_encoder.json" in out
    assert "one image -> features (1, 128)" in out
    assert "embeddings: train (1347, 128), test (450, 128)" in out
    match = re.search(r"test accuracy (\d\.\d+)", out)
    assert match, out[-2000:]
    assert float(match.group(1)) > 0.6  # chance is 0.1; a few epochs give about 0.98
    assert (tmp_path / "exported" / "varcon_encoder.json").is_file()
