"""``Tuner(trainer)``: Lightning 2.x's entry point to the learning-rate sweep and the batch-size search."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from hookloop.engine.errors import MisconfigurationException, did_you_mean
from hookloop.plugins.tuner.batch_size import scale_batch_size
from hookloop.plugins.tuner.lr_finder import lr_find
from hookloop.plugins.tuner.lr_result import LRFinderResult
from hookloop.plugins.tuner.trial import STAGE_LOADERS


class Tuner:
    """Tunes a model for ``trainer``: its device, precision, accumulation and clipping, and its step plugins.

    Each search runs short trials of the model on a separate, silent trainer; afterwards the
    model's weights, the random generators and ``trainer`` itself (loop state, optimizers, callbacks,
    loggers, files) are as before, and only the attribute tuned has changed::

        tuner = Tuner(trainer)
        result = tuner.lr_find(model)          # sets model.lr (or learning_rate) to result.suggestion()
        result.plot(suggest=True)
        tuner.scale_batch_size(model)          # sets model.batch_size to the largest that fits
        trainer.fit(model)
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def lr_find(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None, dataloaders: Any = None,
                datamodule: Any = None, method: str = "fit", min_lr: float = 1e-8, max_lr: float = 1.0,
                num_training: int = 100, mode: str = "exponential", early_stop_threshold: Optional[float] = 4.0,
                update_attr: bool = True, attr_name: str = "") -> Optional[LRFinderResult]:
        """Sweep the learning rate from ``min_lr`` to ``max_lr`` over ``num_training`` steps; return the result.

        Args:
            model: The ``LightningModule``.
            train_dataloaders: Training data (or a datamodule), as ``fit`` takes it; default the model's.
            val_dataloaders: Validation data, as ``fit`` takes it (the sweep itself does not validate).
            dataloaders: Not for the sweep (it trains); given for Lightning's signature.
            datamodule: A ``LightningDataModule``.
            method: ``'fit'``, the only method a learning rate is swept for.
            min_lr: The first rate.
            max_lr: The last rate.
            num_training: Optimizer steps, one rate each.
            mode: ``'exponential'`` (evenly spaced on a log scale) or ``'linear'``.
            early_stop_threshold: Stop once the smoothed loss exceeds this many times the best (``None``: never).
            update_attr: Write ``result.suggestion()`` where the model keeps its rate.
            attr_name: That attribute (model, ``model.hparams`` or datamodule); default ``lr`` or ``learning_rate``.

        Returns:
            The :class:`LRFinderResult` (``.results``, ``.suggestion()``, ``.plot()``), or ``None`` under
            ``fast_dev_run``.
        """
        if method != "fit":
            raise MisconfigurationException(
                f"Tuner.lr_find(method={method!r}): the learning rate is swept by training, so only method='fit' works.")
        loaders, datamodule = _data("Tuner.lr_find", model, method, train_dataloaders, val_dataloaders, dataloaders,
                                    datamodule)
        return lr_find(self._trainer, model, loaders, datamodule, min_lr=min_lr, max_lr=max_lr,
                       num_training=num_training, mode=mode, early_stop_threshold=early_stop_threshold,
                       update_attr=update_attr, attr_name=attr_name, culprit="Tuner.lr_find")

    def scale_batch_size(self, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: Any = None, method: str = "fit", mode: str = "power",
                         steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size") -> Optional[int]:
        """Find the largest batch size whose steps fit in memory, set it, and return it.

        Args:
            model: The ``LightningModule``.
            train_dataloaders: Must stay ``None``: a size can change only where the model or datamodule builds
                its dataloaders (from ``batch_arg_name``); a datamodule may be passed here, as to ``fit``.
            val_dataloaders: As ``fit`` takes them (trials of ``fit`` train only).
            dataloaders: Must stay ``None`` (for ``method='validate'``/``'test'``/``'predict'``, as above).
            datamodule: A ``LightningDataModule``, which may hold the batch size.
            method: The stage to size: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
            mode: ``'power'`` (double until out of memory) or ``'binsearch'`` (then bisect).
            steps_per_trial: Steps run at each size.
            init_val: The first size tried.
            max_trials: At most this many sizes are tried.
            batch_arg_name: The batch-size attribute (model, ``model.hparams``, datamodule or its ``hparams``).

        Returns:
            The size found (also written to ``batch_arg_name``), or ``None`` under ``fast_dev_run``.
        """
        loaders, datamodule = _data("Tuner.scale_batch_size", model, method, train_dataloaders, val_dataloaders,
                                    dataloaders, datamodule)
        return scale_batch_size(self._trainer, model, method, loaders, datamodule, mode=mode,
                                steps_per_trial=steps_per_trial, init_val=init_val, max_trials=max_trials,
                                batch_arg_name=batch_arg_name, culprit="Tuner.scale_batch_size")


def _data(culprit: str, model: Any, method: str, train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any,
          datamodule: Any) -> Tuple[Dict[str, Any], Any]:
    """``(loaders by kind, datamodule)`` for ``method``, or an error naming the argument that does not fit it."""
    from hookloop.engine.datamodule import LightningDataModule
    from hookloop.engine.module import LightningModule

    if not isinstance(model, LightningModule):
        raise MisconfigurationException(f"{culprit}() expects a LightningModule, got {type(model).__name__}.")
    if method not in STAGE_LOADERS:
        raise MisconfigurationException(
            f"{culprit}(method={method!r}): pass 'fit', 'validate', 'test' or 'predict'." + did_you_mean(
                str(method), STAGE_LOADERS))
    if isinstance(train_dataloaders, LightningDataModule) and datamodule is None:
        train_dataloaders, datamodule = None, train_dataloaders
    if isinstance(dataloaders, LightningDataModule) and datamodule is None:
        dataloaders, datamodule = None, dataloaders
    if method == "fit":
        if dataloaders is not None:
            raise MisconfigurationException(
                f"{culprit}(method='fit') takes train_dataloaders= and val_dataloaders=, not dataloaders=.")
        return {"train": train_dataloaders, "val": val_dataloaders}, datamodule
    if train_dataloaders is not None or val_dataloaders is not None:
        raise MisconfigurationException(
            f"{culprit}(method={method!r}) takes dataloaders=, not train_dataloaders=/val_dataloaders=.")
    return {STAGE_LOADERS[method]: dataloaders}, datamodule
