"""0.9's ``trainer.lr_find(model)`` and ``trainer.scale_batch_size(model)``, handed to the distribution's tuner.

The engine knows no tuning: these methods ask the built-in set for its tuner (see
:mod:`engine.builtins`) and call it as 0.9's methods behaved. ``lr_find`` returns the sweep's result
without setting the learning rate (0.9 left that to ``Trainer(auto_lr_find=True)``; read
``.suggestion()``); ``scale_batch_size`` sets the batch size found and returns it.
"""
from __future__ import annotations

from typing import Any, Optional

from hookloop.engine.builtins import provided
from hookloop.engine.errors import PluginError


class SeedTuningMethods:
    """Mixed into :class:`engine.Trainer`: the seed era's tuning methods."""

    def lr_find(self, model: Any, train_dataloader: Any = None, val_dataloaders: Any = None, min_lr: float = 1e-8,
                max_lr: float = 1.0, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: Optional[float] = 4.0, datamodule: Any = None, update_attr: bool = False) -> Any:
        """Seed era (0.9): sweep the learning rate; the same as ``Tuner(trainer).lr_find(model, ..., update_attr=False)``.

        Returns the result (``.results``, ``.suggestion()``, ``.plot()``); the model is as before.
        """
        return _tuner(self).lr_find(
            model, train_dataloaders=train_dataloader, val_dataloaders=val_dataloaders, datamodule=datamodule,
            min_lr=min_lr, max_lr=max_lr, num_training=num_training, mode=mode,
            early_stop_threshold=early_stop_threshold, update_attr=update_attr)

    def scale_batch_size(self, model: Any, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2,
                         max_trials: int = 25, batch_arg_name: str = "batch_size", train_dataloader: Any = None,
                         val_dataloaders: Any = None, datamodule: Any = None) -> Optional[int]:
        """Seed era (0.9): set ``batch_arg_name`` to the largest batch size that fits and return it.

        The same as ``Tuner(trainer).scale_batch_size(model, mode=mode, ...)``.
        """
        return _tuner(self).scale_batch_size(
            model, train_dataloaders=train_dataloader, val_dataloaders=val_dataloaders, datamodule=datamodule,
            mode=mode, steps_per_trial=steps_per_trial, init_val=init_val, max_trials=max_trials,
            batch_arg_name=batch_arg_name)


def _tuner(trainer: Any) -> Any:
    factory = provided().tuner
    if factory is None:
        raise PluginError("No tuner was provided to the engine (engine.builtins.provide(..., tuner=...)), so "
                          "trainer.lr_find()/trainer.scale_batch_size() cannot run.")
    return factory(trainer)
