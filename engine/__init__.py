"""hookloop's engine: a tiny training loop that emits events through a pluggy registry.

The user API::

    from engine import Trainer, LightningModule, LightningDataModule, Callback, seed_everything
    from engine import hookimpl, hookspec
    from engine import TrainResult, EvalResult       # Lightning 0.9's Results API
    import engine.metrics                            # Lightning 0.9's metrics (through torchmetrics)

``engine`` is the short name of ``hookloop.engine`` (the same module; see ``hookloop/_names.py``).
"""
from hookloop._names import settle

settle(__name__)  # imported as ``engine``: that name now holds ``hookloop.engine``

from hookloop.engine.callback import Callback
from hookloop.engine.datamodule import LightningDataModule
from hookloop.engine.errors import MisconfigurationException, PluginError
from hookloop.engine.markers import hookimpl, hookspec
from hookloop.engine.module import LightningModule
from hookloop.engine.seed import seed_everything
from hookloop.engine.step_result import EvalResult, TrainResult
from hookloop.engine.trainer import Trainer

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
    "TrainResult",
    "EvalResult",
    "__version__",
]


def __getattr__(name: str):
    """``engine.metrics`` (0.9's ``pl.metrics``) is imported on first use: ``import engine`` stays as light."""
    if name == "metrics":
        import importlib

        return importlib.import_module("hookloop.engine.metrics")
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
