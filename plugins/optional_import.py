"""Packages some plugins need but hookloop does not depend on (wandb, mlflow): found early, imported late.

A plugin calls :func:`require` when it is created, so a missing package is an error at once,
naming what to install; it calls :func:`load` when it first needs the package, so importing
``plugins`` (or creating a ``Trainer``) never imports it.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def _missing(module: str, user: str, install: str) -> ModuleNotFoundError:
    error = ModuleNotFoundError(f"{user} needs the `{module}` package, which is not installed: pip install {install}")
    error.name = module
    return error


def require(module: str, user: str, install: str = "") -> None:
    """Raise ``ModuleNotFoundError`` naming ``user`` and what to ``pip install`` unless ``module`` can be imported.

    Only looks the module up (nothing is imported); ``install`` defaults to ``module``.
    """
    if importlib.util.find_spec(module) is None:
        raise _missing(module, user, install or module)


def load(module: str, user: str, install: str = "") -> ModuleType:
    """Import ``module`` for ``user``; if it is missing, the error says what to ``pip install``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the package is there, one of its own imports failed: keep that error
            raise
        raise _missing(module, user, install or module) from exc


__all__ = ["require", "load"]
