"""Exceptions raised by hookloop, each meant to name the culprit and what to do."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


class MisconfigurationException(Exception):
    """A flag, a hook's return value or a plugin is configured wrongly.

    The message names what was wrong (the flag, the hook, the key, the plugin, the file)
    and what to do about it.
    """


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
