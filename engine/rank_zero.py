"""The one place that decides whether this process writes logs, draws bars, prints and warns.

Only global rank zero does such side effects. Code asks :func:`is_rank_zero`, or wraps a
function in :func:`rank_zero_only`, instead of testing ranks itself; :func:`rank_zero_info`,
:func:`rank_zero_warn`, :func:`rank_zero_debug` and :func:`rank_zero_deprecation` report on rank
zero only (Lightning's ``lightning.pytorch.utilities.rank_zero``).

The rank comes from, in order: the ``trainer`` a wrapped function is given, ``rank_zero_only.rank``
once something set it (the distributed plugin does when the process joins its group), and the
launcher's environment (``RANK``, ``SLURM_PROCID``, ``LOCAL_RANK``).
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import warnings
from typing import Any, Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Set by launchers before a trainer exists (e.g. torchrun); the trainer's own rank wins when known.
_RANK_ENV = ("RANK", "SLURM_PROCID", "LOCAL_RANK")

#: Where :func:`rank_zero_info` and :func:`rank_zero_debug` write (``hookloop.engine.rank_zero``).
log = logging.getLogger(__name__)


def env_rank() -> int:
    """The global rank named by the environment (``RANK``, ``SLURM_PROCID``, ``LOCAL_RANK``), else 0."""
    for name in _RANK_ENV:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


class _RankZeroOnly:
    """``rank_zero_only(fn)``: ``fn`` runs on global rank zero only; elsewhere it returns ``default``.

    If ``fn`` has a parameter named ``trainer``, that trainer's rank decides; otherwise
    ``rank_zero_only.rank`` does. The signature is kept, so hook implementations may be decorated.
    ``rank_zero_only.rank`` reads as Lightning's: this process's global rank (assign it to decide
    for every wrapped function; until then the environment's rank).
    """

    def __init__(self) -> None:
        self._rank: Optional[int] = None

    @property
    def rank(self) -> int:
        """This process's global rank: the one assigned, else the environment's."""
        return self._rank if self._rank is not None else env_rank()

    @rank.setter
    def rank(self, value: Optional[int]) -> None:
        self._rank = None if value is None else int(value)

    def __call__(self, fn: F, default: Any = None) -> F:
        params = list(inspect.signature(fn).parameters)
        index = params.index("trainer") if "trainer" in params else None

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            trainer = kwargs.get("trainer")
            if trainer is None and index is not None and index < len(args):
                trainer = args[index]
            if not is_rank_zero(trainer):
                return default
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


rank_zero_only = _RankZeroOnly()


def is_rank_zero(trainer: Optional[Any] = None) -> bool:
    """True in the process that writes logs: ``trainer.is_global_zero``, else ``rank_zero_only.rank == 0``."""
    if trainer is not None:
        flag = getattr(trainer, "is_global_zero", None)
        if flag is not None:
            return bool(flag)
    return rank_zero_only.rank == 0


# The ``stacklevel`` defaults point at the caller of these functions (past the rank_zero_only wrapper).
@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 3, **kwargs: Any) -> None:
    """``logging.debug`` on rank zero, through the ``hookloop.engine.rank_zero`` logger."""
    log.debug(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_info(*args: Any, stacklevel: int = 3, **kwargs: Any) -> None:
    """``logging.info`` on rank zero, through the ``hookloop.engine.rank_zero`` logger (shown by default)."""
    log.info(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_warn(message: Any, stacklevel: int = 3, **kwargs: Any) -> None:
    """``warnings.warn(message, **kwargs)`` on rank zero (``category=`` as for ``warnings.warn``)."""
    warnings.warn(message, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_deprecation(message: Any, stacklevel: int = 3, **kwargs: Any) -> None:
    """A ``DeprecationWarning`` on rank zero."""
    kwargs.setdefault("category", DeprecationWarning)
    warnings.warn(message, stacklevel=stacklevel, **kwargs)


def _show_info_by_default() -> None:
    """As Lightning does for its own logger: INFO messages reach stderr unless logging is configured.

    Only when nothing configured logging (no handler on the root logger): then hookloop's logger gets
    a stream handler of its own; otherwise its records go to the application's handlers.
    """
    package = logging.getLogger("hookloop")
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    if not logging.getLogger().hasHandlers() and not package.handlers:
        package.addHandler(logging.StreamHandler())
        package.propagate = False


_show_info_by_default()

__all__ = ["is_rank_zero", "rank_zero_only", "env_rank", "rank_zero_debug", "rank_zero_info", "rank_zero_warn",
           "rank_zero_deprecation"]
