"""``LearningRateFinder`` and ``BatchSizeFinder``: Lightning 2.x's tuning callbacks.

Both search in ``setup`` — at the start of ``fit`` (the batch-size finder also of ``validate``,
``test`` and ``predict``), before the module's and the datamodule's ``setup`` and before the
optimizers and dataloaders are built, so ``configure_optimizers`` reads the rate found and the
dataloaders are built with the batch size found. The search runs its trials on a separate trainer
(see :mod:`plugins.tuner.trial`), so the other callbacks, the loggers and the checkpoints never see
it, and the model's weights are put back before training starts. A subclass that searches at
another time overrides ``setup`` and calls :meth:`LearningRateFinder.lr_find` /
:meth:`BatchSizeFinder.scale_batch_size` from the hook it likes.
"""
from __future__ import annotations

from typing import Any, Optional

from hookloop.engine import hookimpl
from hookloop.engine.callback import Callback
from hookloop.plugins.tuner.batch_size import check_batch_size_args, scale_batch_size
from hookloop.plugins.tuner.lr_finder import check_lr_find_args, lr_find
from hookloop.plugins.tuner.lr_result import LRFinderResult
from hookloop.plugins.tuner.trial import given_loaders


class LearningRateFinder(Callback):
    """Sweeps the learning rate at the start of ``fit`` and sets the suggested one (Lightning 2.x's callback).

    Args:
        min_lr: The first rate of the sweep.
        max_lr: The last rate of the sweep.
        num_training_steps: Optimizer steps of the sweep (one rate each).
        mode: ``'exponential'`` (rates evenly spaced on a log scale) or ``'linear'``.
        early_stop_threshold: Stop once the smoothed loss exceeds this many times the best one (``None``: never).
        update_attr: Write the suggestion to the model's learning-rate attribute.
        attr_name: That attribute (in the model, ``model.hparams`` or the datamodule); default ``lr`` or
            ``learning_rate``.

    After the search, ``optimal_lr`` holds the :class:`~plugins.tuner.LRFinderResult`
    (``optimal_lr.suggestion()``, ``optimal_lr.plot()``).
    """

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1.0, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: Optional[float] = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        self._mode = check_lr_find_args(self._culprit(), min_lr, max_lr, num_training_steps, mode, early_stop_threshold)
        self._min_lr = min_lr
        self._max_lr = max_lr
        self._num_training_steps = num_training_steps
        self._early_stop_threshold = early_stop_threshold
        self._update_attr = update_attr
        self._attr_name = attr_name
        self.optimal_lr: Optional[LRFinderResult] = None

    def _culprit(self) -> str:
        """Who is searching, for messages."""
        return "LearningRateFinder"

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """At the start of ``fit``: search, before the optimizers are built from the rate."""
        if stage == "fit":
            self._search(trainer, pl_module)

    def lr_find(self, trainer: Any, pl_module: Any) -> None:
        """Search now; with ``update_attr`` the rate found also goes to the optimizers already built.

        For a subclass searching during training (at chosen epochs, say). Schedulers built with the
        optimizers keep the rates they started from.
        """
        lr = self._search(trainer, pl_module)
        if lr is not None:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr

    def _search(self, trainer: Any, pl_module: Any) -> Optional[float]:
        """Run the sweep; the rate set on the model, or ``None``."""
        self.optimal_lr = lr_find(
            trainer, pl_module, given_loaders(trainer, "fit"), trainer.datamodule, min_lr=self._min_lr,
            max_lr=self._max_lr, num_training=self._num_training_steps, mode=self._mode,
            early_stop_threshold=self._early_stop_threshold, update_attr=self._update_attr,
            attr_name=self._attr_name, culprit=self._culprit())
        result = self.optimal_lr
        if result is None or not self._update_attr or result._optimal_idx is None:
            return None
        return result.results["lr"][result._optimal_idx]  # the suggestion lr_find set


class BatchSizeFinder(Callback):
    """Finds the largest batch size that fits in memory at the start of a run (Lightning 2.x's callback).

    Args:
        mode: ``'power'`` (double until out of memory) or ``'binsearch'`` (then bisect).
        steps_per_trial: Steps run at each size (one may not reveal every allocation).
        init_val: The first size tried.
        max_trials: At most this many sizes are tried.
        batch_arg_name: The batch-size attribute, in the model, ``model.hparams``, the datamodule or its
            ``hparams``; the dataloaders must be built from it.

    ``optimal_batch_size`` holds the size found (``init_val`` before the search).
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size") -> None:
        self._mode = check_batch_size_args(self._culprit(), mode, steps_per_trial, init_val, max_trials, batch_arg_name)
        self._steps_per_trial = steps_per_trial
        self._init_val = init_val
        self._max_trials = max_trials
        self._batch_arg_name = batch_arg_name
        self.optimal_batch_size: Optional[int] = init_val

    def _culprit(self) -> str:
        """Who is searching, for messages."""
        return "BatchSizeFinder"

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """At the start of ``fit``/``validate``/``test``/``predict``: search, before the dataloaders are built."""
        self.scale_batch_size(trainer, pl_module)

    def scale_batch_size(self, trainer: Any, pl_module: Any) -> None:
        """Search now, for the stage the trainer runs; the size takes effect when the dataloaders are next built."""
        stage = str(trainer.state.fn or "fit")
        found = scale_batch_size(
            trainer, pl_module, stage, given_loaders(trainer, stage), trainer.datamodule, mode=self._mode,
            steps_per_trial=self._steps_per_trial, init_val=self._init_val, max_trials=self._max_trials,
            batch_arg_name=self._batch_arg_name, culprit=self._culprit())
        if found is not None:
            self.optimal_batch_size = found
