"""What every step variant offers the optimization plugin, what they share, and where ``global_step`` is counted.

The optimization plugin (:mod:`hookloop.plugins.optimization`) chooses one variant per fit in
``configure_model``:

* :class:`~hookloop.plugins.fast_step.FastStep` — automatic optimization at its simplest: one
  ``training_step``, backward, step and zero_grad per batch;
* :class:`~hookloop.plugins.automatic_step.AutomaticStep` — any other automatic optimization
  (several optimizers, accumulation, clipping, mixed precision, closures, NaN checks...);
* :class:`~hookloop.plugins.manual_step.ManualStep` — ``automatic_optimization = False``.

Each is a :class:`StepVariant`. The plugin's hooks hand it their work: ``run_batch``
(``run_training_batch``), ``optimizer_step`` (the ``optimizer_step`` hook), ``train_start``,
``epoch_start`` and ``epoch_end`` (``on_train_start``, ``on_train_epoch_start/_end``);
``step_optimizer`` is what its ``LightningOptimizer``\\ s' ``step()`` does. The base class is also
what the plugin holds before its first fit: a batch runs ``training_step`` only, as with no
optimizer to step.

**global_step** counts optimizer steps, as in Lightning: one per automatic batch whose
optimizer(s) stepped (the flush of an epoch's unfinished accumulation group is one too), one per
``opt.step()`` under manual optimization. Every variant counts with :func:`count_step`, the only
code that moves it during a fit (a checkpoint restores it, see ``engine/state.py``).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import torch

from hookloop.engine.markers import SKIPPED_BATCH
from hookloop.engine.module import LightningModule
from hookloop.plugins.lightning_optimizer import LightningOptimizer
from hookloop.plugins.module_overrides import ModuleOverrides
from hookloop.plugins.optimizer_config import step_scheduler
from hookloop.plugins.precision import Precision

__all__ = ["StepVariant", "count_step", "batch_output", "SKIPPED"]

#: A non-``None`` stand-in for a skipped batch (firstresult hooks treat ``None`` as "not handled").
SKIPPED = SKIPPED_BATCH


def count_step(trainer: Any) -> None:
    """Count one optimizer step in ``trainer.state.global_step``: the one place it grows."""
    trainer.state.global_step += 1


def batch_output(output: Any) -> Any:
    """The step's output as ``on_train_batch_end`` gets it: a loss tensor becomes ``{'loss': loss.detach()}``."""
    if output is None:
        return SKIPPED
    if isinstance(output, torch.Tensor):
        return {"loss": output.detach()}
    return output


def do_nothing() -> None:
    """The closure of a step that has none (the gradients are already there)."""
    return None


class StepVariant:
    """The base of every step variant: the interface, and the steps that go through the trainer.

    Args:
        trainer: the fitting trainer.
        optimizers: ``trainer.optimizers``; each gets a :class:`LightningOptimizer` stepping through this variant.
        precision: the active precision (``trainer.precision_plugin`` or ``FULL_PRECISION``).
        clip: clips one optimizer's gradients, or ``None`` (see ``StepSettings.clip``).
        overrides: the module's own ``backward``/``optimizer_step``/``optimizer_zero_grad`` callers.
    """

    def __init__(self, trainer: Any, optimizers: List[Any], precision: Precision,
                 clip: Optional[Callable[[Any], None]], overrides: ModuleOverrides) -> None:
        self.precision = precision
        self.clip = clip
        self.overrides = overrides
        #: The optimizers as the module sees them (``trainer.lightning_optimizers``, ``self.optimizers()``).
        self.wrapped = [LightningOptimizer(opt, self, trainer, i) for i, opt in enumerate(optimizers)]

    def run_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """One training batch; its output as ``run_training_batch`` returns it. Here: ``training_step``
        only (no optimizer to step)."""
        return batch_output(trainer.hooks.training_step(trainer, pl_module, batch, batch_idx, None))

    def train_start(self, trainer: Any) -> None:
        """At ``on_train_start`` (every plugin's ``configure_model`` has run): nothing by default."""

    def continue_from(self, previous: "StepVariant") -> None:
        """This variant replaces ``previous`` during a fit (a reassigned flag or optimizer): take over its
        running state. Nothing by default."""

    def epoch_start(self, trainer: Any) -> None:
        """At ``on_train_epoch_start``: nothing by default."""

    def epoch_end(self, trainer: Any) -> None:
        """At ``on_train_epoch_end``: step the ``interval='epoch'`` schedulers (plateau ones with their metric)."""
        epoch = trainer.current_epoch
        for config in trainer.lr_scheduler_configs:
            if config.interval == "epoch" and (epoch + 1) % config.frequency == 0:
                step_scheduler(trainer, config)

    def optimizer_step(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int,
                       closure: Any) -> bool:
        """The ``optimizer_step`` hook's work: the module's ``optimizer_step`` if overridden (given the
        :class:`LightningOptimizer`), else its ``step`` (precision, ``on_before_optimizer_step``, clipping)."""
        wrapped = self.wrapped[optimizer_idx] if optimizer_idx < len(self.wrapped) else None
        if wrapped is None or wrapped.optimizer is not optimizer:
            wrapped = next((w for w in self.wrapped if w.optimizer is optimizer), None)
        if wrapped is None:  # an optimizer the trainer did not build: step it as asked
            optimizer.step(closure) if closure is not None else optimizer.step()
            return True
        module_step = self.overrides.optimizer_step
        if module_step is not None:
            module_step(trainer.current_epoch, trainer.state.batch_idx, wrapped, optimizer_idx,
                        closure if closure is not None else do_nothing)
        else:
            wrapped.step(closure)
        return True

    def step_optimizer(self, trainer: Any, index: int, closure: Optional[Callable[[], Any]]) -> Any:
        """Step optimizer ``index`` through the precision: closure, unscale, ``on_before_optimizer_step``,
        clipping, step (``LightningOptimizer.step``)."""
        optimizer = trainer.optimizers[index]
        module = trainer.lightning_module
        hooks = trainer.hooks
        clip = self.clip

        def after_closure() -> None:
            if hooks.on_before_optimizer_step is not None:
                hooks.on_before_optimizer_step(trainer, module, optimizer)
            if clip is not None:
                clip(optimizer)

        return self.precision.optimizer_step(optimizer, closure if closure is not None else do_nothing, after_closure)
