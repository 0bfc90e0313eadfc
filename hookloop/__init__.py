"""hookloop: an event-driven training engine for PyTorch.

This package is the distribution's own import name. It puts the engine (``hookloop.engine``,
the ``engine/`` directory) together with its built-in plugins (``hookloop.plugins``, the
``plugins/`` directory): the engine imports no plugin, it is handed the built-in set here.

Users import the short names, ``from engine import Trainer`` and ``from plugins import
ModelCheckpoint``, which are the same modules (see :mod:`hookloop._names`). Where a project
has its own ``engine.py`` or ``plugins/`` next to its scripts, the same API is here::

    from hookloop import Trainer, LightningModule
    from hookloop.plugins import ModelCheckpoint
"""
from hookloop import _names

_names.install()

from hookloop import engine, plugins  # noqa: E402  (after the finder that locates them)
from hookloop.engine import *  # noqa: E402,F401,F403  (the user API)
from hookloop.engine import __all__ as _engine_api  # noqa: E402
from hookloop.engine import __version__  # noqa: E402,F401
from hookloop.plugins.builtins import install_builtins  # noqa: E402

install_builtins()

__all__ = [*_engine_api, "engine", "plugins"]
