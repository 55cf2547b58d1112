"""Experiment trackers (``train.loggers``, docs/training.md "Experiment trackers").

W&B runs offline and MLflow writes a file store, both inside ``tmp_path``; what they logged is
read back from their own files: MLflow's through ``MlflowClient``, W&B's from the offline run's
``.wandb`` transaction log (parsed below with W&B's protobuf records). A short digits run is
followed through ``varcon pretrain``, an evaluation command, ``varcon figures`` and
``--resume``: each tracker keeps one run, whose id is in ``RUN_DIR/trackers.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from varcon.cli.main import main
from varcon.runtime.config import ConfigError, apply_overrides, config_from_dict, read_yaml
from varcon.runtime.config import resolve_config_path as _resolve
from varcon.runtime.distributed import DistContext
from varcon.runtime.logger import RunLogger
from varcon.runtime.trackers import (
    TRACKERS_FILE,
    Tracker,
    evaluation_metrics,
    flatten_config,
    tracker_names,
)

TINY = ["optim.epochs=2", "optim.warmup_epochs=0", "optim.batch_size=64",
        "train.max_steps_per_epoch=3", "train.log_every=1", "train.progress=off",
        "train.tau2_every=0", "train.save_every=1", "linear.epochs=2", "linear.augment=eval",
        "knn.k=5", "cluster.enabled=false", "data.per_class=20"]
BOTH = "train.loggers=[tensorboard,wandb,mlflow]"


def _offline(mp: pytest.MonkeyPatch, home: Path) -> None:
    """W&B offline, MLflow's store in the run directory, no telemetry, W&B's files in
    ``home``."""
    for name, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"),
                      ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        mp.setenv(name, str(home / sub))
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_CONSOLE", "off")  # pytest captures the output itself
    mp.setenv("WANDB_ERROR_REPORTING", "false")
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mp.setenv("DO_NOT_TRACK", "true")
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "MLFLOW_TRACKING_URI",
                 "MLFLOW_EXPERIMENT_NAME"):
        mp.delenv(name, raising=False)
    # varcon sets MLFLOW_ALLOW_FILE_STORE itself (setdefault): absent here, restored after
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "-")
    mp.delenv("MLFLOW_ALLOW_FILE_STORE")


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One short run followed by both trackers through four commands, run once for the
    module: ``varcon pretrain`` (2 epochs, then kNN and the probe), ``varcon knn``, ``varcon
    figures``, and ``--resume`` after a simulated crash that lost epoch 2's checkpoint.

    Yields a namespace: ``run``, ``home`` (W&B's files), ``ids`` (trackers.json after each
    command), ``records`` (metrics.jsonl after pretraining, and after resuming), ``linear``,
    ``knn5`` (pretraining's kNN), ``knn3`` (the command's) and ``figures`` (PNG names).
    """
    base = tmp_path_factory.mktemp("trackers")
    out = SimpleNamespace(run=base / "run", home=base / "wandb_home", ids=[])
    with pytest.MonkeyPatch.context() as mp:
        _offline(mp, out.home)
        _pretrain(out.run, BOTH, "tracking.run_name=tiny")
        out.ids.append(_ids(out.run))
        out.records = [_records(out.run)]
        out.linear, out.knn5 = _results(out.run, "linear"), _results(out.run, "knn")
        assert main(["knn", "--checkpoint", str(out.run / "checkpoints" / "last.pt"),
                     "knn.k=[3]"]) == 0
        out.ids.append(_ids(out.run))
        out.knn3 = _results(out.run, "knn")
        assert main(["figures", str(out.run)]) == 0
        out.ids.append(_ids(out.run))
        out.figures = sorted(p.name for p in (out.run / "figures").glob("*.png"))
        # a crash after epoch 1's checkpoint: the resumed run trains epoch 2 again
        ckpts = out.run / "checkpoints"
        shutil.copy(ckpts / "epoch_1.pt", ckpts / "last.pt")
        assert main(["pretrain", "--resume", str(out.run), "linear.run_after_pretrain=false"]) == 0
        out.ids.append(_ids(out.run))
        out.records.append(_records(out.run))
        yield out


def _pretrain(run: Path, *overrides: str) -> None:
    assert main(["pretrain", "--output-dir", str(run), *TINY, *overrides]) == 0


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _results(run: Path, name: str) -> dict[str, Any]:
    return json.loads((run / "eval" / f"{name}.json").read_text())["results"]


def _ids(run: Path) -> dict[str, Any]:
    return json.loads((run / TRACKERS_FILE).read_text())


# ---------------------------------------------------------------------------- MLflow


def _mlflow(run: Path) -> tuple[Any, str]:
    from mlflow.tracking import MlflowClient

    ids = _ids(run)["mlflow"]
    assert ids["tracking_uri"] is None  # the run directory's own store
    return MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri()), ids["run_id"]


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


# ------------------------------------------------------------------------------- W&B


def _wandb_log(path: Path) -> list[Any]:
    """The records of an offline run's ``run-<id>.wandb`` file: W&B's header, then LevelDB
    log blocks of 32 KiB (a record may span blocks: FULL = 1, FIRST = 2, MIDDLE = 3, LAST =
    4), each record a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, pos, pending, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def _wandb_sessions(wandb_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """Each offline session of W&B run ``run_id``, oldest first: its ``config`` and
    ``summary`` (values set in that session), ``history`` rows and whether it ``resumed``."""
    # offline-run-<YYYYmmdd_HHMMSS>-<id>, and -1, -2, ... for sessions started in one second
    name = re.compile(rf"offline-run-(\d{{8}}_\d{{6}})-{run_id}(?:-(\d+))?")
    found = [(m.group(1), int(m.group(2) or 0), folder)
             for folder in (wandb_dir / "wandb").iterdir() if (m := name.fullmatch(folder.name))]
    sessions = []
    for _, _, folder in sorted(found):
        session: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "resumed": False}
        for record in _wandb_log(folder / f"run-{run_id}.wandb"):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                assert record.run.run_id == run_id
                session["resumed"] = record.run.resume  # init(resume=...) was given
                session["project"] = record.run.project
                for item in record.run.config.update:
                    session["config"][_key(item)] = json.loads(item.value_json)
            elif kind == "history":
                session["history"].append({_key(i): json.loads(i.value_json)
                                           for i in record.history.item})
            elif kind == "summary":
                for item in record.summary.update:
                    session["summary"][_key(item)] = json.loads(item.value_json)
        sessions.append(session)
    assert sessions, f"no offline W&B run {run_id} in {wandb_dir}"
    return sessions


def _rows(session: dict[str, Any], axis: str) -> list[dict[str, Any]]:
    return [row for row in session["history"] if axis in row]


# ----------------------------------------------------------------------------- tests


def test_pretrain_logs_config_metrics_and_its_evaluation(followed: Any):
    run, records = followed.run, followed.records[0]
    linear, knn = followed.linear, followed.knn5
    ids = followed.ids[0]
    assert ids["format_version"] == 1 and set(ids) == {"format_version", "wandb", "mlflow"}

    # MLflow: params flattened, epoch and step metrics against their axes, evaluation results
    client, run_id = _mlflow(run)
    mlrun = client.get_run(run_id)
    assert mlrun.info.run_name == "tiny"
    params = mlrun.data.params
    assert params["optim.lr"] == "0.1" and params["method"] == "varcon"
    assert params["train.loggers"] == '["tensorboard", "wandb", "mlflow"]'
    assert params["data.augment_params.crop_scale"] == "[0.5, 1.0]"
    assert _history(client, run_id, "epoch/loss")[:2] == [(r["epoch"], r["loss"])
                                                          for r in records]
    assert [s for s, _ in _history(client, run_id, "step/lr")][:6] == list(range(6))
    assert _history(client, run_id, "eval/linear/top1") == [(0, linear["top1"])]
    assert _history(client, run_id, "eval/knn/top1/5") == [(0, knn["top1"]["5"])]
    assert client.get_experiment(mlrun.info.experiment_id).name == "varcon"

    # W&B: run.config nested as config.yaml, epoch rows against "epoch", summary eval/...
    session = _wandb_sessions(followed.home, ids["wandb"]["id"])[0]
    assert session["project"] == "varcon" and not session["resumed"]
    assert session["config"]["optim"]["lr"] == 0.1
    assert session["config"]["train"]["loggers"] == ["tensorboard", "wandb", "mlflow"]
    assert [(r["epoch"], r["epoch/loss"]) for r in _rows(session, "epoch")] == [
        (r["epoch"], pytest.approx(r["loss"])) for r in records]
    assert [r["global_step"] for r in _rows(session, "global_step")] == list(range(6))
    assert session["summary"]["eval/linear/top1"] == pytest.approx(linear["top1"])
    assert session["summary"]["eval/knn/top1/5"] == pytest.approx(knn["top1"]["5"])
    # W&B's own files live in WANDB_DIR, none in the run directory
    assert not (run / "wandb").exists()


def test_evaluation_and_figures_continue_the_same_runs(followed: Any):
    ids = followed.ids[0]
    assert followed.ids[1] == followed.ids[2] == ids  # the same tracker runs, continued
    top1, figures = followed.knn3["top1"]["3"], followed.figures
    assert figures, "varcon figures drew nothing"

    client, run_id = _mlflow(followed.run)
    assert _history(client, run_id, "eval/knn/top1/3") == [(0, top1)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(Path(a.path).name for a in client.list_artifacts(run_id, "figures")) == figures

    pre, knn, figs = _wandb_sessions(followed.home, ids["wandb"]["id"])[:3]
    assert "eval/knn/top1/3" not in pre["summary"] and knn["resumed"] and figs["resumed"]
    assert knn["summary"]["eval/knn/top1/3"] == pytest.approx(top1)
    logged = {k.removesuffix("._type") for row in figs["history"] for k, v in row.items()
              if k.endswith("._type") and v == "image-file"}  # wandb.Image, one per figure
    assert logged == {f"figures/{Path(f).stem}" for f in figures}


def test_resume_continues_the_same_runs(followed: Any):
    ids = followed.ids[0]
    assert followed.ids[3] == ids
    losses = [(r["epoch"], r["loss"]) for r in followed.records[1]]
    assert [e for e, _ in losses] == [1, 2]

    client, run_id = _mlflow(followed.run)
    history = _history(client, run_id, "epoch/loss")
    assert [s for s, _ in history] == [1, 2, 2]  # epoch 2 before the crash, and again
    assert history[-1] == losses[-1]
    mlrun = client.get_run(run_id)
    assert mlrun.info.status == "FINISHED"
    assert len(client.search_runs([mlrun.info.experiment_id])) == 1

    sessions = _wandb_sessions(followed.home, ids["wandb"]["id"])
    assert len(sessions) == 4
    first, resumed = sessions[0], sessions[-1]
    assert [r["epoch"] for r in _rows(first, "epoch")] == [1, 2] and resumed["resumed"]
    assert [(r["epoch"], r["epoch/loss"]) for r in _rows(resumed, "epoch")] == [
        (2, pytest.approx(losses[-1][1]))]
    assert resumed["config"] == {"_wandb": {}}  # the config is logged when the run starts


def _block(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``packages`` look uninstalled: ``import`` fails, ``find_spec`` finds nothing."""
    for name in packages:
        monkeypatch.setitem(sys.modules, name, None)


def test_default_is_tensorboard_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys):
    _block(monkeypatch, "wandb", "mlflow")  # importing either would fail the run
    run = tmp_path / "run"
    _pretrain(run, "linear.run_after_pretrain=false", "optim.epochs=1")
    assert read_yaml(run / "config.yaml")["train"]["loggers"] == ["tensorboard"]
    events = sorted(p.name for p in (run / "tensorboard").iterdir())
    assert events and not (run / TRACKERS_FILE).exists()
    assert main(["knn", "--checkpoint", str(run)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == events
    assert not (run / TRACKERS_FILE).exists() and not (run / "mlruns").exists()


def _config(*overrides: str) -> Any:
    return config_from_dict(apply_overrides(read_yaml(_resolve("digits")), list(overrides)))


def test_unknown_logger_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        _config("train.loggers=[tensorboard,wandbb]")
    (problem,) = [p for p in info.value.problems if "loggers" in p]
    assert "unknown logger 'wandbb' (did you mean wandb?)" in problem
    assert all(name in problem for name in ("tensorboard", "wandb", "mlflow"))
    assert set(tracker_names()) == {"tensorboard", "wandb", "mlflow"}
    with pytest.raises(ConfigError, match=r"train\.loggers: mlflow is listed twice"):
        _config("train.loggers=[mlflow,mlflow]")
    with pytest.raises(ConfigError, match=r"tracking\.wandb_project: give a name"):
        _config("tracking.wandb_project=' '")
    assert _config("train.loggers=wandb").train.loggers == ["wandb"]  # one name is a list
    assert _config("train.loggers=[]").train.loggers == []


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, capsys):
    _block(monkeypatch, "wandb", "mlflow")
    with pytest.raises(ConfigError) as info:
        _config("train.loggers=[wandb,mlflow]")
    text = str(info.value)
    assert 'train.loggers: wandb needs the wandb package, which is not installed: pip install ' \
           '"varcon[wandb]" (or remove wandb from train.loggers)' in text
    assert 'pip install "varcon[mlflow]"' in text
    # on the command line: one error line, before any work
    assert main(["pretrain", "--output-dir", str(tmp_path / "run"), "train.loggers=[wandb]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and 'pip install "varcon[wandb]"' in err
    assert not (tmp_path / "run").exists()


def test_only_rank_0_opens_trackers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    _block(monkeypatch, "wandb", "mlflow")  # opening either would raise ImportError
    cfg = config_from_dict(apply_overrides(read_yaml(_resolve("digits")), [BOTH]),
                           validate=False)
    rank1 = DistContext(rank=1, world_size=1, local_rank=0, device=torch.device("cpu"))
    with RunLogger.for_training(cfg, tmp_path, rank1) as logger:
        logger.log_epoch({"epoch": 1, "loss": 1.0})
        logger.log_evaluation("linear", {"top1": 50.0})
    assert logger.trackers == {} and list(tmp_path.iterdir()) == []


class _Broken(Tracker):
    def log_epoch(self, epoch: int, scalars: Any) -> None:
        raise ConnectionError("server gone")


def test_a_tracker_failing_mid_run_is_dropped_with_a_warning(tmp_path: Path):
    logger = RunLogger(tmp_path, trackers={"broken": _Broken()})
    with pytest.warns(RuntimeWarning, match="broken stopped logging .*server gone"):
        logger.log_epoch({"epoch": 1, "loss": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.log_epoch({"epoch": 2, "loss": 0.5})  # dropped: no second warning
    assert [r["epoch"] for r in _records(tmp_path)] == [1, 2]
    logger.close()


def test_names_of_logged_values():
    results = {"top1": {"20": 97.5, "200": 96.0}, "class_names": ["a"], "ok": True,
               "history": {"loss": [1.0, 0.5]}, "mce": None,
               "tasks": [{"n_way": 5, "k_shot": 1, "classifier": "ncm", "mean": 80.0,
                          "ci95": 1.5}],
               "per class@k": {"x": 1}}
    assert evaluation_metrics("knn", results) == {
        "eval/knn/top1/20": 97.5, "eval/knn/top1/200": 96.0,
        "eval/knn/tasks/5way-1shot-ncm/mean": 80.0, "eval/knn/tasks/5way-1shot-ncm/ci95": 1.5,
        "eval/knn/per class_k/x": 1.0}
    assert flatten_config({"optim": {"lr": 0.1, "nesterov": False}, "resume": None,
                           "data": {"augment_params": {}, "mean": [0.5], "dataset": "digits"}}) \
        == {"optim.lr": "0.1", "optim.nesterov": "false", "resume": "null",
            "data.augment_params": "{}", "data.mean": "[0.5]", "data.dataset": "digits"}
