"""Trials: short runs of the user's model on a separate, silent Trainer, leaving no trace.

A search (learning rate, batch size) trains the model for a few steps, maybe many times. Each trial
runs on a *trial trainer* built from what shapes a step in the user's trainer — its device flags,
precision, gradient accumulation and clipping, determinism and NaN checks — and the plugins attached
in code or by entry points that change how a step runs (a replaced ``training_step``, SAM). Callbacks,
loggers (and plugins implementing the logging events), checkpointing, early stopping, the progress bar,
the model summary, the timer and the profiler are left out, as Lightning's tuner sets the callbacks and
loggers aside: they never hear of the search. The user's trainer itself is not touched: its loop
state, optimizers, callbacks and files stay as they were.

:func:`preserved` saves the model's weights to a temporary checkpoint before a search and puts
everything back after it, failed or not.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from hookloop.engine.callback import Callback
from hookloop.engine.dataloader_kinds import STAGE_LOADERS
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.checkpoint_io import atomic_save, load_checkpoint_file, load_weights
from hookloop.plugins.logger_base import LOGGER_HOOKS, DummyLogger
from hookloop.plugins.resume_data import capture_rng, restore_rng

#: Trainer flags a trial takes from the user's trainer: the ones that decide how a step computes.
CARRIED_FLAGS = (
    "devices", "gpus", "num_processes", "num_nodes", "precision",
    "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm", "deterministic", "benchmark",
    "terminate_on_nan", "detect_anomaly", "inference_mode", "prepare_data_per_node", "default_root_dir",
)
#: Flags kept under another attribute name (``trainer.strategy``/``accelerator`` are objects): flag -> attribute.
CARRIED_AS = {"strategy": "strategy_flag", "accelerator": "accelerator_flag"}
#: Built-ins that report on a run or stop it; a trial has none, so a ``disable_plugins`` naming one is moot there.
_REPORTING_BUILTINS = ("progress_bar", "model_summary", "checkpoint", "early_stopping", "timer", "profiler",
                       "distributed", "lr_finder", "batch_size_finder")
#: The dataloader kind each stage reads.


def check_single_process(trainer: Any, culprit: str) -> None:
    """Refuse a trainer that trains on several processes: trials run in one."""
    from hookloop.plugins.device import resolve_devices

    config = resolve_devices(trainer)
    processes = max(config.world_size, getattr(trainer, "world_size", 1))
    if config.distributed or processes > 1:
        raise MisconfigurationException(
            f"{culprit} runs its trials in one process, but this Trainer trains on {processes} processes "
            f"(strategy {config.strategy!r}). Tune with a one-device Trainer (e.g. Trainer(devices=1)), then train "
            "with the value found."
        )


def given_loaders(trainer: Any, stage: str) -> Dict[str, Any]:
    """The dataloaders passed to the running ``fit``/``validate``/``test``/``predict`` call, by kind."""
    given = trainer.dataloaders_given
    kinds = ("train", "val") if stage == "fit" else (STAGE_LOADERS[stage],)
    return {kind: given.get(kind) for kind in kinds}


def trial_trainer(trainer: Any, callbacks: Sequence[Any] = (), **flags: Any) -> Any:
    """A Trainer that steps like ``trainer`` and reports nothing; ``flags`` set the trial's length and data limits."""
    from hookloop.engine.trainer import Trainer

    settings: Dict[str, Any] = {name: getattr(trainer, name) for name in CARRIED_FLAGS}
    settings.update({flag: getattr(trainer, attribute) for flag, attribute in CARRIED_AS.items()})
    settings.update(
        # A stand-in logger where the user's trainer has one: ``self.logger.experiment`` still works in the model.
        logger=DummyLogger() if getattr(trainer, "loggers", None) else False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=list(callbacks), plugins=_step_plugins(trainer), disable_plugins=_disabled(trainer),
    )
    settings.update(flags)
    return Trainer(**settings)


def run_trial(trial: Any, model: Any, stage: str, loaders: Dict[str, Any], datamodule: Any) -> None:
    """Run ``stage`` of ``model`` on ``trial``; then ``model.trainer`` (and the datamodule's) are what they were."""
    previous = model.trainer, getattr(datamodule, "trainer", None)
    try:
        if stage == "fit":
            trial.fit(model, train_dataloaders=loaders.get("train"), val_dataloaders=loaders.get("val"),
                      datamodule=datamodule)
        elif stage == "predict":
            trial.predict(model, dataloaders=loaders.get("predict"), datamodule=datamodule)
        else:
            getattr(trial, stage)(model, dataloaders=loaders.get(STAGE_LOADERS[stage]), datamodule=datamodule,
                                  verbose=False)
    finally:
        model.trainer = previous[0]
        if datamodule is not None:
            datamodule.trainer = previous[1]


@contextlib.contextmanager
def preserved(model: Any, root_dir: str, prefix: str) -> Iterator[str]:
    """Keep the model as it is now across a search; yields the temporary checkpoint's path.

    The weights go to ``root_dir/.{prefix}_<uuid>.ckpt`` first (on disk, not in device memory, which a
    batch-size search needs). Afterwards — also when the search fails — the model gets back its
    device and dtype (a trial may have moved or converted it), its weights, the train/eval mode of every
    submodule, and the random generators their states (a search consumes none of the run's randomness);
    the file is deleted.
    """
    path = os.path.join(root_dir, f".{prefix}_{uuid.uuid4().hex}.ckpt")
    atomic_save({"state_dict": model.state_dict()}, path)
    try:
        rng = capture_rng()
        placement = _placement(model)
        modes = [(module, module.training) for module in model.modules()]
        try:
            yield path
        finally:
            _restore_placement(model, placement)
            load_weights(model, load_checkpoint_file(path, map_location="cpu")["state_dict"], path)
            for module, training in modes:
                module.training = training
            restore_rng(rng)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _step_plugins(trainer: Any) -> List[Any]:
    """The user's code plugins that shape a step, in the order they were given."""
    code = [record.plugin for record in trainer.registry.records() if record.tier == "code" and not _reports(record)]
    return code[::-1]  # the trainer registers code plugins in reverse of their list order


def _disabled(trainer: Any) -> List[str]:
    """``disable_plugins`` for a trial: the user's (less the reporting built-ins), and entry points that report."""
    names = [name for name in sorted(getattr(trainer, "disabled_plugins", ()))
             if name not in _REPORTING_BUILTINS and not name.startswith("logger")]
    names += [record.name for record in trainer.registry.records() if record.tier == "entrypoint" and _reports(record)]
    return names


def _reports(record: Any) -> bool:
    """A callback, or a plugin implementing a logging event: it watches a run rather than shaping its steps."""
    return isinstance(record.plugin, Callback) or any(hook in LOGGER_HOOKS for hook in record.hooks)


def _placement(model: torch.nn.Module) -> Tuple[Optional[torch.device], Optional[torch.dtype]]:
    """The one device of the model's tensors and the one dtype of its floating ones (``None`` where mixed)."""
    tensors = [*model.parameters(), *model.buffers()]
    devices = {t.device for t in tensors}
    dtypes = {t.dtype for t in tensors if t.is_floating_point()}
    return (next(iter(devices)) if len(devices) == 1 else None, next(iter(dtypes)) if len(dtypes) == 1 else None)


def _restore_placement(model: torch.nn.Module, placement: Tuple[Optional[torch.device], Optional[torch.dtype]]) -> None:
    device, dtype = placement
    if device is not None:
        model.to(device)
    if dtype is not None:
        model.to(dtype)
