"""The built-ins that report on a run — loggers, progress bar, model summary — built from the trainer's flags.

Also sets ``trainer.loggers`` and, for several loggers, ``trainer.combined_logger`` (their
``LoggerCollection``), so ``trainer.logger`` and ``module.logger`` work from the moment the
trainer exists. Names: ``logger`` (then ``logger_1``, ...), ``progress_bar``,
``model_summary``; each can be removed with ``Trainer(disable_plugins=[...])``.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from hookloop.plugins.logger_base import DummyLogger, as_plugin, loggers_from_flag
from hookloop.plugins.progress import TQDMProgressBar
from hookloop.plugins.seed_loggers import combined_logger
from hookloop.plugins.summary import ModelSummary, max_depth_for


def reporting_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``(name, plugin)`` for the loggers, progress bar and model summary ``trainer``'s flags ask for."""
    plugins: List[Tuple[str, Any]] = []
    disabled = getattr(trainer, "disabled_plugins", frozenset())
    named = [("logger" if i == 0 else f"logger_{i}", logger) for i, logger in enumerate(loggers_from_flag(trainer))]
    # A logger removed with disable_plugins=[...] must not linger in trainer.loggers either
    # (the Trainer itself leaves the disabled plugin unregistered).
    trainer.loggers = [logger for name, logger in named if name not in disabled]
    trainer.combined_logger = combined_logger(trainer)
    for name, logger in named:
        if not isinstance(logger, DummyLogger):  # fast_dev_run: nothing to call
            plugins.append((name, as_plugin(logger)))
    user = list(getattr(trainer, "user_callbacks", []))
    if trainer.enable_progress_bar and not any(isinstance(c, TQDMProgressBar) for c in user):
        plugins.append(("progress_bar", TQDMProgressBar(trainer.progress_bar_refresh_rate, trainer.process_position)))
    if trainer.enable_model_summary and not any(isinstance(c, ModelSummary) for c in user):
        plugins.append(("model_summary", ModelSummary(max_depth_for(trainer.weights_summary))))
    return plugins


__all__ = ["reporting_plugins"]
