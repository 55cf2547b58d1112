"""MLflow (``train.loggers=[..., mlflow]``; ``pip install "varcon[mlflow]"``, the
``mlflow-skinny`` client).

One MLflow run per varcon run, in experiment ``tracking.mlflow_experiment``: the config as
params flattened to ``section.key`` (``optim.lr``), ``step/<key>`` and ``epoch/<key>`` metrics
with the global step or the epoch as MLflow's ``step``, evaluation results as metrics
(``eval/linear/top1``) and figures as artifacts under ``figures/``. A resumed run and later
commands continue it (by its run id, kept in ``trackers.json``, in the store it was started in).

The store: ``tracking.mlflow_tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a file store in
the run directory (``RUN_DIR/mlruns``: ``mlflow ui --backend-store-uri RUN_DIR/mlruns``). The
client is used directly (``MlflowClient``), not MLflow's global active run, so varcon's run
never mixes with one the calling code has open. ``mlflow`` is imported when this tracker opens.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .base import TrackedRun, Tracker, TrackerError, flatten_config, metric_name
from .registry import TrackerSpec, register_tracker

__all__ = ["DEFAULT_EXPERIMENT", "MlflowTracker"]

DEFAULT_EXPERIMENT = "varcon"
_BATCH = 100  # MLflow's limit of params per log_batch call
_MAX_PARAM = 6000  # MLflow's limit on a param value's length (>= 2.10)


def _is_file_store(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


class MlflowTracker(Tracker):
    """An MLflow run that varcon logs to through an ``MlflowClient``."""

    def __init__(self, client: Any, run_id: str, experiment_id: str,
                 tracking_uri: str | None) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri  # None: the run directory's own store

    @classmethod
    def open(cls, run: TrackedRun) -> MlflowTracker:
        saved = run.saved or {}
        if saved.get("run_id"):  # continue where the run was started
            chosen = saved.get("tracking_uri")
        else:
            chosen = run.options.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        # resolved afresh each time, so that a run directory that was moved keeps its store
        uri = chosen or (run.run_dir / "mlruns").resolve().as_uri()
        if _is_file_store(uri):
            # MLflow >= 3.7 refuses a file store unless told otherwise, yet it is the only
            # local store of mlflow-skinny (SQLite needs SQLAlchemy); an explicit
            # MLFLOW_ALLOW_FILE_STORE=false still wins.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        try:
            client = MlflowClient(tracking_uri=uri)
            found = cls._continue(client, saved["run_id"]) if saved.get("run_id") else None
            if found is None:
                if saved.get("run_id"):
                    print(f"note: MLflow run {saved['run_id']} not found in {uri}: starting a "
                          "new one", file=sys.stderr, flush=True)
                return cls._start(client, run, chosen)
            return cls(client, found, saved.get("experiment_id", ""), chosen)
        except TrackerError:
            raise
        except Exception as exc:  # an unreachable server, a store it cannot write
            raise TrackerError(
                f"train.loggers: MLflow could not start its run in {uri} ({type(exc).__name__}: "
                f"{exc}); set tracking.mlflow_tracking_uri (or MLFLOW_TRACKING_URI) to a store "
                "you can reach, or leave both unset for a file store in the run directory"
            ) from exc

    @staticmethod
    def _continue(client: Any, run_id: str) -> str | None:
        """``run_id`` marked running again, or ``None`` when the store does not have it."""
        from mlflow.exceptions import MlflowException

        try:
            client.get_run(run_id)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        client.update_run(run_id, status="RUNNING")
        return run_id

    @classmethod
    def _start(cls, client: Any, run: TrackedRun, chosen: str | None) -> MlflowTracker:
        from mlflow.entities import Param

        name = (run.options.mlflow_experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
                or DEFAULT_EXPERIMENT)
        experiment = client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else client.create_experiment(name))
        created = client.create_run(experiment_id, run_name=run.name,
                                    tags={"varcon.run_dir": str(run.run_dir.resolve())})
        run_id = created.info.run_id
        params = [Param(k, v[:_MAX_PARAM]) for k, v in flatten_config(run.config).items()]
        for i in range(0, len(params), _BATCH):
            client.log_batch(run_id, params=params[i:i + _BATCH])
        return cls(client, run_id, experiment_id, chosen)

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "tracking_uri": self.tracking_uri}

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_step(self, step: int, scalars: Mapping[str, float]) -> None:
        self._log({metric_name("step", k): v for k, v in scalars.items()}, step)

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        self._log({metric_name("epoch", k): v for k, v in scalars.items()}, epoch)

    def log_evaluation(self, metrics: Mapping[str, float]) -> None:
        self._log(metrics, 0)

    def log_figures(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), "figures")

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


register_tracker(TrackerSpec("mlflow", MlflowTracker, package="mlflow",
                             install='pip install "varcon[mlflow]"'))
