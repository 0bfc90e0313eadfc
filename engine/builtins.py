"""What the engine asks of its built-in plugin set, which it never imports.

The dependency runs one way: ``plugins/`` imports ``engine/``, never the reverse. The engine still
needs a few things from the built-ins, and the distribution hands them over when ``hookloop`` is
imported (``hookloop/__init__.py``), which happens before any engine module runs:

* ``default_plugins(trainer)`` — the ``(name, plugin)`` pairs a new ``Trainer`` registers in the
  ``builtin`` tier, built from its flags;
* ``load_from_checkpoint(cls, path, map_location, strict, **overrides)`` — what
  ``LightningModule.load_from_checkpoint`` does (the file format belongs to the plugin that writes it);
* optionally ``tuner(trainer)`` — an object with ``lr_find`` and ``scale_batch_size``, for the seed
  era's ``trainer.lr_find(model)`` and ``trainer.scale_batch_size(model)``.

Another distribution can build on the same engine with its own set by calling :func:`provide`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

#: ``trainer -> [(name, plugin), ...]``, from the plugin called last to the one called first.
DefaultPlugins = Callable[[Any], List[Tuple[str, Any]]]


@dataclass
class Builtins:
    """The built-in set's entry points (``None`` until the distribution provides them)."""

    default_plugins: Optional[DefaultPlugins] = None
    load_from_checkpoint: Optional[Callable[..., Any]] = None
    tuner: Optional[Callable[[Any], Any]] = None


_PROVIDED = Builtins()


def provide(default_plugins: DefaultPlugins, load_from_checkpoint: Callable[..., Any],
            tuner: Optional[Callable[[Any], Any]] = None) -> None:
    """Hand the engine its built-in set (``hookloop/__init__.py`` does, at import)."""
    _PROVIDED.default_plugins = default_plugins
    _PROVIDED.load_from_checkpoint = load_from_checkpoint
    _PROVIDED.tuner = tuner


def provided() -> Builtins:
    """The built-in set; an error that says what to import when nothing provided it."""
    if _PROVIDED.default_plugins is None or _PROVIDED.load_from_checkpoint is None:
        raise RuntimeError(
            "hookloop's built-in plugins were not provided to the engine. Import the engine as `engine` or "
            "`hookloop` (not by its file path), which loads them, or call engine.builtins.provide(...).")
    return _PROVIDED
