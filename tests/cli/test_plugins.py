"""Plugins: methods, protocols and datasets of the user's own module in the ``varcon`` command
(``VARCON_PLUGINS``, or entry points of the group ``varcon.plugins``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from varcon.cli import plugins
from varcon.cli.main import main
from varcon.evaluation import protocol_names, unregister_protocol
from varcon.methods import METHODS

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture
def clean(monkeypatch):
    """Forget what the tests load, in the registries and in the loader's memory."""
    monkeypatch.setattr(plugins, "_loaded", set())
    yield
    METHODS.unregister("align_uniform")
    if "centroid" in protocol_names():
        unregister_protocol("centroid")


def test_a_method_from_a_plugin_file_trains_from_the_command_line(tmp_path, monkeypatch,
                                                                    capsys, clean):
    monkeypatch.setenv("VARCON_PLUGINS", str(EXAMPLES / "toy_method.py"))
    code = main(["pretrain", "--output-dir", str(tmp_path / "run"), "method=align_uniform",
                 "optim.epochs=1", "optim.warmup_epochs=0", "optim.batch_size=128",
                 "train.max_steps_per_epoch=2", "train.progress=off",
                 "linear.run_after_pretrain=false"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"align", "uniform"} <= set(record)


def test_a_protocol_from_a_plugin_is_a_command(monkeypatch, capsys, clean):
    monkeypatch.setenv("VARCON_PLUGINS", str(EXAMPLES / "toy_protocol.py"))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "centroid" in capsys.readouterr().out


def test_loading_twice_imports_once(clean):
    env = {"VARCON_PLUGINS": f" {EXAMPLES / 'toy_method.py'} ,"}
    assert plugins.load_plugins(env) == [str(EXAMPLES / "toy_method.py")]
    assert plugins.load_plugins(env) == []


@pytest.mark.parametrize("value, needle", [
    ("no_such_module_xyz", "cannot load the varcon plugin 'no_such_module_xyz'"),
    ("missing/plugin.py", "names 'missing/plugin.py', which is not a file"),
])
def test_a_bad_plugin_is_a_clear_error(monkeypatch, capsys, clean, value, needle):
    monkeypatch.setenv("VARCON_PLUGINS", value)
    assert main(["configs"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_entry_points_are_loaded(tmp_path, clean):
    """A package that declares ``[project.entry-points."varcon.plugins"]`` is loaded."""
    site = tmp_path / "site"
    (site / "my_plugin").mkdir(parents=True)
    (site / "my_plugin" / "__init__.py").write_text("LOADED = True\n")
    dist = site / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[varcon.plugins]\nmine = my_plugin\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from varcon.cli.plugins import load_plugins; print(load_plugins({}))")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "['my_plugin']" in out.stdout
