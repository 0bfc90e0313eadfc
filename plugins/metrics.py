"""Built-in ``metrics``: turns logged values into the trainer's metrics and sends them to loggers.

Step values reach loggers every ``log_every_n_steps`` optimizer steps (the only place they
become floats); epoch values are reduced at the end of every epoch and validation run.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Tuple

import torch

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.logger_base import logger_values
from hookloop.plugins.step_settings import accumulating
from hookloop.plugins.rank_zero import is_rank_zero


class MetricsPlugin:
    """Reduces ``self.log`` epoch values, fires ``log_metrics`` and ``log_hyperparams`` (rank zero only)."""

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, stage: str) -> None:
        """Every run starts with empty ``callback_metrics``/``logged_metrics``/``progress_bar_metrics``, as in
        Lightning 2.x (a ``test()`` after ``fit`` then holds the test's values only). A seed-era trainer keeps
        them across runs, as 0.8/0.9 did (``trainer.state.seed_era``)."""
        state = trainer.state
        if not state.seed_era:
            state.callback_metrics.clear()
            state.logged_metrics.clear()
            state.progress_bar_metrics.clear()

    @hookimpl
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Send the module's hyperparameters to loggers once per run."""
        _log_hyperparams(trainer, pl_module)

    @hookimpl(tryfirst=True)
    def on_train_epoch_start(self, trainer: Any) -> None:
        """A fresh epoch accumulates from zero."""
        trainer.train_results.reset()

    @hookimpl(tryfirst=True)
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Listen per batch only once there is something to send: the first logger-bound step value."""
        # log_every_n_steps=0: no step values are sent, so nothing needs to listen per batch.
        if trainer.log_every_n_steps and trainer.registry.get_plugin(StepValueSender.NAME) is None:
            # A partial, not a lambda: the trainer must stay picklable for ddp_spawn.
            trainer.train_results.on_first_step_value = functools.partial(_add_step_sender, trainer)

    @hookimpl(specname="on_train_epoch_end", tryfirst=True)
    def publish_train_epoch(self, trainer: Any) -> None:
        """Put the epoch's values in ``callback_metrics`` before any ``on_train_epoch_end`` reads them.

        Lightning computes them whenever ``callback_metrics`` is read; here they are reduced
        once first, and again (and sent) after the module's own epoch-end hooks have logged.
        """
        state = trainer.state
        last = state.last_outputs
        # 0.8/0.9 put the step's 'loss' among the monitor candidates (its default checkpoint ranks by it without
        # validation): a seed-era run reads the epoch's last loss as 'loss', unless the module logs a 'loss'
        # itself. Lightning 2.x has only what was logged.
        if state.seed_era and "loss" not in trainer.train_results.metrics:
            loss = last.get("loss") if isinstance(last, dict) else last
            if isinstance(loss, torch.Tensor):
                state.callback_metrics["loss"] = loss.detach()
        trainer.train_results.epoch_end(_reducer(trainer))

    @hookimpl
    def on_train_epoch_end(self, trainer: Any) -> None:
        """Reduce the epoch's values (after the module's epoch-end hooks have logged) and send them."""
        results = trainer.train_results
        to_log = results.epoch_end(_reducer(trainer))
        results.reset_metric_objects()  # torchmetrics objects start the next epoch empty, as in Lightning
        if to_log:
            _send(trainer, to_log, max(trainer.global_step - 1, 0))

    @hookimpl(tryfirst=True)
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Every validation run accumulates from zero; ``trainer.validate()`` alone also sends the
        hyperparameters, as in Lightning (a fit sent them at its start)."""
        _start_eval_run(trainer)
        if trainer.state.fn == "validate":
            _log_hyperparams(trainer, pl_module)

    @hookimpl(tryfirst=True)
    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """Every test run accumulates from zero and sends the hyperparameters, as in Lightning."""
        _start_eval_run(trainer)
        _log_hyperparams(trainer, pl_module)

    @hookimpl(specname="on_validation_epoch_end", tryfirst=True)
    def publish_validation_epoch(self, trainer: Any) -> None:
        """The run's values in ``callback_metrics`` before any ``on_validation_epoch_end`` reads them."""
        trainer.eval_results.epoch_end(_reducer(trainer))

    @hookimpl(specname="on_test_epoch_end", tryfirst=True)
    def publish_test_epoch(self, trainer: Any) -> None:
        """The run's values in ``callback_metrics`` before any ``on_test_epoch_end`` reads them."""
        trainer.eval_results.epoch_end(_reducer(trainer))

    @hookimpl
    def on_validation_epoch_end(self, trainer: Any) -> None:
        """Reduce and send the validation run's values."""
        self._eval_end(trainer)

    @hookimpl
    def on_test_epoch_end(self, trainer: Any) -> None:
        """Reduce and send the test run's values."""
        self._eval_end(trainer)

    def _eval_end(self, trainer: Any) -> None:
        results = trainer.eval_results
        to_log = results.epoch_end(_reducer(trainer))
        results.reset_metric_objects()  # the next run (the sanity check's too) starts them empty
        if to_log and not trainer.sanity_checking:
            _send(trainer, to_log, max(trainer.global_step - 1, 0))


class StepValueSender:
    """Built-in ``step_values``: sends training step values to loggers every ``log_every_n_steps`` optimizer steps.

    Registered by the metrics plugin when a run keeps its first logger-bound training step value
    (``self.log`` in ``training_step``, a seed-era ``'log'`` dict): until then no plugin listens
    per batch, and a run that logs nothing per step pays nothing per step for logging.
    A batch that only accumulates gradients sends nothing (as in Lightning): its values wait
    for the batch that steps, so each optimizer step gets at most one row.
    """

    NAME = "step_values"

    @hookimpl
    def on_batch_end(self, trainer: Any, pl_module: Any) -> None:
        """The last event of a training batch: loggers get its values after every ``on_train_batch_end``."""
        results = trainer.train_results
        if not results.pending_step:
            return
        every = trainer.log_every_n_steps
        if not every:  # 0 turns step logging off (Lightning's convention); epoch values still go
            results.take_pending()
            results.pending_step_index = None
            return
        x = results.pending_step_index
        if x is None:  # the default x-axis: the optimizer step this batch took
            if accumulating(trainer, pl_module):
                return
            step = trainer.state.global_step
            if step % every:
                return
            x = step - 1
        results.pending_step_index = None
        _send(trainer, results.take_pending(), x)


class EvalStepValueSender:
    """Built-in ``eval_step_values``: sends what validation and test batches log per step (``on_step=True``).

    Registered by the metrics plugin when the first validation or test run starts. Values go out
    after every batch (``log_every_n_steps`` is about training, as in Lightning), except in the
    sanity check, after every other ``on_*_batch_end`` implementation (values logged there go too).
    Their x-axis is, as in Lightning 2.x, the count of that dataloader's batches evaluated so far in
    the ``fit``/``validate``/``test`` call (it keeps growing across the validation runs of a fit).
    """

    NAME = "eval_step_values"
    #: After every other ``trylast`` implementation of the batch-end events.
    __engine_order__ = 1000

    def __init__(self) -> None:
        #: ``(stage, dataloader_idx)`` -> batches of it evaluated so far in this call.
        self._seen: Dict[Tuple[str, int], int] = {}

    @hookimpl
    def setup(self, trainer: Any, stage: str) -> None:
        """A new ``fit``/``validate``/``test`` call counts its evaluation batches from zero."""
        self._seen.clear()

    @hookimpl(trylast=True)
    def on_validation_batch_end(self, trainer: Any, dataloader_idx: int) -> None:
        """Send what this validation batch logged per step."""
        self._batch_end(trainer, "validate", dataloader_idx)

    @hookimpl(trylast=True)
    def on_test_batch_end(self, trainer: Any, dataloader_idx: int) -> None:
        """Send what this test batch logged per step."""
        self._batch_end(trainer, "test", dataloader_idx)

    def _batch_end(self, trainer: Any, stage: str, dataloader_idx: int) -> None:
        results = trainer.eval_results
        if trainer.sanity_checking:
            if results.pending_step:
                results.take_pending()  # the sanity check logs nothing, as in Lightning
            return
        key = (stage, dataloader_idx)
        x = self._seen.get(key, 0)
        self._seen[key] = x + 1
        if results.pending_step:
            _send(trainer, results.take_pending(), x)


def _start_eval_run(trainer: Any) -> None:
    """A validation or test run starts: its values accumulate from zero, and the sender of its
    step values listens from its first batch (so that its x-axis counts every batch)."""
    results = trainer.eval_results
    results.reset()
    results.take_pending()
    if trainer.registry.get_plugin(EvalStepValueSender.NAME) is None:
        trainer.registry.add(EvalStepValueSender(), EvalStepValueSender.NAME, "builtin",
                             origin="built-in (added by metrics at the first validation or test run)")


def _log_hyperparams(trainer: Any, pl_module: Any) -> None:
    """Send the module's hyperparameters, merged with the datamodule's as Lightning does."""
    if not is_rank_zero(trainer) or trainer.hooks.log_hyperparams is None:
        return
    params = merged_hyperparameters(pl_module, trainer.datamodule)
    if params:
        trainer.hooks.log_hyperparams(trainer, params)


def merged_hyperparameters(pl_module: Any, datamodule: Any) -> Dict[str, Any]:
    """The module's ``hparams`` and the datamodule's (``save_hyperparameters`` in either) in one dict.

    A name both hold with different values is an error, as in Lightning: which one a logger should
    record would be a guess.
    """
    params = dict(pl_module.hparams)
    datamodule_params = getattr(datamodule, "hparams", None) or {}
    clashing = sorted(str(key) for key, value in datamodule_params.items()
                      if key in params and not _same_value(params[key], value))
    if clashing:
        raise MisconfigurationException(
            f"The hyperparameters {clashing} are in both {type(pl_module).__name__}.hparams and "
            f"{type(datamodule).__name__}.hparams with different values; rename one of them so that loggers "
            "can record both."
        )
    params.update(datamodule_params)
    return params


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # tensors of several elements, objects whose == raises: compare by identity
        return a is b


def _add_step_sender(trainer: Any) -> None:
    if trainer.registry.get_plugin(StepValueSender.NAME) is None:
        trainer.registry.add(StepValueSender(), StepValueSender.NAME, "builtin",
                             origin="built-in (added by metrics at the run's first step value)")


def _reducer(trainer: Any) -> Any:
    reduce = trainer.hooks.reduce_metric
    if reduce is None or trainer.world_size <= 1:
        return None
    return lambda value, fx: reduce(trainer, value, fx)


def _send(trainer: Any, metrics: Dict[str, Any], step: int) -> None:
    if trainer.hooks.log_metrics is None or not is_rank_zero(trainer):
        return
    if "step" in metrics:  # self.log("step", n) sets the x-axis, as in Lightning (not a scalar named "step")
        metrics = dict(metrics)
        step = metrics.pop("step")
    trainer.hooks.log_metrics(trainer, logger_values(trainer, metrics), int(step))
