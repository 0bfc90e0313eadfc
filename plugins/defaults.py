"""The built-in plugins a ``Trainer`` registers, by name, built from its flags.

Order matters: pluggy calls later registrations first, so the list runs from the plugin
called last to the one called first among built-ins (``metrics`` reduces values before
loggers and the progress bar read them).
"""
from __future__ import annotations

from typing import Any, List, Tuple

from hookloop.plugins.checkpoint_io import CheckpointIO
from hookloop.plugins.data import DataPlugin
from hookloop.plugins.data_parallel import data_parallel_plugins
from hookloop.plugins.device import DevicePlugin, batches_may_need_moving
from hookloop.plugins.grad_norm import grad_norm_tracker_for
from hookloop.plugins.gpu_memory import gpu_memory_plugins
from hookloop.plugins.distributed import distributed_plugins
from hookloop.plugins.launch import LocalLauncher
from hookloop.plugins.metrics import MetricsPlugin
from hookloop.plugins.model_hooks import ModelHooksPlugin
from hookloop.plugins.optimization import OptimizationPlugin
from hookloop.plugins.precision import precision_plugin_for
from hookloop.plugins.profiler import make_profiler
from hookloop.plugins.reporting import reporting_plugins
from hookloop.plugins.seed_epoch import SeedEraCurrentEpoch
from hookloop.plugins.timer import timer_for
from hookloop.plugins.tuner.seed_flags import tuning_plugins


def default_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``(name, plugin)`` for every built-in this trainer's flags ask for."""
    plugins: List[Tuple[str, Any]] = [
        ("launcher", LocalLauncher()),
        ("data", DataPlugin()),
        ("device", DevicePlugin(moves_batches=batches_may_need_moving(trainer))),
        *distributed_plugins(trainer),  # after device: it sets the ranks the device choice depends on
        *data_parallel_plugins(trainer),  # strategy='dp': DataParallel in this process
        ("optimization", OptimizationPlugin()),
        ("model_hooks", ModelHooksPlugin()),
        ("seed_epoch", SeedEraCurrentEpoch()),  # 0.9's current_epoch after a seed-era fit (three hooks, none per batch)
    ]
    # Before optimization: it converts the module first. At 32 bits its one hook names it
    # trainer.precision_plugin: full precision costs nothing per batch.
    plugins.append(("precision", precision_plugin_for(trainer)))
    plugins.extend(reporting_plugins(trainer))  # loggers, progress bar, model summary: called after metrics
    plugins.append(("metrics", MetricsPlugin()))
    plugins.extend(gpu_memory_plugins(trainer))  # seed-era log_gpu_memory: only when set, on a machine with CUDA
    plugins.extend(checkpoint_plugins(trainer))  # checkpoint saving/restoring, early stopping, signals
    grad_norms = grad_norm_tracker_for(trainer)  # None without track_grad_norm: the fast path stays bare
    if grad_norms is not None:
        plugins.append(("grad_norm", grad_norms))
    timer = timer_for(trainer)  # None without max_time: then no per-batch clock check
    if timer is not None:
        plugins.append(("timer", timer))
    profiler = make_profiler(trainer.profiler)  # None when off: then no timer exists anywhere
    if profiler is not None:
        plugins.append(("profiler", profiler))
    # Seed-era auto_lr_find/auto_scale_batch_size; last, so their setup searches before any other built-in's.
    plugins.extend(tuning_plugins(trainer))
    return plugins


def checkpoint_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``checkpoint_io``, ``signals``, and the ModelCheckpoint / EarlyStopping the flags ask for.

    ``checkpoint_callback``/``enable_checkpointing``: ``True`` makes the default ModelCheckpoint
    unless one is in ``callbacks``; an instance is used as is; ``False`` turns it off (and a
    ModelCheckpoint in ``callbacks`` is then an error). ``early_stop_callback``: ``True`` makes
    ``EarlyStopping(monitor='val_loss', patience=3, mode='min')``; an instance is used as is.
    Their relative order is set by ``__engine_order__`` (early stopping before checkpointing).
    """
    from hookloop.engine.errors import MisconfigurationException
    from hookloop.plugins.checkpoint import ModelCheckpoint
    from hookloop.plugins.early_stopping import EarlyStopping
    from hookloop.plugins.signals import SignalsPlugin

    found: List[Tuple[str, Any]] = [("checkpoint_io", CheckpointIO()), ("signals", SignalsPlugin())]
    flag = trainer.checkpoint_callback_flag
    user_checkpoints = [c for c in trainer.user_callbacks if isinstance(c, ModelCheckpoint)]
    if isinstance(flag, ModelCheckpoint):
        found.append(("checkpoint", flag))
    elif flag and not trainer.fast_dev_run and not user_checkpoints:
        found.append(("checkpoint", ModelCheckpoint.default()))
    elif not flag and user_checkpoints:
        raise MisconfigurationException(
            "Checkpointing is turned off (checkpoint_callback=False / enable_checkpointing=False) but "
            "callbacks=[...] holds a ModelCheckpoint; remove one of the two."
        )
    early = trainer.early_stop_callback_flag
    if isinstance(early, EarlyStopping):
        found.append(("early_stopping", early))
    elif early is True:
        # monitor not given: val_loss, or the Results API's early_stop_on when a module returns one (as 0.9's)
        found.append(("early_stopping", EarlyStopping(patience=3, mode="min")))
    return found
