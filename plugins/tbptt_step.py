"""Truncated back-propagation through time (the seed era's ``Trainer(truncated_bptt_steps=k)``).

Each training batch is split along its time dimension by the module's
``tbptt_split_batch(batch, split_size)`` (default: tensors and the elements of lists split at
dim 1, in pieces of ``k``). Every split is a step of its own, as in Lightning 0.9: for each
optimizer, ``training_step(split, batch_idx, hiddens)`` (0.9's signature; ``optimizer_idx``
before ``hiddens`` with several optimizers), backward, and — on a batch that completes an
accumulation group — the optimizer step. ``hiddens`` is ``None`` for the first split, then what
the previous split's step returned under ``'hiddens'`` (``{'loss': loss, 'hiddens': h}``, or a
0.9 ``TrainResult(hiddens=h)``), detached, so gradients stop at the split's start. The model
hooks read it from ``trainer.hiddens`` (0.9's attribute; ``trainer.split_idx`` is the split's
index) while the batch runs.

``global_step`` counts the batch once, as 0.9 did (its ``interval='step'`` schedulers step once
too); ``on_train_batch_end`` gets the list of the splits' outputs.
"""
from __future__ import annotations

from typing import Any, List, Optional

from hookloop.engine.apply import detach_all
from hookloop.engine.markers import SKIPPED_BATCH
from hookloop.engine.module import LightningModule
from hookloop.plugins.automatic_step import AutomaticStep
from hookloop.plugins.module_overrides import ModuleOverrides
from hookloop.plugins.optimizer_config import LRSchedulerConfig
from hookloop.plugins.precision import Precision
from hookloop.plugins.step_settings import StepSettings

__all__ = ["TruncatedBPTTStep"]


class TruncatedBPTTStep(AutomaticStep):
    """Automatic optimization over the time splits of each batch (see the module docstring).

    Args: those of :class:`~hookloop.plugins.automatic_step.AutomaticStep`; ``settings.tbptt`` is the split size.
    """

    def __init__(self, trainer: Any, optimizers: List[Any], precision: Precision, overrides: ModuleOverrides,
                 settings: StepSettings, frequencies: List[int], step_schedulers: List[LRSchedulerConfig]) -> None:
        super().__init__(trainer, optimizers, precision, overrides, settings, frequencies, step_schedulers)
        assert settings.tbptt is not None
        self._split_size: int = settings.tbptt

    def run_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """Each split of ``batch`` in turn, its hidden state handed to the next; the splits' outputs."""
        optimizers = trainer.optimizers
        if not optimizers:
            return super().run_batch(trainer, pl_module, batch, batch_idx)
        multi = len(optimizers) > 1
        splits = pl_module.tbptt_split_batch(batch, self._split_size)
        outputs: List[Any] = []
        stepped: List[int] = []
        trainer.hiddens = None
        try:
            for split_idx, split in enumerate(splits):
                trainer.split_idx = split_idx
                split_outputs, split_stepped = self._optimize_batch(trainer, pl_module, split, batch_idx, optimizers)
                stepped.extend(i for i in split_stepped if i not in stepped)
                trainer.hiddens = _hiddens(split_outputs)
                outputs.append(self._batch_output(split_outputs, multi))
        finally:
            trainer.hiddens = None  # the last split's state is not carried into the next batch
            trainer.split_idx = None
        self._count_batch(trainer, stepped)
        return outputs


def _hiddens(outputs: List[Any]) -> Optional[Any]:
    """The detached ``'hiddens'`` of a split's outputs (the last optimizer's that has one)."""
    for output in reversed(outputs):
        if output is not SKIPPED_BATCH and isinstance(output, dict) and output.get("hiddens") is not None:
            return detach_all(output["hiddens"])
    return None
