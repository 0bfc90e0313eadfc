"""Built-in ``timer``: ``Trainer(max_time=...)`` stops training once the time budget is spent."""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Dict, Optional

from hookloop.engine import hookimpl
from hookloop.engine.errors import FlagError


def parse_max_time(value: Any) -> Optional[float]:
    """Seconds from ``'DD:HH:MM:SS'``, a dict of ``timedelta`` arguments, a ``timedelta`` or a number."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, dict):
        try:
            seconds = timedelta(**value).total_seconds()
        except TypeError as exc:
            raise FlagError(
                "max_time", f"max_time={value!r}: {exc}. Use timedelta's arguments, e.g. {{'hours': 1, 'minutes': 30}}."
            ) from exc
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise FlagError(
                "max_time", f"max_time={value!r} is not 'DD:HH:MM:SS' (e.g. '00:12:00:00' for twelve hours)."
            )
        days, hours, minutes, secs = (int(p) for p in parts)
        seconds = timedelta(days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()
    else:
        raise FlagError(
            "max_time", f"max_time={value!r} has type {type(value).__name__}; pass 'DD:HH:MM:SS', a dict, a timedelta or seconds."
        )
    if seconds <= 0:
        raise FlagError("max_time", f"max_time={value!r} must be a positive duration.")
    return seconds


class Timer:
    """Sets ``trainer.should_stop`` after a training batch once ``max_time`` has elapsed since fit started.

    Time already spent before a resume is carried in the checkpoint, so a resumed run
    keeps the same total budget.
    """

    def __init__(self, max_time: Any) -> None:
        self.limit = parse_max_time(max_time)
        self._start: Optional[float] = None
        self._spent_before = 0.0

    def elapsed(self) -> float:
        """Seconds of training so far, earlier runs of a resumed fit included."""
        running = time.monotonic() - self._start if self._start is not None else 0.0
        return self._spent_before + running

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        """Start the clock."""
        self._start = time.monotonic()

    @hookimpl
    def on_train_batch_end(self, trainer: Any) -> None:
        """Ask the loop to stop once the budget is spent (the loop honours min_epochs/min_steps)."""
        if self.elapsed() >= self.limit:
            trainer.should_stop = True

    @hookimpl
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Carry the time spent so far."""
        checkpoint["timer_elapsed_seconds"] = self.elapsed()

    @hookimpl
    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Resume the budget where the checkpoint left it."""
        self._spent_before = float(checkpoint.get("timer_elapsed_seconds", 0.0))
