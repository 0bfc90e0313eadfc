"""``LearningRateMonitor`` (0.8/0.9: ``LearningRateLogger``): sends each optimizer's learning rate to the loggers.

Names follow Lightning 2.x: ``lr-<Optimizer class>`` (``lr-<Optimizer>-1``, ``-2``... for more of
the same class, optimizers with a scheduler numbered first; the scheduler config's ``name`` when
it has one), ``/pgN`` per parameter group when there are several, ``/<name>`` for a group that
has a ``name``; ``<that>-momentum`` with ``log_momentum``. A scheduler stepped per epoch is
logged at every epoch start, one stepped per optimizer step where step values are (every
``log_every_n_steps`` steps, at x = the step); an optimizer without a scheduler at both. Only the hooks the
configuration needs are registered: with ``logging_interval='epoch'`` nothing runs per batch.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import torch

from hookloop.engine import Callback
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.logger_base import logger_values
from hookloop.plugins.rank_zero import is_rank_zero


class LearningRateMonitor(Callback):
    """Log the learning rates (and optionally momenta) of the optimizers during ``fit``.

    Args:
        logging_interval: ``'step'`` or ``'epoch'`` to log every optimizer at that interval;
            ``None`` (default) logs each at its scheduler's interval.
        log_momentum: Also log ``momentum`` (or Adam's first beta) as ``<name>-momentum``.
    """

    def __init__(self, logging_interval: Optional[str] = None, log_momentum: bool = False) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException(
                f"LearningRateMonitor(logging_interval={logging_interval!r}): use 'step', 'epoch' or None.")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        #: ``(optimizer, name, interval)`` per optimizer; interval ``'step'``, ``'epoch'`` or ``'any'``.
        self._tracked: List[Tuple[Any, str, str]] = []
        self._logged_stretch = 0
        #: Every learning rate logged in this ``fit``, by name: ``{'lr-SGD': [0.1, 0.05]}`` (both eras keep it).
        self.lrs: Dict[str, List[float]] = {}
        #: The last momentum logged, by name (``'lr-SGD-momentum'``), with ``log_momentum``.
        self.last_momentum_values: Dict[str, Optional[float]] = {}
        hooks = {"on_train_start"}
        if logging_interval != "epoch":
            hooks.add("on_train_batch_start")
        if logging_interval != "step":
            hooks.add("on_train_epoch_start")
        self.__engine_hooks__ = hooks

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Name every optimizer once; a run without a logger is an error, as in Lightning."""
        if not trainer.loggers:
            raise MisconfigurationException(
                "LearningRateMonitor needs a logger: the Trainer has none (logger=False). Pass a logger, or remove "
                "the callback.")
        self._tracked = _name_optimizers(trainer)
        names = [key for optimizer, name, _ in self._tracked for key in self._optimizer_stats(optimizer, name)]
        self.lrs = {key: [] for key in names if not key.endswith("-momentum")}
        self.last_momentum_values = {key: None for key in names if key.endswith("-momentum")}
        self._logged_stretch = (trainer.global_step + 1) // trainer.log_every_n_steps if trainer.log_every_n_steps else 0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Every ``log_every_n_steps`` optimizer steps: the step-interval rates."""
        every = trainer.log_every_n_steps
        if not every:
            return
        # Once per stretch of ``every`` optimizer steps, at the steps step values go out (x = 1, 3, 5...
        # for every=2 and one step per batch); a batch that takes several steps (manual optimization of
        # two optimizers) logs when it enters a new stretch.
        stretch = (trainer.global_step + 1) // every
        if stretch > self._logged_stretch:
            self._logged_stretch = stretch
            self._log(trainer, "step")

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """At every epoch start: the epoch-interval rates."""
        self._log(trainer, "epoch")

    def _log(self, trainer: Any, event: str) -> None:
        stats: Dict[str, float] = {}
        for optimizer, name, interval in self._tracked:
            if self.logging_interval is None and interval not in (event, "any"):
                continue
            stats.update(self._optimizer_stats(optimizer, name))
        if not stats:
            return
        for key, value in stats.items():
            if key in self.last_momentum_values:
                self.last_momentum_values[key] = value
            else:
                self.lrs.setdefault(key, []).append(value)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in stats.items()})
        if is_rank_zero(trainer) and trainer.hooks.log_metrics is not None:
            trainer.hooks.log_metrics(trainer, logger_values(trainer, stats), trainer.global_step)

    def _optimizer_stats(self, optimizer: Any, name: str) -> Dict[str, float]:
        groups = optimizer.param_groups
        stats: Dict[str, float] = {}
        for i, group in enumerate(groups):
            label = group.get("name", f"pg{i + 1}") if len(groups) > 1 else group.get("name")
            key = f"{name}/{label}" if label else name
            stats[key] = float(group["lr"])
            if self.log_momentum:
                momentum = group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
                stats[f"{key}-momentum"] = float(momentum)
        return stats


def _name_optimizers(trainer: Any) -> List[Tuple[Any, str, str]]:
    """``(optimizer, name, interval)`` for every optimizer, named as Lightning names them."""
    intervals: Dict[int, str] = {}
    names: Dict[int, str] = {}
    for config in trainer.lr_scheduler_configs:
        scheduler = getattr(config, "scheduler", config)
        optimizer = getattr(scheduler, "optimizer", None)
        if optimizer is not None:
            intervals[id(optimizer)] = getattr(config, "interval", "epoch")
            if getattr(config, "name", None):
                names[id(optimizer)] = config.name
    optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]  # unwrapped
    # As Lightning: the optimizers of the schedulers are named first, then the others.
    ordered = [o for o in optimizers if id(o) in intervals] + [o for o in optimizers if id(o) not in intervals]
    seen: Counter = Counter()
    tracked = []
    for optimizer in ordered:
        name = names.get(id(optimizer))
        if name is None:
            kind = type(optimizer).__name__
            name = f"lr-{kind}" if not seen[kind] else f"lr-{kind}-{seen[kind]}"
            seen[kind] += 1
        tracked.append((optimizer, name, intervals.get(id(optimizer), "any")))
    return tracked


#: 0.8/0.9 name.
LearningRateLogger = LearningRateMonitor

__all__ = ["LearningRateMonitor", "LearningRateLogger"]
