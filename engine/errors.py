"""Exceptions raised by hookloop, each meant to name the culprit and what to do."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


class MisconfigurationException(Exception):
    """A flag, a hook's return value or a plugin is configured wrongly.

    The message names what was wrong (the flag, the hook, the key, the plugin, the file)
    and what to do about it.
    """


class FlagError(MisconfigurationException):
    """A Trainer flag has a value it cannot take; ``flag`` names it (the command line reports it as ``--flag``)."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag

    def __reduce__(self) -> tuple:  # picklable (ddp_spawn sends errors between processes)
        return (type(self), (self.flag, str(self)))


def check_int_flag(flag: str, value: object, minimum: int, meaning: str = "", none_ok: bool = False) -> None:
    """Raise :class:`FlagError` unless ``value`` is an int >= ``minimum`` (or ``None`` where ``none_ok``).

    A bool or a float (``max_epochs=2.5``) is refused too: an epoch or step count is a whole number.
    ``meaning`` is added to the message (e.g. ``"; -1 means no limit"``).
    """
    if value is None and none_ok:
        return
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = f"an int >= {minimum}" + (" or None" if none_ok else "")
        raise FlagError(flag, f"Trainer({flag}={value!r}): {flag} must be {allowed}{meaning}.")


class UnknownFlagError(MisconfigurationException, TypeError):
    """An argument no function of this name takes (a ``TypeError``, as Python's own), with the closest real one."""


class PluginError(MisconfigurationException):
    """A plugin could not be loaded or registered (bad entry point, hook typo, unknown name)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``' Did you mean `x`?'`` for the closest candidate, or ``''`` if none is close."""
    match = closest(name, candidates)
    return f" Did you mean `{match}`?" if match else ""


def closest(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate closest to ``name`` (difflib ratio >= 0.6), or ``None``."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None
