"""0.8/0.9's logger API: ``LightningLoggerBase``, ``LoggerCollection`` and ``rank_zero_experiment``.

A 0.9 logger subclasses :class:`LightningLoggerBase` and implements ``experiment``,
``log_metrics(metrics, step)``, ``log_hyperparams(params)``, ``name`` and ``version``
(optionally ``save()`` and ``finalize(status)``), often decorating them with
``@rank_zero_only``. It is called as 0.9's trainer called it: metrics go through
``agg_and_log_metrics`` (values of one step merged into one ``log_metrics`` call) and then
``save()``, on global rank zero; hyperparameters (an attribute dict) are followed by ``save()``;
``finalize("success"|"failed"|"interrupted")`` ends each run.

``Trainer(logger=[a, b])`` makes ``trainer.logger`` a :class:`LoggerCollection` (0.9's
``trainer.logger.experiment[0]`` is ``a``'s experiment) while ``trainer.loggers`` stays the
list (2.x). The collection passes anything it does not define to its first logger, so 2.x
code reading ``trainer.logger.log_dir`` or calling ``trainer.logger.experiment.add_image``
with several loggers gets the first one's, as in 2.x.
"""
from __future__ import annotations

import functools
import statistics
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from hookloop.engine import hookimpl
from hookloop.engine.module import AttributeDict
from hookloop.plugins.logger_base import DummyExperiment, Logger, flatten, hparams_dict
from hookloop.plugins.rank_zero import is_rank_zero

#: How values logged twice at one step are merged: a function of the list of values.
AggregateFn = Callable[[Sequence[float]], float]


def merge_dicts(dicts: Sequence[Mapping[str, Any]], agg_key_funcs: Optional[Mapping[str, AggregateFn]] = None,
                default_func: AggregateFn = statistics.fmean) -> Dict[str, Any]:
    """One dict from several: each key's values (``None`` left out) merged by ``agg_key_funcs[key]``, else
    ``default_func``."""
    funcs = agg_key_funcs or {}
    keys = list(dict.fromkeys(key for d in dicts for key in d))
    return {key: funcs.get(key, default_func)([d[key] for d in dicts if d.get(key) is not None]) for key in keys}


def rank_zero_experiment(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorator for a logger's ``experiment`` property: the real experiment on global rank zero; elsewhere, or
    when ``fn`` returns ``None``, a :class:`~hookloop.plugins.logger_base.DummyExperiment` (accepts any call)."""

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        zero = self.rank_zero if isinstance(self, Logger) else is_rank_zero()
        result = fn(self) if zero else None
        return result if result is not None else DummyExperiment()

    return experiment


class LightningLoggerBase(Logger, ABC):
    """0.8/0.9's base class of loggers (``pytorch_lightning.loggers.LightningLoggerBase``).

    Implement ``experiment``, ``log_metrics``, ``log_hyperparams``, ``name`` and ``version``;
    override ``save``/``finalize`` if the logger buffers (call ``super().save()``: it sends the
    values still being merged).

    Args:
        agg_key_funcs: Metric name -> function merging the values logged for it at one step.
        agg_default_func: Merges the values of any other metric (default: the mean).
    """

    # ``log_metrics``/``log_hyperparams`` overrides are not hooks: the hooks below call them as 0.9's trainer did.
    _AUTO_HOOKS = ("finalize_logging",)

    def __init__(self, agg_key_funcs: Optional[Mapping[str, AggregateFn]] = None,
                 agg_default_func: AggregateFn = statistics.fmean) -> None:
        self._agg_key_funcs: Dict[str, AggregateFn] = dict(agg_key_funcs or {})
        self._agg_default_func = agg_default_func

    # ---- what a subclass implements ---------------------------------------------------------
    @property
    @abstractmethod
    def experiment(self) -> Any:
        """The backend object of this logger."""

    @abstractmethod
    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        """Write ``metrics`` (name -> float) at ``step`` now."""

    @abstractmethod
    def log_hyperparams(self, params: Any) -> None:
        """Write the hyperparameters (an attribute dict: ``params.lr`` and ``params['lr']`` both work)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The experiment name."""

    @property
    @abstractmethod
    def version(self) -> Union[int, str]:
        """The experiment version."""

    # ---- how the trainer calls it (0.9's order) ---------------------------------------------
    @hookimpl(specname="log_metrics")
    def _deliver_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if self.rank_zero:
            self.agg_and_log_metrics(metrics, step)
            self.save()

    @hookimpl(specname="log_hyperparams")
    def _deliver_hyperparams(self, params: Any) -> None:
        self.log_hyperparams(AttributeDict(params) if isinstance(params, Mapping) else params)
        self.save()

    @hookimpl
    def finalize_logging(self, status: str) -> None:
        """The run ended: send the values still being merged, then :meth:`finalize`."""
        self._send_merged()
        self.finalize(status)

    # ---- merging the values of one step -----------------------------------------------------
    def update_agg_funcs(self, agg_key_funcs: Optional[Mapping[str, AggregateFn]] = None,
                         agg_default_func: Optional[AggregateFn] = statistics.fmean) -> None:
        """Change how values of one step are merged (see the class arguments)."""
        funcs = self.__dict__.setdefault("_agg_key_funcs", {})
        funcs.update(agg_key_funcs or {})
        if agg_default_func is not None:
            self._agg_default_func = agg_default_func

    def agg_and_log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        """Gather ``metrics`` for ``step``; once another step comes (or :meth:`save`), log that step's merged values."""
        if step != self.__dict__.get("_agg_step"):
            self._send_merged()
            self._agg_step = step
        self.__dict__.setdefault("_agg_pending", []).append(dict(metrics))

    def _send_merged(self) -> None:
        # Subclasses need not call __init__ (0.9's examples do not), so the state lives in __dict__ with defaults.
        pending: List[Dict[str, float]] = self.__dict__.pop("_agg_pending", [])
        if not pending:
            return
        merged = pending[0] if len(pending) == 1 else merge_dicts(
            pending, self.__dict__.get("_agg_key_funcs"), self.__dict__.get("_agg_default_func", statistics.fmean))
        self.log_metrics(merged, self.__dict__.get("_agg_step"))

    def save(self) -> None:
        """Write what is buffered; here: log the values still being merged."""
        self._send_merged()

    def close(self) -> None:
        """Clean up at the end of an experiment (default: :meth:`save`)."""
        self.save()

    # ---- helpers 0.9 subclasses call ----------------------------------------------------------
    @staticmethod
    def _convert_params(params: Any) -> Dict[str, Any]:
        """``params`` (dict, ``argparse.Namespace`` or ``None``) as a dict."""
        return hparams_dict(params)

    @staticmethod
    def _flatten_dict(params: Mapping[str, Any], delimiter: str = "/") -> Dict[str, Any]:
        """Nested dicts as ``parent/child`` keys; ``None`` becomes ``'None'`` (as in 0.9)."""
        return {key: "None" if value is None else value for key, value in flatten(params, delimiter).items()}

    @staticmethod
    def _sanitize_params(params: Dict[str, Any]) -> Dict[str, Any]:
        """Values other than bool, int, float, str and tensors as their ``str``."""
        import torch

        kept = (bool, int, float, str, torch.Tensor)
        return {key: value if isinstance(value, kept) else str(value) for key, value in params.items()}


class LoggerExperiments(list):
    """The experiments of a collection's loggers, in order: ``experiment[0]`` is the first logger's.

    An attribute that no list has is the first experiment's, so
    ``trainer.logger.experiment.add_histogram(...)`` works with several loggers as in 2.x.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not self:
            raise AttributeError(name)
        return getattr(self[0], name)


class LoggerCollection(LightningLoggerBase):
    """Several loggers as one (0.8/0.9): every call goes to each logger, in order.

    ``collection[i]`` is the i-th logger and ``collection.experiment[i]`` its experiment;
    ``name``/``version`` join the loggers' distinct names/versions with ``_``. Anything else
    (``log_dir``, ``save_dir``, ``log_image``...) is the first logger's.

    Args:
        logger_iterable: The loggers (any iterable; it is iterated at each use).
    """

    def __init__(self, logger_iterable: Iterable[Any]) -> None:
        super().__init__()
        self._logger_iterable = logger_iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._logger_iterable)

    def __len__(self) -> int:
        return len(list(self._logger_iterable))

    def __getitem__(self, index: int) -> Any:
        return list(self._logger_iterable)[index]

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the collection lacks; private ones stay missing (pickling, copying).
        if name.startswith("_"):
            raise AttributeError(name)
        loggers = list(self.__dict__.get("_logger_iterable", ()))
        if not loggers:
            raise AttributeError(f"LoggerCollection has no attribute {name!r} (and no logger to take it from)")
        return getattr(loggers[0], name)

    @property
    def experiment(self) -> LoggerExperiments:
        """Each logger's experiment, in order."""
        return LoggerExperiments(logger.experiment for logger in self)

    def agg_and_log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        """Each logger's ``agg_and_log_metrics`` (its ``log_metrics`` if it has none)."""
        for logger in self:
            getattr(logger, "agg_and_log_metrics", logger.log_metrics)(metrics, step)

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        """Each logger's ``log_metrics``."""
        for logger in self:
            logger.log_metrics(metrics, step)

    def log_hyperparams(self, params: Any) -> None:
        """Each logger's ``log_hyperparams``."""
        for logger in self:
            logger.log_hyperparams(params)

    def update_agg_funcs(self, agg_key_funcs: Optional[Mapping[str, AggregateFn]] = None,
                         agg_default_func: Optional[AggregateFn] = statistics.fmean) -> None:
        """Each 0.9 logger's ``update_agg_funcs``."""
        for logger in self:
            if hasattr(logger, "update_agg_funcs"):
                logger.update_agg_funcs(agg_key_funcs, agg_default_func)

    def save(self) -> None:
        """Each logger's ``save``."""
        for logger in self:
            if hasattr(logger, "save"):
                logger.save()

    def finalize(self, status: str) -> None:
        """Each logger's ``finalize``."""
        for logger in self:
            if hasattr(logger, "finalize"):
                logger.finalize(status)

    def close(self) -> None:
        """Each logger's ``close`` (or ``save``)."""
        for logger in self:
            getattr(logger, "close", getattr(logger, "save", lambda: None))()

    @property
    def name(self) -> str:
        """The loggers' distinct names joined with ``_``."""
        return "_".join(dict.fromkeys(str(logger.name) for logger in self))

    @property
    def version(self) -> str:
        """The loggers' distinct versions joined with ``_``."""
        return "_".join(dict.fromkeys(str(logger.version) for logger in self))

    @property
    def save_dir(self) -> Optional[str]:
        """The first logger's ``save_dir``."""
        return next((getattr(logger, "save_dir", None) for logger in self), None)

    @property
    def log_dir(self) -> Optional[str]:
        """The first logger's ``log_dir`` (where ``trainer.log_dir`` and the default checkpoints point)."""
        return next((getattr(logger, "log_dir", None) for logger in self), None)


class _TrainerLoggers:
    """``trainer.loggers`` as they are at each iteration, so ``trainer.logger`` follows a reassigned list."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def __iter__(self) -> Iterator[Any]:
        return iter(self.trainer.loggers)


def combined_logger(trainer: Any) -> LoggerCollection:
    """What ``trainer.logger`` is with several loggers: the ``LoggerCollection`` passed as
    ``Trainer(logger=...)``, else one over ``trainer.loggers``."""
    flag = getattr(trainer, "logger_flag", None)
    return flag if isinstance(flag, LoggerCollection) else LoggerCollection(_TrainerLoggers(trainer))


__all__ = ["LightningLoggerBase", "LoggerCollection", "LoggerExperiments", "rank_zero_experiment", "merge_dicts",
           "combined_logger"]
