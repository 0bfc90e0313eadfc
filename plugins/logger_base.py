"""What every logger shares: the logging hooks, versioned directories, ``hparams.yaml``.

A logger is any plugin that implements one or more of the logging events:

* ``log_metrics(trainer, metrics, step)`` — plain floats at x-axis ``step``;
* ``log_hyperparams(trainer, params)`` — the module's hyperparameters, once at fit start;
* ``finalize_logging(trainer, status)`` — flush and close (``"success"``, ``"failed"``,
  ``"interrupted"``).

Implementations may leave out ``trainer`` (pluggy passes only the arguments a method
names), so a Lightning-style ``log_metrics(self, metrics, step)`` works. Subclasses of
:class:`Logger` get their overrides of these methods registered without ``@hookimpl``;
any other object passed as ``Trainer(logger=...)`` is wrapped by :func:`as_plugin`.

0.8/0.9's names for this module's contents (``pytorch_lightning.loggers.base``) are here too:
``LightningLoggerBase``, ``LoggerCollection``, ``rank_zero_experiment`` (from
:mod:`hookloop.plugins.seed_loggers`) and ``rank_zero_only``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Union

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.rank_zero import is_rank_zero, rank_zero_only

#: The events a logger implements.
LOGGER_HOOKS = ("log_metrics", "log_hyperparams", "finalize_logging")
HPARAMS_FILE = "hparams.yaml"
#: Joins a logger's ``prefix`` and a metric name (``prefix-name``), as in Lightning.
LOGGER_JOIN_CHAR = "-"
# Keys written unquoted in hparams.yaml; anything else is quoted.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


class Logger:
    """Base class for loggers: the logging hooks plus ``name``/``version``/``log_dir``/``experiment``.

    Override :meth:`log_metrics` and :meth:`log_hyperparams`; :meth:`finalize` runs when a
    run ends. Overrides are hook implementations automatically (no ``@hookimpl`` needed).
    """

    #: The logging events whose overrides in a subclass are registered as they are (see ``__init_subclass__``).
    _AUTO_HOOKS = LOGGER_HOOKS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls._AUTO_HOOKS:
            fn = cls.__dict__.get(name)
            if callable(fn) and not hasattr(fn, "engine_impl"):
                hookimpl(fn)

    #: Whether this process writes (set from the trainer's rank at ``setup``; else from the environment).
    _rank_zero: Optional[bool] = None

    @hookimpl
    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """Write ``metrics`` (name -> float) at x-axis ``step``."""

    @hookimpl
    def log_hyperparams(self, params: Any) -> None:
        """Write the hyperparameters (a dict or an ``argparse.Namespace``)."""

    @hookimpl
    def finalize_logging(self, status: str) -> None:
        """The run ended with ``status``: flush and close (calls :meth:`finalize`)."""
        self.finalize(status)

    def finalize(self, status: str) -> None:
        """Flush and close whatever is open; default: :meth:`save`."""
        self.save()

    def save(self) -> None:
        """Write what is buffered."""

    @hookimpl(specname="setup")
    def _bind_rank(self, trainer: Any) -> None:
        # Ranks are known once the environment is set up; remember whether this process writes.
        self._rank_zero = is_rank_zero(trainer)

    @property
    def rank_zero(self) -> bool:
        """True when this process writes (global rank zero)."""
        return self._rank_zero if self._rank_zero is not None else is_rank_zero()

    @property
    def name(self) -> str:
        """The experiment name (a directory under ``save_dir``)."""
        return ""

    @property
    def version(self) -> Union[int, str, None]:
        """The experiment version (``version_N`` directory), or ``None``."""
        return None

    @property
    def save_dir(self) -> Optional[str]:
        """Root directory of this logger's files, or ``None`` if it writes no files."""
        return None

    @property
    def log_dir(self) -> Optional[str]:
        """Directory of this run's files, or ``None``."""
        return None

    @property
    def experiment(self) -> Any:
        """The backend object (e.g. a ``SummaryWriter``) for direct use."""
        return DummyExperiment()


class DummyExperiment:
    """Accepts any call and does nothing (the experiment of non-zero ranks and of ``fast_dev_run``)."""

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return self._nothing

    def __getitem__(self, index: Any) -> "DummyExperiment":
        return self


class DummyLogger(Logger):
    """A logger that writes nothing; ``fast_dev_run`` uses it so ``self.logger.experiment`` still works."""

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """Do nothing."""

    @property
    def version(self) -> str:
        """Always ``""``."""
        return ""


class _LoggerAdapter:
    """Forwards the logging events to a duck-typed logger (``log_metrics(metrics, step)`` etc.)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.__engine_hooks__ = {h for h in LOGGER_HOOKS if h != "finalize_logging"
                                 and callable(getattr(logger, h, None))}
        if callable(getattr(logger, "finalize", None)) or callable(getattr(logger, "save", None)):
            self.__engine_hooks__.add("finalize_logging")

    @hookimpl
    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """Forward to ``logger.log_metrics(metrics, step)``."""
        self.logger.log_metrics(metrics, step)

    @hookimpl
    def log_hyperparams(self, params: Any) -> None:
        """Forward to ``logger.log_hyperparams(params)``."""
        self.logger.log_hyperparams(params)

    @hookimpl
    def finalize_logging(self, status: str) -> None:
        """Call ``logger.finalize(status)`` if it has one, else ``logger.save()``."""
        if callable(getattr(self.logger, "finalize", None)):
            self.logger.finalize(status)
        else:
            self.logger.save()


def as_plugin(logger: Any) -> Any:
    """The object to register for ``logger``: itself if it has hook implementations, else an adapter."""
    if any(hasattr(getattr(logger, h, None), "engine_impl") for h in LOGGER_HOOKS):
        return logger
    from hookloop.engine.callback import Callback

    if isinstance(logger, Callback):
        return logger
    if not any(callable(getattr(logger, h, None)) for h in LOGGER_HOOKS + ("finalize",)):
        raise MisconfigurationException(
            f"Trainer(logger=...) got a {type(logger).__name__}, which is no logger: it has none of "
            f"{', '.join(LOGGER_HOOKS)}. Pass True, False, a logger such as TensorBoardLogger/CSVLogger, "
            "or a list of them."
        )
    return _LoggerAdapter(logger)


def loggers_from_flag(trainer: Any) -> List[Any]:
    """The loggers ``Trainer(logger=...)`` asks for (``fast_dev_run`` gets one :class:`DummyLogger`)."""
    flag = trainer.logger_flag
    if flag is None or flag is False:
        return []
    if getattr(trainer, "fast_dev_run", 0):
        return [DummyLogger()]
    if flag is True:
        from hookloop.plugins.tensorboard import TensorBoardLogger

        return [TensorBoardLogger(save_dir=trainer.default_root_dir)]
    from hookloop.plugins.seed_loggers import LoggerCollection  # here: that module imports this one

    if isinstance(flag, (list, tuple, LoggerCollection)):  # a 0.8/0.9 LoggerCollection stands for its loggers
        return list(flag)
    return [flag]


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def next_version(root_dir: str) -> int:
    """One more than the highest ``version_N`` directory in ``root_dir`` (0 if none)."""
    try:
        names = os.listdir(root_dir)
    except FileNotFoundError:
        return 0
    found = [int(m.group(1)) for n in names
             if (m := re.fullmatch(r"version_(\d+)", n)) and os.path.isdir(os.path.join(root_dir, n))]
    return max(found) + 1 if found else 0


def hparams_dict(params: Any) -> Dict[str, Any]:
    """``params`` (dict, ``argparse.Namespace`` or mapping-like) as a plain dict."""
    if isinstance(params, argparse.Namespace):
        return dict(vars(params))
    if isinstance(params, Mapping):
        return dict(params)
    if params is None:
        return {}
    raise MisconfigurationException(
        f"log_hyperparams got a {type(params).__name__}; pass a dict or an argparse.Namespace."
    )


def flatten(params: Mapping[str, Any], sep: str = "/") -> Dict[str, Any]:
    """Nested dicts and Namespaces become ``parent/child`` keys."""
    flat: Dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            for sub, sub_value in flatten(value, sep).items():
                flat[f"{key}{sep}{sub}"] = sub_value
        else:
            flat[str(key)] = value
    return flat


def save_hparams_yaml(path: str, params: Mapping[str, Any]) -> None:
    """Write ``params`` to ``path`` as YAML (standard library only; readable by ``yaml.safe_load``)."""
    lines = _yaml_lines(dict(params), 0) if params else ["{}"]
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)  # never leave a half-written file behind


def _yaml_lines(value: Any, indent: int) -> List[str]:
    pad = " " * indent
    lines: List[str] = []
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, argparse.Namespace):
                item = vars(item)
            key = str(key)
            plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
            head = f"{pad}{key if plain else _yaml_scalar(key)}:"
            if isinstance(item, Mapping) and item:
                lines.append(head)
                lines.extend(_yaml_lines(item, indent + 2))
            elif isinstance(item, (list, tuple)) and item:
                lines.append(head)
                lines.extend(_yaml_lines(list(item), indent + 2))
            else:
                lines.append(f"{head} {_yaml_scalar(item)}")
        return lines
    for item in value:  # a non-empty list
        if isinstance(item, (Mapping, list, tuple)) and item:
            nested = _yaml_lines(item if not isinstance(item, tuple) else list(item), indent + 2)
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    # JSON strings are valid YAML double-quoted scalars; everything else is written by str().
    return json.dumps(value if isinstance(value, str) else str(value))


def add_prefix(metrics: Mapping[str, Any], prefix: str, sep: str = LOGGER_JOIN_CHAR) -> Dict[str, Any]:
    """A new dict of ``metrics`` with every name led by ``prefix`` and ``sep`` (``prefix-name``); the names as they
    are without a prefix."""
    if not prefix:
        return dict(metrics)
    return {f"{prefix}{sep}{key}": value for key, value in metrics.items()}


def logger_values(trainer: Any, metrics: Dict[str, Any]) -> Dict[str, float]:
    """``metrics`` as floats for ``log_metrics``, with ``'epoch'`` (the current one unless logged).

    As Lightning's ``LoggerConnector.log_metrics`` (``setdefault("epoch", ...)``): every row,
    step or epoch, carries the epoch, so a chart can be drawn against it.
    """
    values = {k: float(v) for k, v in metrics.items()}
    values.setdefault("epoch", float(trainer.current_epoch))
    return values


_SEED_NAMES = ("LightningLoggerBase", "LoggerCollection", "rank_zero_experiment")


def __getattr__(name: str) -> Any:
    # 0.8/0.9's names of ``pytorch_lightning.loggers.base``; their module imports this one, so they load on first use.
    if name in _SEED_NAMES:
        from hookloop.plugins import seed_loggers

        return getattr(seed_loggers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Logger", "DummyLogger", "DummyExperiment", "as_plugin", "loggers_from_flag", "next_version",
           "hparams_dict", "flatten", "save_hparams_yaml", "add_prefix", "logger_values", "rank_zero_only",
           "LOGGER_HOOKS", "LOGGER_JOIN_CHAR", "HPARAMS_FILE", *_SEED_NAMES]

