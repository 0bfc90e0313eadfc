"""hookloop's engine: a tiny training loop that emits events through a pluggy registry.

The user API::

    from engine import Trainer, LightningModule, LightningDataModule, Callback, seed_everything
    from engine import hookimpl, hookspec
"""
from engine.callback import Callback
from engine.datamodule import LightningDataModule
from engine.errors import MisconfigurationException, PluginError
from engine.markers import hookimpl, hookspec
from engine.module import LightningModule
from engine.seed import seed_everything
from engine.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "Trainer",
    "LightningModule",
    "LightningDataModule",
    "Callback",
    "seed_everything",
    "hookimpl",
    "hookspec",
    "MisconfigurationException",
    "PluginError",
    "__version__",
]
