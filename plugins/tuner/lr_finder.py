"""The learning-rate sweep (Leslie Smith's range test): train a few steps at growing rates, record the loss.

One trial (see :mod:`plugins.tuner.trial`) of ``num_training`` optimizer steps: before step ``i`` every
parameter group's rate is set to the ``i``-th rate from ``min_lr`` to ``max_lr`` (overriding any scheduler
of the model), and after it the smoothed loss is recorded. The sweep stops early once the smoothed loss
exceeds ``early_stop_threshold`` times the best one (or stops being finite). The model's weights, the
generators and the user's trainer are then as they were; with ``update_attr`` the suggested rate is
written where the model keeps its learning rate (``lr`` or ``learning_rate``, or ``attr_name``).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional

import torch

from hookloop.engine.callback import Callback
from hookloop.engine.errors import MisconfigurationException, did_you_mean
from hookloop.plugins.tuner.attributes import holders, searched, set_value
from hookloop.plugins.tuner.lr_result import LRFinderResult
from hookloop.plugins.tuner.trial import check_single_process, preserved, run_trial, trial_trainer

#: Sweep shapes.
MODES = ("exponential", "linear")
#: Where a learning rate is looked for when no ``attr_name`` is given (Lightning's names).
LR_NAMES = ("lr", "learning_rate")


def check_lr_find_args(culprit: str, min_lr: float, max_lr: float, num_training: int, mode: str,
                       early_stop_threshold: Optional[float]) -> str:
    """Raise a :class:`MisconfigurationException` naming ``culprit`` for a bad argument; return the mode, lower-cased."""
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in MODES:
        raise MisconfigurationException(
            f"{culprit}(mode={mode!r}): the sweep is 'exponential' or 'linear'." + did_you_mean(str(mode), MODES))
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise MisconfigurationException(f"{culprit}({name}={value!r}): pass a learning rate > 0.")
    if max_lr <= min_lr:
        raise MisconfigurationException(f"{culprit}(min_lr={min_lr!r}, max_lr={max_lr!r}): max_lr must exceed min_lr.")
    if isinstance(num_training, bool) or not isinstance(num_training, int) or num_training < 1:
        raise MisconfigurationException(f"{culprit}(num_training={num_training!r}): pass a number of steps >= 1.")
    if early_stop_threshold is not None and (isinstance(early_stop_threshold, bool) or not isinstance(
            early_stop_threshold, (int, float)) or early_stop_threshold <= 0):
        raise MisconfigurationException(
            f"{culprit}(early_stop_threshold={early_stop_threshold!r}): pass a factor > 0, or None to never stop early.")
    return mode


def sweep_rates(min_lr: float, max_lr: float, num_training: int, mode: str) -> List[float]:
    """The rate of each step: ``min_lr`` first, ``max_lr`` last, evenly spaced on a log or linear scale."""
    if num_training == 1:
        return [float(min_lr)]
    last = num_training - 1
    if mode == "exponential":
        return [min_lr * (max_lr / min_lr) ** (i / last) for i in range(num_training)]
    return [min_lr + (max_lr - min_lr) * i / last for i in range(num_training)]


def lr_attribute(model: Any, datamodule: Any, attr_name: str, culprit: str) -> str:
    """The name of the attribute the found rate goes to: ``attr_name``, else ``lr`` or ``learning_rate``."""
    model_name = type(model).__name__
    if attr_name:
        if not holders(model, attr_name, datamodule):
            raise MisconfigurationException(
                f"{culprit}: {model_name} has no `{attr_name}`, the attribute named for the learning rate (looked in "
                f"{searched(datamodule)}). Name the attribute its configure_optimizers reads the rate from.")
        return attr_name
    for name in LR_NAMES:
        if holders(model, name, datamodule):
            return name
    raise MisconfigurationException(
        f"{culprit} sets the learning rate it finds, but {model_name} has neither `lr` nor `learning_rate` (looked in "
        f"{searched(datamodule)}). Store the rate there and read it in configure_optimizers, name your attribute "
        "with attr_name='...', or pass update_attr=False and read .suggestion() yourself.")


def lr_find(trainer: Any, model: Any, loaders: Dict[str, Any], datamodule: Any, *, min_lr: float = 1e-8,
            max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential",
            early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True, attr_name: str = "",
            culprit: str = "lr_find") -> Optional[LRFinderResult]:
    """Sweep the learning rate of ``model`` as ``trainer`` would train it (``None``, warning, under ``fast_dev_run``).

    ``loaders`` (``{'train': ..., 'val': ...}``) and ``datamodule`` are the data as ``fit`` takes it;
    ``culprit`` names the caller in messages.
    """
    mode = check_lr_find_args(culprit, min_lr, max_lr, num_training, mode, early_stop_threshold)
    if trainer.fast_dev_run:
        warnings.warn(f"{culprit}: the learning-rate sweep is skipped, since fast_dev_run is on.")
        return None
    check_single_process(trainer, culprit)
    name = lr_attribute(model, datamodule, attr_name, culprit) if update_attr else None
    sweep = _Sweep(sweep_rates(min_lr, max_lr, num_training, mode), early_stop_threshold, culprit)
    with preserved(model, trainer.default_root_dir, "lr_find"):
        trial = trial_trainer(trainer, callbacks=[sweep], max_steps=num_training, limit_val_batches=0,
                              limit_train_batches=trainer.limit_train_batches)
        run_trial(trial, model, "fit", loaders, datamodule)
    result = LRFinderResult(mode, min_lr, max_lr, num_training, {"lr": sweep.lrs, "loss": sweep.losses})
    if len(sweep.lrs) < num_training and trainer.is_global_zero:
        reason = "the loss diverged" if sweep.diverged else "training stopped early"
        print(f"{culprit}: the sweep stopped after {len(sweep.lrs)} of {num_training} steps ({reason}).")
    if name is not None:
        lr = result.suggestion()
        if lr is not None:
            where = set_value(model, name, lr, datamodule)
            if trainer.is_global_zero:
                print(f"{culprit}: learning rate set to {lr:.4g} ({where}).")
    return result


class _Sweep(Callback):
    """The trial's callback: sets each optimizer step's rate from the schedule and records the smoothed loss."""

    def __init__(self, rates: List[float], early_stop_threshold: Optional[float], culprit: str,
                 beta: float = 0.98) -> None:
        self.rates = rates
        self.threshold = early_stop_threshold
        self.culprit = culprit
        self.beta = beta
        #: The rate and smoothed loss of every optimizer step taken.
        self.lrs: List[float] = []
        self.losses: List[float] = []
        self.diverged = False
        self._average = 0.0
        self._best = math.inf
        self._group: List[float] = []  # losses of the batches accumulated into the coming step
        self._steps = 0
        self._rate = rates[0]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """One optimizer to sweep, or an error naming how many the module built."""
        count = len(trainer.optimizers)
        if count != 1:
            raise MisconfigurationException(
                f"{self.culprit} sweeps the learning rate of one optimizer, but {type(pl_module).__name__}."
                f"configure_optimizers built {count}. Tune a one-optimizer version of the model, or set the rates.")
        self._steps = trainer.global_step

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """Set every parameter group to this step's rate (after any scheduler of the model moved it)."""
        self._rate = self.rates[min(trainer.global_step, len(self.rates) - 1)]
        for group in optimizer.param_groups:
            group["lr"] = self._rate

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After a batch that stepped: record ``(rate, smoothed loss)``; stop when the loss diverges."""
        loss = _loss_of(outputs)
        if loss is not None:
            self._group.append(loss)
        if trainer.global_step == self._steps:
            return  # the batch only accumulated gradients (or was skipped): its step comes later
        self._steps = trainer.global_step
        raw = sum(self._group) / len(self._group) if self._group else math.nan
        self._group = []
        self._average = self.beta * self._average + (1 - self.beta) * raw
        smoothed = self._average / (1 - self.beta ** (len(self.losses) + 1))
        self.lrs.append(self._rate)
        self.losses.append(smoothed)
        if self.threshold is not None and len(self.losses) > 1 and not smoothed <= self.threshold * self._best:
            self.diverged = True  # above the threshold, or no longer finite
            trainer.should_stop = True
        if smoothed < self._best:
            self._best = smoothed


def _loss_of(outputs: Any) -> Optional[float]:
    """The loss of a training batch's outputs (a tensor, or a dict's ``'loss'``), as a float."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return float(loss.detach())
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    return None
