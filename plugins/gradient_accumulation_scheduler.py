"""``GradientAccumulationScheduler``: Lightning's callback that changes ``accumulate_grad_batches`` by epoch.

``GradientAccumulationScheduler(scheduling={0: 8, 4: 4})`` accumulates 8 batches per optimizer step from
epoch 0 and 4 from epoch 4 on. At each training epoch's start it assigns
``trainer.accumulate_grad_batches``, which the optimization plugin follows from the next batch
(the ``optimization_changed`` event); an epoch's last, incomplete group still steps. As in
Lightning, it refuses a ``Trainer(accumulate_grad_batches=...)`` other than 1 and manual optimization.
The seed-era ``Trainer(accumulate_grad_batches={epoch: k})`` does the same without the callback.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

from hookloop.engine import Callback
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.module import is_overridden
from hookloop.plugins.step_settings import accumulation_for_epoch

__all__ = ["GradientAccumulationScheduler"]


class GradientAccumulationScheduler(Callback):
    """Change the gradient accumulation factor by epoch (Lightning's callback of this name).

    Args:
        scheduling: ``{epoch: k}``: from ``epoch`` (an int >= 0) on, accumulate ``k`` batches (an int >= 1).
            Epochs before the first key accumulate 1 (``{0: 1}`` is added, as in Lightning).

    Raises:
        TypeError: ``scheduling`` is empty.
        MisconfigurationException: a key is not an int >= 0, or a value not an int >= 1.
    """

    def __init__(self, scheduling: Dict[int, int]) -> None:
        super().__init__()
        if not scheduling:
            raise TypeError("GradientAccumulationScheduler(scheduling={}): an empty dict cannot be interpreted; "
                            "give {epoch: k}, e.g. {0: 8, 4: 4}.")
        if any(not isinstance(key, int) or key < 0 for key in scheduling):
            raise MisconfigurationException(
                f"GradientAccumulationScheduler: epoch should be an int greater than or equal to 0. "
                f"Got {list(scheduling.keys())}.")
        if any(not isinstance(value, int) or value < 1 for value in scheduling.values()):
            raise MisconfigurationException(
                f"GradientAccumulationScheduler: accumulation factor should be an int greater than 0. "
                f"Got {list(scheduling.values())}.")
        scheduling = dict(scheduling)
        scheduling.setdefault(0, 1)
        #: ``{epoch: k}``, with epoch 0 always present.
        self.scheduling = scheduling
        #: The schedule's epochs, in order.
        self.epochs = sorted(scheduling)
        # The value this callback last assigned: a later fit of the same trainer finds it, not a user's flag.
        self._assigned: Optional[int] = None

    def going_to_accumulate_grad_batches(self) -> bool:
        """Whether any epoch of the schedule accumulates more than one batch."""
        return any(value > 1 for value in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The accumulation factor for ``epoch``."""
        return accumulation_for_epoch(self.scheduling, epoch)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Refuse manual optimization and a ``Trainer(accumulate_grad_batches=...)`` other than 1, as Lightning does."""
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for manual "
                "optimization. Please remove the callback or switch to automatic optimization.")
        if (is_overridden("optimizer_step", pl_module) or is_overridden("optimizer_zero_grad", pl_module)) \
                and self.going_to_accumulate_grad_batches():
            warnings.warn(
                "When using `GradientAccumulationScheduler` and overriding `LightningModule.optimizer_{step,zero_grad}`, "
                "the hooks will not be called on every batch (rather, they are called on every optimization step).")
        current = trainer.accumulate_grad_batches
        if current != 1 and not (self._assigned is not None and current == self._assigned):
            raise ValueError(
                "You have set `accumulate_grad_batches` and are using the `GradientAccumulationScheduler` callback. "
                "Either remove `accumulate_grad_batches` from the Trainer or remove the callback.")

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Assign this epoch's factor to ``trainer.accumulate_grad_batches``."""
        self._assigned = self.get_accumulate_grad_batches(trainer.current_epoch)
        trainer.accumulate_grad_batches = self._assigned
