"""The one place that decides whether this process writes logs, draws bars and prints summaries.

Only global rank zero does such side effects. Plugins ask :func:`is_rank_zero`, or wrap a
method in :func:`rank_zero_only`, instead of testing ranks themselves.
"""
from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Set by launchers before a trainer exists (e.g. torchrun); the trainer's own rank wins when known.
_RANK_ENV = ("RANK", "SLURM_PROCID", "LOCAL_RANK")


def env_rank() -> int:
    """The global rank named by the environment (``RANK``, ``SLURM_PROCID``, ``LOCAL_RANK``), else 0."""
    for name in _RANK_ENV:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


def is_rank_zero(trainer: Optional[Any] = None) -> bool:
    """True in the process that writes logs: ``trainer.is_global_zero``, or rank 0 by the environment."""
    if trainer is not None:
        flag = getattr(trainer, "is_global_zero", None)
        if flag is not None:
            return bool(flag)
    return env_rank() == 0


def rank_zero_only(fn: F) -> F:
    """Decorator: run ``fn`` on global rank zero only; elsewhere it returns ``None``.

    If ``fn`` has a parameter named ``trainer``, that trainer's rank decides; otherwise the
    environment does. The signature is kept, so hook implementations may be decorated.
    """
    params = list(inspect.signature(fn).parameters)
    index = params.index("trainer") if "trainer" in params else None

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        trainer = kwargs.get("trainer")
        if trainer is None and index is not None and index < len(args):
            trainer = args[index]
        if not is_rank_zero(trainer):
            return None
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["is_rank_zero", "rank_zero_only", "env_rank"]
