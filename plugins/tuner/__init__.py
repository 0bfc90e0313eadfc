"""Tuning: the learning-rate sweep and the batch-size search, as Lightning's ``Tuner`` and callbacks.

::

    from plugins import Tuner, LearningRateFinder, BatchSizeFinder   # or: from plugins.tuner import ...

    result = Tuner(trainer).lr_find(model)        # LRFinderResult: .results, .suggestion(), .plot()
    size = Tuner(trainer).scale_batch_size(model, mode="binsearch")
    Trainer(callbacks=[LearningRateFinder(), BatchSizeFinder()]).fit(model)   # both at the start of fit

The seed era's ``Trainer(auto_lr_find=True)``, ``Trainer(auto_scale_batch_size=True)``,
``trainer.lr_find(model)`` and ``trainer.scale_batch_size(model)`` run the same searches.

Modules: ``tuning`` (``Tuner``), ``callbacks``, ``lr_finder`` and ``lr_result`` (the sweep and its result),
``batch_size`` (the search), ``trial`` (the silent trial runs and what they leave as it was),
``memory`` (out-of-memory errors), ``attributes`` (where a tuned value lives), ``seed_flags``.
"""
from hookloop.plugins.tuner.callbacks import BatchSizeFinder, LearningRateFinder
from hookloop.plugins.tuner.lr_result import LRFinderResult
from hookloop.plugins.tuner.memory import is_out_of_memory
from hookloop.plugins.tuner.tuning import Tuner

__all__ = ["Tuner", "LearningRateFinder", "BatchSizeFinder", "LRFinderResult", "is_out_of_memory"]
