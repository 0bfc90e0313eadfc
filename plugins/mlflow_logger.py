"""``MLFlowLogger``: metrics, hyperparameters and checkpoints to an MLflow run.

Lightning 2.x's arguments and behaviour (``from lightning.pytorch.loggers import MLFlowLogger``).
hookloop does not depend on MLflow: ``pip install mlflow`` (or the lighter ``mlflow-skinny``,
enough for a local file store or a tracking server). It is looked up when the logger is
created and imported when the run is first needed, so ``import plugins`` never imports it.

Without ``tracking_uri`` (nor ``MLFLOW_TRACKING_URI``), runs go to the local file store
``save_dir`` (``./mlruns``) — offline, readable with ``mlflow ui`` or ``MlflowClient``. MLflow 3.13+
accepts a file store only with ``MLFLOW_ALLOW_FILE_STORE=true``; the logger says so if asked
for one without it. The experiment and run are created on first use, on global rank zero only.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from typing import Any, Dict, List, Optional, Union

from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.checkpoint_artifacts import CheckpointFile, LogsCheckpoints, check_log_model
from hookloop.plugins.logger_base import DummyExperiment, Logger, add_prefix, flatten, hparams_dict, save_hparams_yaml
from hookloop.plugins.optional_import import load, require

FILE_URI_PREFIX = "file:"
# Characters MLflow allows in a metric name; others are removed (with a warning), as in Lightning.
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_/. -]+")
# MLflow's limits, in case its own constants move.
_PARAMS_PER_BATCH = 100
_PARAM_LENGTH = 6000
# Run statuses for finalize()'s.
_STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class MLFlowLogger(LogsCheckpoints, Logger):
    """Log to an MLflow run.

    Args:
        experiment_name: The MLflow experiment (created if it does not exist).
        run_name: The run's name (the ``mlflow.runName`` tag).
        tracking_uri: Where runs are kept: ``file:/path``, ``sqlite:///mlflow.db``, ``http://server``...
            Default: ``MLFLOW_TRACKING_URI``, else the file store ``save_dir``.
        tags: Tags of the run.
        save_dir: The local file store when no tracking URI is given (default ``./mlruns``).
        log_model: Upload checkpoints as run artifacts (``model/checkpoints/<name>/``): ``False``, ``True``
            (the kept ones when fit ends) or ``"all"`` (each one when saved); see
            :mod:`hookloop.plugins.checkpoint_artifacts`.
        prefix: Put before every metric name (``prefix-name``).
        artifact_location: Where a newly created experiment keeps its artifacts.
        run_id: Log to this existing run instead of creating one (resume).
        synchronous: Passed to ``log_batch`` (``False``: log without waiting); ``None``: MLflow's default.
        checkpoint_path_prefix: Put before the artifact path of uploaded checkpoints.

    ``experiment`` is the ``mlflow.tracking.MlflowClient``; ``run_id`` and ``experiment_id`` say where to log:
    ``self.logger.experiment.log_text(self.logger.run_id, "note", "note.txt")``.
    """

    def __init__(self, experiment_name: str = "lightning_logs", run_name: Optional[str] = None,
                 tracking_uri: Optional[str] = None, tags: Optional[Dict[str, Any]] = None,
                 save_dir: Optional[Union[str, "os.PathLike[str]"]] = "./mlruns", log_model: Union[bool, str] = False,
                 prefix: str = "", artifact_location: Optional[str] = None, run_id: Optional[str] = None,
                 synchronous: Optional[bool] = None, checkpoint_path_prefix: str = "") -> None:
        require("mlflow", "MLFlowLogger", "mlflow  (or mlflow-skinny)")
        self._log_model = check_log_model(log_model, "MLFlowLogger")
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri and save_dir is not None:
            tracking_uri = f"{FILE_URI_PREFIX}{os.fspath(save_dir)}"
        self._tracking_uri = tracking_uri
        self._experiment_name = experiment_name
        self._run_name = run_name
        self.tags = dict(tags) if tags else None
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._run_id = run_id
        self._experiment_id: Optional[str] = None
        self._log_batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}
        self._checkpoint_path_prefix = checkpoint_path_prefix
        self._client: Any = None

    # ---- the run ------------------------------------------------------------------------------
    @property
    def experiment(self) -> Any:
        """The ``MlflowClient`` (the experiment and run exist once it is returned; a stand-in on other ranks)."""
        if not self.rank_zero:
            return DummyExperiment()
        if self._client is None:
            client = self._connect()
            if self._run_id is not None:
                self._experiment_id = client.get_run(self._run_id).info.experiment_id
            else:
                self._experiment_id = self._experiment_id or self._find_or_create_experiment(client)
                self._run_id = client.create_run(experiment_id=self._experiment_id, tags=self._run_tags()).info.run_id
            self._client = client
        return self._client

    def _connect(self) -> Any:
        mlflow = load("mlflow", "MLFlowLogger", "mlflow  (or mlflow-skinny)")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            return MlflowClient(self._tracking_uri)
        except MlflowException as exc:
            if not (self._tracking_uri or "").startswith(FILE_URI_PREFIX) or "MLFLOW_ALLOW_FILE_STORE" not in str(exc):
                raise
            raise MisconfigurationException(
                f"MLFlowLogger(tracking_uri={self._tracking_uri!r}): this MLflow ({mlflow.__version__}) keeps runs "
                "in a local file store only when asked to: set MLFLOW_ALLOW_FILE_STORE=true, or give the logger "
                "another tracking_uri (e.g. 'sqlite:///mlflow.db', which needs the full `mlflow` package)."
            ) from exc

    def _find_or_create_experiment(self, client: Any) -> str:
        found = client.get_experiment_by_name(self._experiment_name)
        if found is not None and found.lifecycle_stage != "deleted":
            return found.experiment_id
        return client.create_experiment(name=self._experiment_name, artifact_location=self._artifact_location)

    def _run_tags(self) -> Dict[str, Any]:
        from mlflow.tracking.context.registry import resolve_tags  # the source, user and git tags mlflow adds
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        tags = dict(self.tags or {})
        if self._run_name is not None:
            if tags.get(MLFLOW_RUN_NAME, self._run_name) != self._run_name:
                warnings.warn(f"MLFlowLogger: run_name={self._run_name!r} replaces the tag "
                              f"{MLFLOW_RUN_NAME}={tags[MLFLOW_RUN_NAME]!r}.")
            tags[MLFLOW_RUN_NAME] = self._run_name
        return resolve_tags(tags)

    @property
    def run_id(self) -> Optional[str]:
        """The run's id (creates the run)."""
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> Optional[str]:
        """The experiment's id (creates the run)."""
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> Optional[str]:
        """The experiment id (as Lightning's ``MLFlowLogger.name``)."""
        return self.experiment_id

    @property
    def version(self) -> Optional[str]:
        """The run id."""
        return self.run_id

    @property
    def save_dir(self) -> Optional[str]:
        """The local file store's directory, or ``None`` when the runs are kept elsewhere."""
        uri = self._tracking_uri or ""
        return uri[len(FILE_URI_PREFIX):] if uri.startswith(FILE_URI_PREFIX) else None

    @property
    def log_dir(self) -> Optional[str]:
        """The run's directory in the file store (``save_dir/<experiment id>/<run id>``, where the default
        ``ModelCheckpoint`` writes, as in Lightning); ``None`` without a file store."""
        if self.save_dir is None:
            return None
        return os.path.join(self.save_dir, str(self.name), str(self.version))

    # ---- the logging hooks --------------------------------------------------------------------
    def log_metrics(self, metrics: Dict[str, Any], step: Optional[int] = None) -> None:
        """Numbers as metrics at ``step`` (strings are left out with a warning; names MLflow refuses are cleaned)."""
        if not self.rank_zero:
            return
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch: List[Any] = []
        for key, value in add_prefix(metrics, self._prefix).items():
            if isinstance(value, str):
                warnings.warn(f"MLFlowLogger: {key}={value!r} is a string, not a number; it is not logged.")
                continue
            clean = _NOT_ALLOWED.sub("", key)
            if clean != key:
                warnings.warn(f"MLFlowLogger: MLflow allows only letters, digits, '_', '/', '.', '-' and ' ' in metric "
                              f"names; {key!r} is logged as {clean!r}.", RuntimeWarning)
            batch.append(Metric(key=clean, value=float(value), timestamp=timestamp, step=step or 0))
        if batch:
            self.experiment.log_batch(run_id=self.run_id, metrics=batch, **self._log_batch_kwargs)

    def log_hyperparams(self, params: Any) -> None:
        """Hyperparameters as the run's params (nested dicts as ``parent/child``; values as strings)."""
        if not self.rank_zero:
            return
        from mlflow.entities import Param

        limit = _mlflow_limit("MAX_PARAM_VAL_LENGTH", _PARAM_LENGTH)
        per_batch = _mlflow_limit("MAX_PARAMS_TAGS_PER_BATCH", _PARAMS_PER_BATCH)
        items = [Param(key=key, value=str(value)[:limit]) for key, value in flatten(hparams_dict(params)).items()]
        for start in range(0, len(items), per_batch):
            self.experiment.log_batch(run_id=self.run_id, params=items[start:start + per_batch],
                                      **self._log_batch_kwargs)

    # ---- the end ------------------------------------------------------------------------------
    def finalize(self, status: str) -> None:
        """End the run with MLflow's status for ``status`` (``FINISHED``, ``FAILED``, ``KILLED``), after
        uploading the kept checkpoints of a successful fit with ``log_model=True``."""
        if self._client is None:
            return  # nothing was logged: no run to end
        if status == "success" and self._log_model:
            self.send_checkpoints()
        self._client.set_terminated(self._run_id, _STATUS.get(status, status))

    def log_checkpoint(self, checkpoint: CheckpointFile) -> None:
        """Upload one checkpoint file, with ``metadata.yaml`` and ``aliases.txt``, to ``model/checkpoints/<name>/``."""
        name = os.path.splitext(os.path.basename(checkpoint.path))[0]
        artifact_path = f"{self._checkpoint_path_prefix}model/checkpoints/{name}"
        self.experiment.log_artifact(self.run_id, checkpoint.path, artifact_path)
        with tempfile.TemporaryDirectory(prefix="hookloop-mlflow-") as tmp:  # the system's temp dir, never the cwd
            save_hparams_yaml(os.path.join(tmp, "metadata.yaml"), checkpoint.metadata)
            with open(os.path.join(tmp, "aliases.txt"), "w", encoding="utf-8") as fh:
                fh.write(str(list(checkpoint.aliases)))
            self.experiment.log_artifacts(self.run_id, tmp, artifact_path)

    def __getstate__(self) -> Dict[str, Any]:
        # A copy (a ddp_spawn process) connects again and logs to the same run.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def __repr__(self) -> str:
        return (f"MLFlowLogger(experiment_name={self._experiment_name!r}, tracking_uri={self._tracking_uri!r}, "
                f"run_id={self._run_id!r})")


def _mlflow_limit(name: str, default: int) -> int:
    from mlflow.utils import validation

    return int(getattr(validation, name, default))


__all__ = ["MLFlowLogger"]
