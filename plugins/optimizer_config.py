"""What ``configure_optimizers`` may return, turned into optimizers and scheduler configs.

Every form Lightning accepts is understood:

* one optimizer, or a list/tuple of optimizers;
* ``([optimizers], [schedulers])`` — each scheduler a scheduler object or a scheduler dict;
* ``{'optimizer': opt, 'lr_scheduler': sched_or_dict, 'monitor': ..., 'frequency': n}``,
  or a list/tuple of such dicts (``frequency`` makes optimizers take turns, seed-era style);
* ``None`` (no optimizer: only ``training_step`` runs).

A scheduler dict holds ``scheduler`` and optionally ``interval`` (``'epoch'``/``'step'``),
``frequency``, ``monitor``, ``strict``, ``name`` and ``reduce_on_plateau``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from hookloop.engine.errors import MisconfigurationException

_SCHEDULER_KEYS = {"scheduler", "interval", "frequency", "monitor", "strict", "name", "reduce_on_plateau", "opt_idx"}
_OPTIMIZER_KEYS = {"optimizer", "lr_scheduler", "monitor", "frequency"}
_FORMS = ("an optimizer; a list of optimizers; ([optimizers], [schedulers]); "
          "{'optimizer': ..., 'lr_scheduler': ...}; or a list of such dicts")


@dataclass
class LRSchedulerConfig:
    """One learning-rate scheduler and when the trainer steps it.

    ``interval`` is ``'epoch'`` (step at the end of every ``frequency``-th epoch) or
    ``'step'`` (after every ``frequency``-th optimizer step). A ``reduce_on_plateau``
    scheduler steps with the value of ``monitor`` from ``trainer.callback_metrics``; if
    that metric is missing, ``strict=True`` raises and ``strict=False`` skips the step.
    """

    scheduler: Any
    name: Optional[str] = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: Optional[str] = None
    strict: bool = True

    def __getitem__(self, key: str) -> Any:
        """Seed era: the trainer's schedulers were dicts (``trainer.lr_schedulers[0]['scheduler']``)."""
        if key not in self.__dataclass_fields__:
            raise KeyError(f"{key!r}: a scheduler config has {sorted(self.__dataclass_fields__)}")
        return getattr(self, key)
    opt_idx: Optional[int] = None


@dataclass
class OptimizerSetup:
    """The normalised result of ``configure_optimizers``."""

    optimizers: List[Any]
    lr_scheduler_configs: List[LRSchedulerConfig]
    #: Per optimizer, how many consecutive batches it runs before the next takes over (empty: all every batch).
    frequencies: List[int]


def is_optimizer(obj: Any) -> bool:
    """True for a ``torch.optim.Optimizer`` or anything optimizer-like (has ``step``, ``zero_grad`` and ``param_groups``)."""
    return isinstance(obj, torch.optim.Optimizer) or (
        callable(getattr(obj, "step", None)) and callable(getattr(obj, "zero_grad", None))
        and hasattr(obj, "param_groups"))


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def scheduler_config(item: Any, monitor: Optional[str] = None, opt_idx: Optional[int] = None) -> LRSchedulerConfig:
    """Build an :class:`LRSchedulerConfig` from a scheduler object or a scheduler dict."""
    if isinstance(item, dict):
        if "scheduler" not in item:
            raise MisconfigurationException(
                f"A scheduler dict from `configure_optimizers` has no 'scheduler' key (it has {sorted(item)}). "
                "Write {'scheduler': your_scheduler, 'interval': 'epoch'}."
            )
        unknown = set(item) - _SCHEDULER_KEYS
        if unknown:
            raise MisconfigurationException(
                f"Unknown key(s) {sorted(unknown)} in a scheduler dict from `configure_optimizers`; "
                f"known keys are {sorted(_SCHEDULER_KEYS - {'opt_idx'})}."
            )
        interval = item.get("interval", "epoch")
        if interval not in ("epoch", "step"):
            raise MisconfigurationException(
                f"The scheduler dict's 'interval' must be 'step' or 'epoch', got {interval!r}."
            )
        frequency = item.get("frequency", 1)
        if not isinstance(frequency, int) or isinstance(frequency, bool) or frequency < 1:
            raise MisconfigurationException(f"The scheduler dict's 'frequency' must be an int >= 1, got {frequency!r}.")
        scheduler = item["scheduler"]
        plateau = item.get("reduce_on_plateau", _is_plateau(scheduler))
        mon = item.get("monitor", monitor)
        if plateau and mon is None:
            raise MisconfigurationException(
                "A ReduceLROnPlateau scheduler needs a metric to monitor: add 'monitor' to the scheduler dict, "
                "e.g. {'scheduler': scheduler, 'monitor': 'val_loss'}."
            )
        return LRSchedulerConfig(scheduler, item.get("name"), interval, frequency, bool(plateau), mon,
                                 bool(item.get("strict", True)), item.get("opt_idx", opt_idx))
    if not callable(getattr(item, "step", None)):
        raise MisconfigurationException(
            f"`configure_optimizers` returned a scheduler of type {type(item).__name__}, which has no `step()`; "
            "give a torch.optim.lr_scheduler object or a dict {'scheduler': ...}."
        )
    if _is_plateau(item):
        # Seed-era behaviour: a bare ReduceLROnPlateau watches 'val_loss'.
        return LRSchedulerConfig(item, reduce_on_plateau=True, monitor=monitor or "val_loss", opt_idx=opt_idx)
    return LRSchedulerConfig(item, opt_idx=opt_idx)


def _owner_index(scheduler: Any, optimizers: List[Any]) -> Optional[int]:
    owner = getattr(scheduler, "optimizer", None)
    for idx, opt in enumerate(optimizers):
        if opt is owner:
            return idx
    return None


def _from_dicts(dicts: List[Dict[str, Any]]) -> OptimizerSetup:
    optimizers: List[Any] = []
    configs: List[LRSchedulerConfig] = []
    frequencies: List[int] = []
    for idx, conf in enumerate(dicts):
        if "optimizer" not in conf:
            raise MisconfigurationException(
                f"An optimizer dict from `configure_optimizers` has no 'optimizer' key (it has {sorted(conf)})."
            )
        unknown = set(conf) - _OPTIMIZER_KEYS
        if unknown:
            raise MisconfigurationException(
                f"Unknown key(s) {sorted(unknown)} in an optimizer dict from `configure_optimizers`; "
                f"known keys are {sorted(_OPTIMIZER_KEYS)}."
            )
        optimizers.append(conf["optimizer"])
        if conf.get("lr_scheduler") is not None:
            configs.append(scheduler_config(conf["lr_scheduler"], conf.get("monitor"), idx))
        if conf.get("frequency") is not None:
            frequency = conf["frequency"]
            if not isinstance(frequency, int) or isinstance(frequency, bool) or frequency < 1:
                raise MisconfigurationException(
                    f"Optimizer {idx}'s 'frequency' must be an int >= 1, got {frequency!r}.")
            frequencies.append(frequency)
    if frequencies and len(frequencies) != len(optimizers):
        raise MisconfigurationException(
            "Either every optimizer dict from `configure_optimizers` has a 'frequency', or none does "
            f"({len(frequencies)} of {len(optimizers)} have one)."
        )
    return OptimizerSetup(optimizers, configs, frequencies if len(optimizers) > 1 else [])


def normalize_optimizers(config: Any) -> OptimizerSetup:
    """Turn what ``configure_optimizers`` returned into optimizers, scheduler configs and frequencies.

    A scheduler must have been built for the optimizer it is returned with (Lightning checks this
    too): one built for another optimizer would change that one's learning rate, silently.
    """
    setup = _normalize(config)
    _check_scheduler_owners(setup)
    return setup


def _check_scheduler_owners(setup: OptimizerSetup) -> None:
    """Raise if a scheduler's ``optimizer`` is not returned, or not the optimizer it is paired with."""
    for config in setup.lr_scheduler_configs:
        owner = getattr(config.scheduler, "optimizer", None)
        if owner is None:  # a custom scheduler that does not say which optimizer it steps
            continue
        name = type(config.scheduler).__name__
        index = _owner_index(config.scheduler, setup.optimizers)
        if index is None:
            raise MisconfigurationException(
                f"`configure_optimizers` returned a {name} scheduler built for an optimizer it did not return (a "
                f"{type(owner).__name__}); stepping it would change that optimizer's learning rate, not one that "
                f"trains. Build it with a returned optimizer: {name}(optimizer, ...)."
            )
        paired = config.opt_idx
        if paired is not None and paired != index and 0 <= paired < len(setup.optimizers):
            raise MisconfigurationException(
                f"`configure_optimizers` returned the {name} scheduler with optimizer {paired} "
                f"({type(setup.optimizers[paired]).__name__}), but it was built for optimizer {index} "
                f"({type(owner).__name__}). Return each scheduler with the optimizer it was built with."
            )


def _normalize(config: Any) -> OptimizerSetup:
    if config is None:
        warnings.warn("`configure_optimizers` returned None: this run trains with no optimizer.", UserWarning)
        return OptimizerSetup([], [], [])
    if is_optimizer(config):
        return OptimizerSetup([config], [], [])
    if isinstance(config, dict):
        return _from_dicts([config])
    if isinstance(config, (list, tuple)):
        items = list(config)
        if len(items) == 2 and isinstance(items[0], (list, tuple)) and all(is_optimizer(o) for o in items[0]):
            optimizers = list(items[0])
            scheds = items[1] if isinstance(items[1], (list, tuple)) else [items[1]]
            configs = []
            for s in scheds:
                conf = scheduler_config(s)
                if conf.opt_idx is None:
                    conf.opt_idx = _owner_index(conf.scheduler, optimizers)
                configs.append(conf)
            return OptimizerSetup(optimizers, configs, [])
        if items and all(isinstance(c, dict) for c in items):
            return _from_dicts(items)
        if items and all(is_optimizer(c) for c in items):
            return OptimizerSetup(items, [], [])
    raise MisconfigurationException(
        f"`configure_optimizers` returned {type(config).__name__}, which is not a form hookloop knows: {_FORMS}."
    )


def monitored_value(trainer: Any, config: LRSchedulerConfig) -> Optional[torch.Tensor]:
    """The value a plateau scheduler steps with; raises (``strict``) or returns ``None`` if it is missing."""
    metrics = trainer.state.callback_metrics
    value = metrics.get(config.monitor)
    if value is not None:
        return value
    if config.strict:
        raise MisconfigurationException(
            f"ReduceLROnPlateau monitors {config.monitor!r}, which is not among the logged metrics: "
            f"{sorted(metrics)}. Log it (e.g. self.log({config.monitor!r}, value) in validation_step), set the "
            "scheduler dict's 'monitor' to one of these, or pass 'strict': False to skip the step."
        )
    warnings.warn(f"ReduceLROnPlateau monitors {config.monitor!r}, which is not available; "
                  "'strict' is False, so this learning-rate update is skipped.", UserWarning)
    return None


def step_scheduler(trainer: Any, config: LRSchedulerConfig) -> None:
    """Step one scheduler through the ``lr_scheduler_step`` hook (the module's override, else
    :func:`default_scheduler_step`), with its monitored metric for ReduceLROnPlateau."""
    metric = None
    if config.reduce_on_plateau:
        metric = monitored_value(trainer, config)
        if metric is None:
            return
    hook = trainer.hooks.lr_scheduler_step
    if hook is None:  # no plugin steps schedulers (the optimization plugin is disabled)
        default_scheduler_step(config.scheduler, metric)
    else:
        hook(trainer, trainer.lightning_module, config.scheduler, metric, config.opt_idx)


def default_scheduler_step(scheduler: Any, metric: Any) -> None:
    """Lightning's default ``lr_scheduler_step``: ``scheduler.step()``, or ``scheduler.step(metric)`` with a metric."""
    if metric is None:
        scheduler.step()
    else:
        scheduler.step(metric)
