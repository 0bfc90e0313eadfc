"""``Timer``: Lightning 2.x's timer callback, and what ``Trainer(max_time=...)`` registers (as ``timer``).

It records when each stage (``train``, ``validate``, ``test``, ``predict``) starts and ends, and with a
``duration`` it asks the trainer to stop once training has lasted that long, checked after every training
batch (``interval='step'``) or epoch (``'epoch'``), and once at fit start (a resumed run whose budget is already
spent stops at once). The training time spent before a resume travels in the checkpoint, so a resumed run keeps
the same total budget. Without a duration nothing runs per batch or epoch.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Dict, Optional

from hookloop.engine import Callback
from hookloop.engine.errors import FlagError, MisconfigurationException
from hookloop.plugins.rank_zero import is_rank_zero

#: The stages a Timer times, by Lightning's names (``RunningStage`` values).
STAGES = ("train", "sanity_check", "validate", "test", "predict")
INTERVALS = ("step", "epoch")


def parse_max_time(value: Any, flag: str = "max_time") -> Optional[float]:
    """Seconds from ``'DD:HH:MM:SS'``, a dict of ``timedelta`` arguments, a ``timedelta`` or a number.

    ``flag`` names the argument in errors (``max_time`` of the Trainer, ``duration`` of a Timer).
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, dict):
        try:
            seconds = timedelta(**value).total_seconds()
        except TypeError as exc:
            raise FlagError(
                flag, f"{flag}={value!r}: {exc}. Use timedelta's arguments, e.g. {{'hours': 1, 'minutes': 30}}."
            ) from exc
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise FlagError(
                flag, f"{flag}={value!r} is not 'DD:HH:MM:SS' (e.g. '00:12:00:00' for twelve hours)."
            )
        days, hours, minutes, secs = (int(p) for p in parts)
        seconds = timedelta(days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()
    else:
        raise FlagError(
            flag, f"{flag}={value!r} has type {type(value).__name__}; pass 'DD:HH:MM:SS', a dict, a timedelta or seconds."
        )
    if seconds <= 0:
        raise FlagError(flag, f"{flag}={value!r} must be a positive duration.")
    return seconds


class Timer(Callback):
    """Time the stages of a run and, with a ``duration``, stop training once it is spent.

    Args:
        duration: The training budget: ``'DD:HH:MM:SS'``, a ``timedelta``, a dict of ``timedelta`` arguments
            (``{'hours': 1}``) or seconds; ``None`` only times.
        interval: Check the budget after every training batch (``'step'``) or epoch (``'epoch'``).
        verbose: Say so when the budget is spent.

    ``timer.time_elapsed('train')``, ``time_remaining()``, ``start_time('validate')``, ``end_time('test')``
    read the clocks (seconds; ``time.monotonic`` for start and end times).
    """

    def __init__(self, duration: Any = None, interval: str = "step", verbose: bool = True) -> None:
        if interval not in INTERVALS:
            raise MisconfigurationException(f"Timer(interval={interval!r}): use one of {list(INTERVALS)}.")
        self._duration = parse_max_time(duration, "duration")
        self._interval = interval
        self._verbose = verbose
        self._start_time: Dict[str, Optional[float]] = {stage: None for stage in STAGES}
        self._end_time: Dict[str, Optional[float]] = {stage: None for stage in STAGES}
        self._offset = 0.0
        hooks = {f"on_{event}_{edge}" for event in ("train", "validation", "test", "predict") for edge in ("start", "end")}
        if self._duration is not None:  # only a budget costs anything per batch or epoch
            hooks.add("on_fit_start")
            hooks.add("on_train_batch_end" if interval == "step" else "on_train_epoch_end")
        self.__engine_hooks__ = hooks

    # ---- the clocks ------------------------------------------------------------------------
    def start_time(self, stage: str = "train") -> Optional[float]:
        """When ``stage`` last started (``time.monotonic()`` seconds), or ``None``."""
        return self._start_time[_stage(stage)]

    def end_time(self, stage: str = "train") -> Optional[float]:
        """When ``stage`` last ended, or ``None``."""
        return self._end_time[_stage(stage)]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds ``stage`` ran (still running: so far); training's includes the time before a resume."""
        stage = _stage(stage)
        start, end = self._start_time[stage], self._end_time[stage]
        offset = self._offset if stage == "train" else 0.0
        if start is None:
            return offset
        return (end if end is not None else time.monotonic()) - start + offset

    def time_remaining(self, stage: str = "train") -> Optional[float]:
        """Seconds left of the ``duration`` (``None`` without one)."""
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    # ---- hooks -------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Training starts."""
        self._start("train")

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Training ends."""
        self._end_time["train"] = time.monotonic()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """A validation (the sanity check's too, as in Lightning) starts."""
        self._start("validate")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """A validation ends."""
        self._end_time["validate"] = time.monotonic()

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """A test run starts."""
        self._start("test")

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        """A test run ends."""
        self._end_time["test"] = time.monotonic()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """A predict run starts."""
        self._start("predict")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        """A predict run ends."""
        self._end_time["predict"] = time.monotonic()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """A resumed run whose budget is already spent stops before its first batch."""
        self._check_time_remaining(trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """``interval='step'``: stop once the budget is spent (the loop honours min_epochs/min_steps)."""
        if self.time_elapsed() >= self._duration:
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """``interval='epoch'``: stop once the budget is spent."""
        self._check_time_remaining(trainer)

    def _start(self, stage: str) -> None:
        self._start_time[stage] = time.monotonic()
        self._end_time[stage] = None

    def _check_time_remaining(self, trainer: Any) -> None:
        if self._duration is not None and self.time_elapsed() >= self._duration:
            self._stop(trainer)

    def _stop(self, trainer: Any) -> None:
        # Under DDP the distributed plugin makes the ranks agree on a stop asked on any of them.
        if self._verbose and not trainer.should_stop and is_rank_zero(trainer):
            print(f"Time limit reached. Elapsed time is {timedelta(seconds=int(self.time_elapsed()))}. "
                  "Signaling Trainer to stop.")
        trainer.should_stop = True

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Seconds elapsed per stage (training's carries over to a resumed run)."""
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in STAGES}}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume the training budget where the checkpoint left it."""
        self._offset = float(state_dict.get("time_elapsed", {}).get("train", 0.0))


def _stage(stage: str) -> str:
    if stage not in STAGES:
        raise MisconfigurationException(f"Timer: {stage!r} is no stage; use one of {list(STAGES)}.")
    return stage


def timer_for(trainer: Any) -> Optional[Timer]:
    """The Timer ``Trainer(max_time=...)`` registers; ``None`` without one, or when ``callbacks`` hold a Timer."""
    if trainer.max_time is None:
        return None
    duration = parse_max_time(trainer.max_time)  # checked even when a Timer in callbacks wins
    if any(isinstance(c, Timer) for c in trainer.user_callbacks):
        print("[hookloop] Trainer(max_time=...) is ignored: callbacks=[...] already holds a Timer.")
        return None
    return Timer(duration=duration, interval="step", verbose=True)


__all__ = ["Timer", "parse_max_time", "timer_for"]
