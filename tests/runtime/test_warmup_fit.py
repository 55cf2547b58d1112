"""A run shortened on the command line (or in a YAML file) without choosing its warm-up gets
one that fits (``epochs // 10``) and a note; a warm-up chosen with the epochs is still
validated; a checkpoint's config (``config_from_dict``) is never changed."""

from __future__ import annotations

import pytest

from varcon.cli.main import main
from varcon.runtime.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    fit_warmups,
    load_config,
)

NOTE = ("note: optim.warmup_epochs 5 -> 0 to fit optim.epochs=3; set optim.warmup_epochs to "
        "choose")


def test_epochs_alone_fits_the_warmup_with_a_note(capsys):
    cfg = load_config(None, ["optim.epochs=3"])  # digits warms up for 5 epochs
    assert (cfg.optim.epochs, cfg.optim.warmup_epochs) == (3, 0)
    cfg.validate()
    assert capsys.readouterr().out.strip() == NOTE  # one note, nothing else

    cfg = load_config("cifar10", ["optim.epochs=25"])  # a warm-up that fits is kept
    assert cfg.optim.warmup_epochs == 10
    cfg = load_config("cifar10", ["optim.epochs=10"])
    assert cfg.optim.warmup_epochs == 1  # 10 // 10
    assert "optim.warmup_epochs 10 -> 1 to fit optim.epochs=10" in capsys.readouterr().out


def test_warmup_set_with_the_epochs_is_still_an_error(capsys):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["optim.epochs=3", "optim.warmup_epochs=5"])
    (problem,) = info.value.problems
    assert problem == ("optim.warmup_epochs: must be >= 0 and shorter than training "
                       "(optim.epochs = 3), got 5; set optim.warmup_epochs=2 (or fewer) with "
                       "optim.epochs=3")
    assert "note:" not in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"linear\.warmup_epochs=1"):
        load_config(None, ["linear.epochs=2", "linear.warmup_epochs=5"])


def test_probe_and_finetune_follow_the_same_rule(tmp_path, capsys):
    config = tmp_path / "c.yaml"  # a file that chose long warm-ups for its probe runs
    config.write_text("linear:\n  epochs: 40\n  warmup_epochs: 8\n"
                      "finetune:\n  epochs: 30\n  warmup_epochs: 6\n")
    cfg = load_config(config, ["linear.epochs=4", "finetune.epochs=20"])
    assert (cfg.linear.warmup_epochs, cfg.finetune.warmup_epochs) == (0, 6)  # 6 < 20 fits
    out = capsys.readouterr().out
    assert out.count("note:") == 1 and "linear.warmup_epochs 8 -> 0 to fit linear.epochs=4" in out


def test_a_yaml_file_that_sets_only_the_epochs(tmp_path, capsys):
    config = tmp_path / "short.yaml"
    config.write_text("optim:\n  epochs: 4\n")  # the default warm-up is 10 epochs
    cfg = load_config(config)
    assert (cfg.optim.epochs, cfg.optim.warmup_epochs) == (4, 0)
    assert "optim.warmup_epochs 10 -> 0 to fit optim.epochs=4" in capsys.readouterr().out
    config.write_text("optim:\n  epochs: 4\n  warmup_epochs: 6\n")  # both chosen in the file
    with pytest.raises(ConfigError, match=r"optim\.warmup_epochs=3"):
        load_config(config)


def test_saved_configs_and_plain_data_are_not_fitted():
    data = {"optim": {"epochs": 3, "warmup_epochs": 5}}
    with pytest.raises(ConfigError, match=r"optim\.warmup_epochs=2"):
        config_from_dict(data)  # e.g. a checkpoint's config: never changed silently
    assert fit_warmups(data, []) == (data, [])  # nothing overridden: nothing to fit
    fitted, notes = fit_warmups(apply_overrides(data, ["optim.epochs=4"]), ["optim.epochs=4"])
    assert fitted["optim"] == {"epochs": 4, "warmup_epochs": 0} and len(notes) == 1
    assert data == {"optim": {"epochs": 3, "warmup_epochs": 5}}  # the input is left alone
    # a whole section given on the command line chose its warm-up too
    assert fit_warmups(data, ["optim={epochs: 3}"])[1] == []


def test_pretrain_command_fits_the_warmup(tmp_path, capsys, monkeypatch):
    import varcon.engine.pretrain as engine

    seen = []
    monkeypatch.setattr(engine, "pretrain", lambda cfg: seen.append(cfg) or {"epochs": 3})
    assert main(["pretrain", "--output-dir", str(tmp_path / "r"), "optim.epochs=3"]) == 0
    (cfg,) = seen
    assert (cfg.optim.epochs, cfg.optim.warmup_epochs) == (3, 0)
    assert capsys.readouterr().out.splitlines()[0] == NOTE

    code = main(["pretrain", "--output-dir", str(tmp_path / "r"), "optim.epochs=3",
                 "optim.warmup_epochs=5"])
    captured = capsys.readouterr()
    assert code == 2 and len(seen) == 1
    assert "optim.warmup_epochs: must be >= 0 and shorter than training" in captured.err
    assert "note:" not in captured.out


def test_evaluation_overrides_fit_a_trained_probe_warmup(tmp_path, capsys):
    """``varcon linear --checkpoint RUN linear.epochs=2`` on a run trained with a 4-epoch
    probe warm-up: the checkpoint's config is the file, the override shortens the probe."""
    from ckpttools import write_checkpoint
    from varcon.evaluation.session import eval_session

    ckpt = write_checkpoint(tmp_path / "run",
                            config={"linear": {"epochs": 10, "warmup_epochs": 4}})
    with eval_session(ckpt, ["linear.epochs=2"], tmp_path / "out") as session:
        assert (session.cfg.linear.epochs, session.cfg.linear.warmup_epochs) == (2, 0)
    assert ("note: linear.warmup_epochs 4 -> 0 to fit linear.epochs=2"
            in capsys.readouterr().out)
    with pytest.raises(ConfigError, match=r"linear\.warmup_epochs=1"):
        with eval_session(ckpt, ["linear.epochs=2", "linear.warmup_epochs=4"], tmp_path / "o"):
            pass
