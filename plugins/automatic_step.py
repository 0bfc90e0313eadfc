"""Automatic optimization in general: what the fast path does not cover.

Per batch, for each optimizer whose turn it is, in Lightning 2.x's order (its closure runs
step_fn, zero_grad_fn, backward_fn): ``training_step`` (the seed era's
``training_step(batch, batch_idx, optimizer_idx)`` when there are several, with the other
optimizers' parameters frozen by ``toggle_optimizer``), the loss divided by the accumulation
factor; on the first batch of an accumulation group only, ``on_before_zero_grad`` and the
``optimizer_zero_grad`` hook; ``on_before_backward``, the ``backward`` hook, ``on_after_backward``;
then, when the group is complete, the ``optimizer_step`` hook with a closure (the module's own
``optimizer_step``, e.g. learning-rate warm-up, or the precision's step with
``on_before_optimizer_step`` and clipping inside). Gradients of a group are summed: nothing is
zeroed within it, and they stay after the step until the next group's first batch. A batch on which any optimizer stepped counts one ``global_step``
and steps the ``interval='step'`` schedulers of the optimizers that stepped.

* **Several optimizers** run one after the other on every batch, or, with ``frequency`` in their
  dicts, take turns (seed-era rotation; resumed where the step count says it is).
* **Accumulation**: a batch that only accumulates keeps its gradients; under DDP it runs in the
  model's ``no_sync()``, so only the group's stepping batch all-reduces. An epoch of unknown
  length steps its last, incomplete group at ``on_train_epoch_end``; an epoch cut short drops it.
* **Closures**: the closure's first call returns the loss already computed; later calls (LBFGS)
  zero the gradients and run ``training_step`` and backward again (:class:`CachedClosure`).
* **NaN checks**: ``terminate_on_nan``/``detect_anomaly`` stop at a non-finite loss, and
  ``terminate_on_nan`` at non-finite weights after a step, naming the global step, epoch and batch.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, List, Optional, Set, Tuple

import torch

from hookloop.engine.markers import SKIPPED_BATCH
from hookloop.engine.module import LightningModule
from hookloop.plugins.model_hooks import validated_loss
from hookloop.plugins.module_overrides import ModuleOverrides
from hookloop.plugins.optimizer_config import LRSchedulerConfig, step_scheduler
from hookloop.plugins.precision import Precision
from hookloop.plugins.step_settings import StepSettings, accumulation_for_epoch, steps_optimizer
from hookloop.plugins.step_variant import StepVariant, batch_output, count_step

__all__ = ["AutomaticStep", "CachedClosure"]


class CachedClosure:
    """The closure handed to ``optimizer_step``: gradients are already there for its first call.

    The variant runs ``training_step`` and backward before stepping (so ``on_after_backward``
    precedes ``on_before_optimizer_step`` and a seed-era ``optimizer.step()`` without the
    closure still works). The first call returns that loss; later calls (LBFGS re-evaluating
    at new weights) zero the gradients and run ``training_step`` and backward again.
    """

    __slots__ = ("variant", "trainer", "module", "batch", "batch_idx", "optimizer", "idx", "loss", "calls")

    def __init__(self, variant: "AutomaticStep", trainer: Any, module: Any, batch: Any, batch_idx: int,
                 optimizer: Any, idx: Optional[int], loss: torch.Tensor) -> None:
        self.variant, self.trainer, self.module, self.batch = variant, trainer, module, batch
        self.batch_idx, self.optimizer, self.idx, self.loss, self.calls = batch_idx, optimizer, idx, loss, 0

    def __call__(self) -> Any:
        """The step's loss: the one computed already at the first call, a fresh one at every later call."""
        self.calls += 1
        if self.calls == 1:
            return self.loss
        self.optimizer.zero_grad()
        output = self.trainer.hooks.training_step(self.trainer, self.module, self.batch, self.batch_idx, self.idx)
        loss = validated_loss(output)
        if loss is None:
            return None
        self.loss = self.variant.backward(self.trainer, self.module, loss, self.optimizer, self.idx)
        return self.loss


class AutomaticStep(StepVariant):
    """The general automatic-optimization variant (see the module docstring).

    Args (besides :class:`StepVariant`'s):
        settings: the fit's accumulation and NaN-check flags.
        frequencies: per optimizer, its consecutive batches before the next takes over (empty: all every batch).
        step_schedulers: the ``interval='step'`` scheduler configs.
    """

    def __init__(self, trainer: Any, optimizers: List[Any], precision: Precision, overrides: ModuleOverrides,
                 settings: StepSettings, frequencies: List[int], step_schedulers: List[LRSchedulerConfig]) -> None:
        super().__init__(trainer, optimizers, precision, settings.clip, overrides)
        self._accumulate = settings.accumulate
        self._k = accumulation_for_epoch(settings.accumulate, trainer.current_epoch)
        self._check_finite = settings.check_finite
        self._anomaly = settings.anomaly
        self._frequencies = frequencies
        self._batches_seen = 0
        self._step_schedulers = step_schedulers
        #: Optimizer indices holding accumulated gradients not yet stepped.
        self._pending: Set[int] = set()

    # ---- the plugin's events ----------------------------------------------------------------------
    def train_start(self, trainer: Any) -> None:
        """Resume the optimizers' ``frequency`` rotation where the step count says it is; an optimizer whose
        parameters hold gradients (a checkpoint taken within an accumulation group restored them) has an
        open group, which its next batch adds to rather than zeroes."""
        self._batches_seen = trainer.state.global_step
        self._pending = {idx for idx, optimizer in enumerate(trainer.optimizers)
                         if any(p.grad is not None for group in optimizer.param_groups for p in group["params"])}

    def continue_from(self, previous: StepVariant) -> None:
        """Keep the ``frequency`` rotation's place and, with the same optimizers, an open accumulation group."""
        if isinstance(previous, AutomaticStep):
            self._batches_seen = previous._batches_seen
            if [w.optimizer for w in previous.wrapped] == [w.optimizer for w in self.wrapped]:
                self._pending = set(previous._pending)

    def epoch_start(self, trainer: Any) -> None:
        """Pick this epoch's accumulation factor from an ``{epoch: k}`` schedule."""
        if isinstance(self._accumulate, dict):
            self._k = accumulation_for_epoch(self._accumulate, trainer.current_epoch)

    def epoch_end(self, trainer: Any) -> None:
        """Step an unfinished accumulation group of an epoch of unknown length, then the epoch schedulers.

        An epoch of unknown length cannot tell its last batch in advance: its last, incomplete
        accumulation group steps here. An epoch cut short (``should_stop``, a skipped rest)
        drops its unfinished group, as Lightning does.
        """
        if self._pending:
            self._flush_pending(trainer)
        super().epoch_end(trainer)

    # ---- one batch --------------------------------------------------------------------------------
    def run_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """One batch: each active optimizer's step (see the module docstring); the output(s) for ``on_train_batch_end``."""
        optimizers = trainer.optimizers
        if not optimizers:  # configure_optimizers returned None: only training_step runs
            return super().run_batch(trainer, pl_module, batch, batch_idx)
        outputs, stepped = self._optimize_batch(trainer, pl_module, batch, batch_idx, optimizers)
        self._count_batch(trainer, stepped)
        return self._batch_output(outputs, len(optimizers) > 1)

    def _optimize_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int,
                        optimizers: List[Any]) -> Tuple[List[Any], List[int]]:
        """Each active optimizer's step on ``batch``: their outputs, and the indices of those that stepped."""
        multi = len(optimizers) > 1
        k = self._k
        step_now = steps_optimizer(batch_idx, k, trainer.num_training_batches)
        outputs: List[Any] = []
        stepped: List[int] = []
        for idx, optimizer in self._active_optimizers(optimizers):
            if multi:
                pl_module.toggle_optimizer(optimizer, idx)
            try:
                output = self._optimize_one(trainer, pl_module, batch, batch_idx, optimizer,
                                            idx if multi else None, k, step_now)
            finally:
                if multi:
                    pl_module.untoggle_optimizer(idx)
            outputs.append(output)
            if step_now and output is not SKIPPED_BATCH:
                stepped.append(idx)
        return outputs, stepped

    def _count_batch(self, trainer: Any, stepped: List[int]) -> None:
        """After a batch: advance the ``frequency`` rotation; if any optimizer stepped, one ``global_step``
        and the ``interval='step'`` schedulers of those that stepped."""
        if self._frequencies:
            self._batches_seen += 1
        if stepped:
            count_step(trainer)
            if self._step_schedulers:
                self._step_lr_schedulers(trainer, stepped)

    def _batch_output(self, outputs: List[Any], multi: bool) -> Any:
        """The batch's output: the one optimizer's, or (several, all every batch) the list of them."""
        if not multi:
            return outputs[0]
        return outputs[0] if self._frequencies else outputs

    def _active_optimizers(self, optimizers: List[Any]) -> List[Tuple[int, Any]]:
        """Every optimizer, or with ``frequency`` the one whose turn it is (seed-era rotation)."""
        if not self._frequencies:
            return list(enumerate(optimizers))
        place = self._batches_seen % sum(self._frequencies)
        for idx, frequency in enumerate(self._frequencies):
            if place < frequency:
                return [(idx, optimizers[idx])]
            place -= frequency
        raise AssertionError("unreachable: place < sum(frequencies)")

    def _optimize_one(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int, optimizer: Any,
                      idx: Optional[int], k: int, step_now: bool) -> Any:
        hooks = trainer.hooks
        # Under DDP, a batch that only accumulates keeps its gradients local (DDP's ``no_sync``,
        # around forward and backward); the stepping batch all-reduces the accumulated sum.
        no_sync = None if step_now else getattr(trainer.strategy_model, "no_sync", None)
        with no_sync() if no_sync is not None else contextlib.nullcontext():
            output = hooks.training_step(trainer, pl_module, batch, batch_idx, idx)
            loss = validated_loss(output)
            if loss is None:
                return batch_output(output)
            if self._check_finite:
                self._check_loss(trainer, loss, batch_idx)
            if k > 1:
                loss = loss / k  # the mean over the k accumulated batches
            if (idx or 0) not in self._pending:
                # The first batch of an accumulation group (nothing accumulated yet): zero_grad before
                # backward, Lightning 2.x's closure order (step_fn, zero_grad_fn, backward_fn).
                if hooks.on_before_zero_grad is not None:
                    hooks.on_before_zero_grad(trainer, pl_module, optimizer)
                hooks.optimizer_zero_grad(trainer, pl_module, optimizer, idx or 0)
            loss = self.backward(trainer, pl_module, loss, optimizer, idx)
        if not step_now:
            self._pending.add(idx or 0)
            return batch_output(output)
        self._pending.discard(idx or 0)
        closure = CachedClosure(self, trainer, pl_module, batch, batch_idx, optimizer, idx, loss)
        hooks.optimizer_step(trainer, pl_module, optimizer, idx or 0, closure)
        if trainer.terminate_on_nan:
            self._check_parameters(trainer, pl_module, batch_idx)
        return batch_output(output)

    def backward(self, trainer: Any, pl_module: LightningModule, loss: torch.Tensor, optimizer: Any,
                 idx: Optional[int]) -> torch.Tensor:
        """``on_before_backward``, the ``backward`` hook, ``on_after_backward``; returns ``loss``."""
        hooks = trainer.hooks
        if hooks.on_before_backward is not None:
            hooks.on_before_backward(trainer, pl_module, loss)
        try:
            hooks.backward(trainer, pl_module, loss, optimizer, idx)
        except RuntimeError as exc:
            if self._anomaly and hasattr(exc, "add_note"):
                exc.add_note(f"[hookloop] detect_anomaly: backward failed at {_position(trainer, trainer.state.batch_idx)}.")
            raise
        if hooks.on_after_backward is not None:
            hooks.on_after_backward(trainer, pl_module)
        return loss

    def _check_loss(self, trainer: Any, loss: torch.Tensor, batch_idx: int) -> None:
        if not bool(torch.isfinite(loss).all()):
            flag = "terminate_on_nan" if trainer.terminate_on_nan else "detect_anomaly"
            raise ValueError(
                f"`training_step` returned a loss of {float(loss.detach())} at {_position(trainer, batch_idx)}; "
                f"stopping because {flag}=True. Check the learning rate, the data of that batch and "
                "divisions/logs in the loss."
            )

    def _check_parameters(self, trainer: Any, pl_module: LightningModule, batch_idx: int) -> None:
        for name, param in pl_module.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise ValueError(
                    f"Parameter {name!r} holds NaN or inf after the optimizer step at "
                    f"{_position(trainer, batch_idx)}; stopping because terminate_on_nan=True."
                )

    def _flush_pending(self, trainer: Any) -> None:
        """At the end of an epoch: step the unfinished group (epoch of unknown length) or drop it."""
        module = trainer.lightning_module
        hooks = trainer.hooks
        if trainer.num_training_batches != math.inf:
            for idx in self._pending:
                trainer.optimizers[idx].zero_grad()
            self._pending.clear()
            return
        for idx in sorted(self._pending):
            # The next group's first batch zeroes the gradients (before its backward).
            hooks.optimizer_step(trainer, module, trainer.optimizers[idx], idx, None)
        self._pending.clear()
        count_step(trainer)

    def _step_lr_schedulers(self, trainer: Any, stepped: List[int]) -> None:
        step = trainer.state.global_step
        for config in self._step_schedulers:
            if (config.opt_idx is None or config.opt_idx in stepped) and step % config.frequency == 0:
                step_scheduler(trainer, config)


def _position(trainer: Any, batch_idx: int) -> str:
    return f"global step {trainer.state.global_step}, epoch {trainer.current_epoch}, batch index {batch_idx}"
