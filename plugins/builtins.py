"""The built-in plugin set as the engine asks for it (see :mod:`hookloop.engine.builtins`)."""
from __future__ import annotations

from hookloop.engine.builtins import provide
from hookloop.plugins.checkpoint_io import load_module_from_checkpoint
from hookloop.plugins.defaults import default_plugins
from hookloop.plugins.tuner.tuning import Tuner


def install_builtins() -> None:
    """Hand this package's default plugins, checkpoint loader and tuner to the engine."""
    provide(default_plugins=default_plugins, load_from_checkpoint=load_module_from_checkpoint, tuner=Tuner)
