"""``WandbLogger``: metrics, hyperparameters, media and checkpoints to a Weights & Biases run.

Lightning 2.x's arguments and behaviour (``from lightning.pytorch.loggers import WandbLogger``).
hookloop does not depend on wandb: ``pip install wandb``. It is looked up when the logger is
created and imported when the run is first needed, so ``import plugins`` never imports it.

Offline (``offline=True``, or ``WANDB_MODE=offline``), the run is written under
``save_dir/wandb/offline-run-*/`` and nothing goes over the network; ``wandb sync`` uploads it
later. As in Lightning, the run stays open after ``fit`` (so ``test()`` logs to it too) until
``wandb.finish()`` (or ``logger.experiment.finish()``) or the end of the process.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Optional, Union

from hookloop.plugins.checkpoint_artifacts import CheckpointFile, LogsCheckpoints, check_log_model
from hookloop.plugins.logger_base import DummyExperiment, Logger, add_prefix, hparams_dict
from hookloop.plugins.optional_import import load, require

#: The x-axis of every logged value: the trainer's global step.
STEP_METRIC = "trainer/global_step"


class WandbLogger(LogsCheckpoints, Logger):
    """Log to a Weights & Biases run (created on first use, on global rank zero only).

    Args:
        name: Display name of the run.
        save_dir: Where wandb writes the run's files (``save_dir/wandb/``); default the working directory.
        version: The run id, to resume a run (alias of ``id``).
        offline: Write the run locally only (``mode="offline"``), to upload later with ``wandb sync``.
        dir: Alias of ``save_dir`` (used when ``save_dir`` is ``None``).
        id: The run id (see ``version``).
        anonymous: Let an anonymous user log (``anonymous="allow"``).
        project: The project (default: ``WANDB_PROJECT``, else ``"lightning_logs"``).
        log_model: Upload checkpoints as ``model`` artifacts: ``False``, ``True`` (the kept ones when fit
            ends) or ``"all"`` (each one when saved); see :mod:`hookloop.plugins.checkpoint_artifacts`.
            Offline, artifacts are kept with the run and uploaded by ``wandb sync``.
        experiment: A wandb run to log to instead of creating one.
        prefix: Put before every metric name (``prefix-name``).
        checkpoint_name: Name of the checkpoint artifact (default ``model-<run id>``).
        add_file_policy: ``"mutable"`` (copy each checkpoint before uploading) or ``"immutable"``.
        **kwargs: Passed to ``wandb.init`` (``entity``, ``group``, ``tags``, ``config``, ``mode``, ``settings``...).

    ``experiment`` is the wandb ``Run``: ``self.logger.experiment.log({...})`` in a module.
    """

    def __init__(self, name: Optional[str] = None, save_dir: Optional[Union[str, "os.PathLike[str]"]] = ".",
                 version: Optional[str] = None, offline: bool = False,
                 dir: Optional[Union[str, "os.PathLike[str]"]] = None, id: Optional[str] = None,  # noqa: A002
                 anonymous: Optional[bool] = None, project: Optional[str] = None,
                 log_model: Union[bool, str] = False, experiment: Any = None, prefix: str = "",
                 checkpoint_name: Optional[str] = None, add_file_policy: str = "mutable", **kwargs: Any) -> None:
        require("wandb", "WandbLogger")
        self._log_model = check_log_model(log_model, "WandbLogger")
        root = os.fspath(save_dir) if save_dir is not None else (os.fspath(dir) if dir is not None else None)
        init: Dict[str, Any] = {"name": name, "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
                                "dir": root, "id": version or id, "resume": "allow"}
        if anonymous:  # passed only when asked for: wandb warns about the setting whenever it is given
            init["anonymous"] = "allow"
        if offline:
            init["mode"] = "offline"
        init.update(kwargs)
        self._wandb_init = init
        self._offline = offline
        self._prefix = prefix
        self._checkpoint_name = checkpoint_name
        self._add_file_policy = add_file_policy
        self._experiment: Any = experiment

    # ---- the run ------------------------------------------------------------------------------
    @property
    def experiment(self) -> Any:
        """The wandb ``Run`` (created on first use; a do-nothing stand-in on ranks other than zero)."""
        if not self.rank_zero:
            return DummyExperiment()
        if self._experiment is None:
            wandb = load("wandb", "WandbLogger")
            attach_id = self.__dict__.pop("_attach_id", None)
            if attach_id is not None and hasattr(wandb, "_attach"):
                # A copy of a logger whose run exists (a ddp_spawn process): that run.
                self._experiment = wandb._attach(attach_id)
            elif wandb.run is not None:
                warnings.warn("WandbLogger: a wandb run is already in progress in this process, so this logger logs "
                              "to it. Call wandb.finish() before creating the logger to start a new run.")
                self._experiment = wandb.run
            else:
                if self._wandb_init.get("dir"):
                    os.makedirs(self._wandb_init["dir"], exist_ok=True)  # else wandb falls back to a temp dir
                self._experiment = wandb.init(**self._wandb_init)
            self._define_step_metric()
        return self._experiment

    def _define_step_metric(self) -> None:
        # Every value is drawn against the trainer's global step, not wandb's count of log calls.
        define = getattr(self._experiment, "define_metric", None)
        if define is not None:
            define("trainer/*", step_metric=STEP_METRIC)
            define("*", step_metric=STEP_METRIC, step_sync=True)

    @property
    def name(self) -> Optional[str]:
        """The project (as Lightning's ``WandbLogger.name``)."""
        return self._wandb_init.get("project")

    @property
    def version(self) -> Optional[str]:
        """The run id (``None`` until the run exists, unless one was given)."""
        return self._experiment.id if self._experiment is not None else self._wandb_init.get("id")

    @property
    def save_dir(self) -> Optional[str]:
        """Where wandb writes the run's files."""
        return self._wandb_init.get("dir")

    @property
    def log_dir(self) -> str:
        """``save_dir/<project>/<run id>``: where the default ``ModelCheckpoint`` writes (``checkpoints/``), as in
        Lightning."""
        if self.rank_zero:
            _ = self.experiment  # the run id names the directory
        return os.path.join(self.save_dir or ".", str(self.name), str(self.version))

    # ---- the logging hooks --------------------------------------------------------------------
    def log_metrics(self, metrics: Dict[str, Any], step: Optional[int] = None) -> None:
        """Log ``metrics`` (numbers, or wandb objects such as ``wandb.Image``) at ``trainer/global_step = step``."""
        if not self.rank_zero:
            return
        metrics = add_prefix(metrics, self._prefix)
        if step is not None:
            metrics[STEP_METRIC] = step
        self.experiment.log(metrics)

    def log_hyperparams(self, params: Any) -> None:
        """Hyperparameters to the run's config (nested dicts stay nested; functions and classes by name)."""
        if not self.rank_zero:
            return
        params = {key: _config_value(value) for key, value in hparams_dict(params).items()}
        self.experiment.config.update(params, allow_val_change=True)

    # ---- media ------------------------------------------------------------------------------
    def log_table(self, key: str, columns: Optional[List[str]] = None, data: Optional[List[List[Any]]] = None,
                  dataframe: Any = None, step: Optional[int] = None) -> None:
        """Log a ``wandb.Table`` of ``data`` rows under ``columns`` (or of a pandas ``dataframe``)."""
        wandb = load("wandb", "WandbLogger")
        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    def log_text(self, key: str, columns: Optional[List[str]] = None, data: Optional[List[List[str]]] = None,
                 dataframe: Any = None, step: Optional[int] = None) -> None:
        """Log text as a table (rows of strings), as Lightning's ``log_text``."""
        self.log_table(key, columns, data, dataframe, step)

    def log_image(self, key: str, images: List[Any], step: Optional[int] = None, **kwargs: List[Any]) -> None:
        """Log ``images`` (tensors, arrays, PIL images or paths) as ``wandb.Image``\\ s under ``key``.

        Each keyword is a list with one entry per image: ``caption=[...]``, ``masks=[...]``, ``boxes=[...]``.
        """
        if not isinstance(images, list):
            raise TypeError(f'WandbLogger.log_image({key!r}, ...): "images" must be a list, '
                            f'got {type(images).__name__}')
        for name, values in kwargs.items():
            if len(values) != len(images):
                raise ValueError(f"WandbLogger.log_image({key!r}, ...): {len(images)} images but {len(values)} "
                                 f"values for {name!r}; give one per image")
        wandb = load("wandb", "WandbLogger")
        per_image = [{name: values[i] for name, values in kwargs.items()} for i in range(len(images))]
        self.log_metrics({key: [wandb.Image(image, **extra) for image, extra in zip(images, per_image)]}, step)

    def watch(self, model: Any, log: Optional[str] = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Log ``model``'s gradients (``log="gradients"``), parameters or both (``"all"``) every ``log_freq`` steps."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    # ---- the end ------------------------------------------------------------------------------
    def finalize(self, status: str) -> None:
        """After a successful fit with ``log_model=True``, upload the kept checkpoints; the run stays open."""
        if status == "success" and self._log_model and self._experiment is not None:
            self.send_checkpoints()

    def log_checkpoint(self, checkpoint: CheckpointFile) -> None:
        """Upload one checkpoint file as a version of the run's ``model`` artifact."""
        wandb = load("wandb", "WandbLogger")
        artifact = wandb.Artifact(name=self._checkpoint_name or f"model-{self.experiment.id}", type="model",
                                  metadata=checkpoint.metadata)
        artifact.add_file(checkpoint.path, name="model.ckpt", policy=self._add_file_policy)
        self.experiment.log_artifact(artifact, aliases=list(checkpoint.aliases))

    def __getstate__(self) -> Dict[str, Any]:
        # The run holds a connection to wandb's service: a spawned process attaches to it by id instead.
        state = dict(self.__dict__)
        if self._experiment is not None:
            state["_attach_id"] = getattr(self._experiment, "_attach_id", None)
        state["_experiment"] = None
        return state

    def __repr__(self) -> str:
        return f"WandbLogger(project={self.name!r}, save_dir={self.save_dir!r}, version={self.version!r})"


def _config_value(value: Any) -> Any:
    """A function or class as its name (a config holds data); anything else as it is (wandb converts it)."""
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return getattr(value, "__qualname__", repr(value))
    return value


__all__ = ["WandbLogger", "STEP_METRIC"]
