"""Helpers for the core's tests: a quiet Trainer, a callback that records every event, a recording logger,
a quiet fit for the logging tests and a plugin that makes the process rank 1."""
from __future__ import annotations

import inspect
from typing import Any, List, Tuple

from engine import Callback, Trainer, hookimpl

#: Events fired by the optimization plugin inside a training batch (their order is that plugin's business).
OPTIMIZATION_EVENTS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


def quiet_trainer(**flags: Any) -> Trainer:
    """A Trainer without logger, checkpoints, progress bar or summary: the core alone, fast."""
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    defaults.update(flags)
    return Trainer(**defaults)


def fit_for_logs(model: Any, **flags: Any) -> Trainer:
    """Fit ``model`` with ``flags`` (default: 2 epochs, no bar, summary, checkpoints or sanity check); the trainer."""
    flags.setdefault("max_epochs", 2)
    for flag in ("enable_progress_bar", "enable_model_summary", "enable_checkpointing"):
        flags.setdefault(flag, False)
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = Trainer(**flags)
    trainer.fit(model)
    return trainer


class SecondRank:
    """Makes this process global rank 1 (as a launcher would in the second process)."""

    @hookimpl(tryfirst=True)
    def setup_environment(self, trainer: Any) -> None:
        trainer.global_rank = 1


def _recorder(name: str) -> Any:
    """A method with exactly ``Callback.<name>``'s signature (pluggy reads argument names from it)."""
    signature = inspect.signature(getattr(Callback, name))
    params = list(signature.parameters)[1:]
    source = (f"def {name}(self, {', '.join(str(p) for p in list(signature.parameters.values())[1:])}):\n"
              f"    self.events.append(({name!r}, {{{', '.join(f'{p!r}: {p}' for p in params)}}}))\n")
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - builds a plain method from a known signature
    return namespace[name]


class Recorder(Callback):
    """Records ``(event, {argument: value})`` for every Callback event, in call order."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, dict]] = []

    def names(self, skip: Tuple[str, ...] = OPTIMIZATION_EVENTS) -> List[str]:
        """Event names in call order, without ``skip``."""
        return [name for name, _ in self.events if name not in skip]


for _name, _value in list(vars(Callback).items()):
    if _name.startswith("on_") or _name in ("setup", "teardown"):
        setattr(Recorder, _name, _recorder(_name))


class RecordingLogger:
    """A duck-typed logger keeping every ``log_metrics`` call as it came."""

    def __init__(self) -> None:
        self.rows: list = []

    def log_metrics(self, metrics: Any, step: int) -> None:
        self.rows.append((step, dict(metrics)))

    def with_key(self, key: str) -> list:
        """``(step, value)`` of every row holding ``key``."""
        return [(step, row[key]) for step, row in self.rows if key in row]
