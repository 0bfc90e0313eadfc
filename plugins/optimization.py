"""Built-in ``optimization``: builds optimizers and does each batch's backward, step and zero_grad.

Everything is decided once, in ``configure_model``: the optimizers and schedulers (any form of
``configure_optimizers`` Lightning accepts, :mod:`~hookloop.plugins.optimizer_config`), the step
settings (accumulation, clipping, NaN checks, :mod:`~hookloop.plugins.step_settings`), the module's
own ``backward``/``optimizer_step``/``optimizer_zero_grad`` (:mod:`~hookloop.plugins.module_overrides`),
and the **step variant** that runs the fit's batches:

* **fast path** (:mod:`~hookloop.plugins.fast_step`) — automatic optimization, one optimizer that
  needs no closure, no accumulation, no clipping, no GradScaler, no NaN checks, no per-step
  scheduler, and the module does not override ``optimizer_step``: one ``training_step``, backward,
  step and zero_grad per batch, nothing else.
* **general path** (:mod:`~hookloop.plugins.automatic_step`) — several optimizers (seed-era
  ``training_step(batch, batch_idx, optimizer_idx)``, with ``requires_grad`` toggled and optional
  ``frequency`` turns), gradient accumulation (``int`` or ``{epoch: k}``), clipping, mixed
  precision, LBFGS-style closures, the module's own ``optimizer_step`` (e.g. learning-rate
  warm-up), ``terminate_on_nan`` and ``detect_anomaly``, per-step schedulers; with
  ``truncated_bptt_steps``, over each batch's time splits (:mod:`~hookloop.plugins.tbptt_step`).
* **manual optimization** (:mod:`~hookloop.plugins.manual_step`) — ``automatic_optimization = False``:
  only ``training_step`` runs; the module calls ``self.optimizers()`` (:class:`LightningOptimizer`,
  :mod:`~hookloop.plugins.lightning_optimizer`), ``self.manual_backward(loss)`` and ``opt.step()``.

Each variant is an object with the same small interface (:mod:`~hookloop.plugins.step_variant`),
to which this plugin's hooks hand their work. No batch asks which variant runs: the one test per
batch is whether the fast path is prepared for the current dispatch. While it is, the plugin's
``run_training_batch`` (defined by its base class :class:`~hookloop.plugins.fast_step.FastPath`)
runs the batch itself; otherwise the batch goes to the variant — the fast variant's prepares the
fast path again and hands the batch back, so a plugin joining or leaving mid-run takes part at once.

Events around a step, in Lightning 2.x's order: after ``training_step``, on the first batch of
an accumulation group, ``on_before_zero_grad`` (and the ``optimizer_zero_grad`` hook); then
``on_before_backward``, ``on_after_backward``, and on a stepping batch ``on_before_optimizer_step``
(gradients unscaled, not yet clipped, as in Lightning). The bare fast path (nothing listens)
zeroes after its step instead, which is the same numerically. ``global_step`` counts batches whose optimizer(s) stepped
(automatic) or every ``opt.step()`` (manual), as Lightning does; every variant counts it with
:func:`~hookloop.plugins.step_variant.count_step`.

``LightningOptimizer``, ``normalize_optimizers``, ``SKIPPED`` and the accumulation helpers
(``accumulating``, ``steps_optimizer``, ``accumulation_for_epoch``) are importable from here too.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import torch

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.module import LightningModule
from hookloop.plugins.automatic_step import AutomaticStep
from hookloop.plugins.fast_step import FastPath, FastStep, applies
from hookloop.plugins.lightning_optimizer import LightningOptimizer
from hookloop.plugins.manual_step import ManualStep
from hookloop.plugins.module_overrides import NO_OVERRIDES, ModuleOverrides, takes_optimizer_idx
from hookloop.plugins.optimizer_config import (LRSchedulerConfig, OptimizerSetup, default_scheduler_step,
                                               normalize_optimizers)
from hookloop.plugins.precision import FULL_PRECISION, Precision
from hookloop.plugins.step_settings import StepSettings, accumulating, accumulation_for_epoch, steps_optimizer
from hookloop.plugins.step_variant import SKIPPED, StepVariant
from hookloop.plugins.tbptt_step import TruncatedBPTTStep

__all__ = ["OptimizationPlugin", "LightningOptimizer", "normalize_optimizers", "SKIPPED", "accumulating",
           "steps_optimizer", "accumulation_for_epoch"]


class OptimizationPlugin(FastPath):
    """Built-in ``optimization``: automatic and manual optimization (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        #: The fit's step variant; before the first fit, one with no optimizer to step.
        self._variant: StepVariant = StepVariant(None, [], FULL_PRECISION, None, NO_OVERRIDES)
        #: Whether this fit's batches take the fast path.
        self._fast = False
        self._unwatch: Optional[Callable[[], None]] = None
        self._scale: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self._module_backward: Optional[Callable[..., Any]] = None
        self._module_zero_grad: Optional[Callable[..., Any]] = None
        self._anomaly_before: Optional[bool] = None
        #: The module of the running fit, once its variant is built (``None``: reassignments are not followed).
        self._module: Optional[LightningModule] = None
        self._frequencies: List[int] = []

    # ---- set-up -------------------------------------------------------------------------------
    @hookimpl
    def configure_model(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Build ``trainer.optimizers``/``trainer.lr_scheduler_configs`` and choose the step variant for ``fit``."""
        if stage != "fit":
            return
        self._module = None  # the assignments below are this plugin's own, not a change to follow
        setup = normalize_optimizers(pl_module.configure_optimizers())
        trainer.optimizers = setup.optimizers
        trainer.lr_scheduler_configs = setup.lr_scheduler_configs
        self._frequencies = setup.frequencies
        settings = self._build(trainer, pl_module)
        if settings.anomaly:
            self._anomaly_before = torch.is_anomaly_enabled()
            torch.autograd.set_detect_anomaly(True)
        if self._unwatch is None:
            self._unwatch = trainer.registry.dispatch.watch(self._fast_path_changed)
        if pl_module.automatic_optimization:
            for opt in setup.optimizers:  # start from clean gradients, as the first zero_grad would
                opt.zero_grad()

    @hookimpl
    def optimization_changed(self, trainer: Any, attribute: str) -> None:
        """Build the step variant again from the trainer's reassigned ``attribute`` (Lightning: the new
        value takes effect from the next batch); nothing per batch checks for it."""
        module = self._module
        if module is None:  # no fit is running, or this plugin is building it
            return
        previous = self._variant
        self._build(trainer, module)
        self._variant.continue_from(previous)

    def _build(self, trainer: Any, pl_module: LightningModule) -> StepSettings:
        """Choose and build the step variant from ``trainer.optimizers``/``lr_scheduler_configs`` and the
        step flags; return the checked flags."""
        optimizers = trainer.optimizers
        precision = getattr(trainer, "precision_plugin", None) or FULL_PRECISION
        self._scale = precision.pre_backward if precision.scaler is not None else None
        manual = not pl_module.automatic_optimization
        overrides = ModuleOverrides.of(trainer, pl_module, precision)
        self._module_backward = overrides.backward
        self._module_zero_grad = overrides.optimizer_zero_grad
        settings = StepSettings.of(trainer, pl_module)
        step_schedulers = [c for c in trainer.lr_scheduler_configs if c.interval == "step"]
        n = len(optimizers)
        if n > 1 and not manual and not takes_optimizer_idx(pl_module):
            raise MisconfigurationException(
                f"`configure_optimizers` returned {n} optimizers, but {type(pl_module).__name__}.training_step "
                "takes no `optimizer_idx`. Add it (seed-era: training_step(self, batch, batch_idx, optimizer_idx)) "
                "or set `self.automatic_optimization = False` and step the optimizers yourself."
            )
        # ``frequency`` turns belong to the optimizers they came with.
        frequencies = self._frequencies if len(self._frequencies) == n else []
        setup = OptimizerSetup(list(optimizers), list(trainer.lr_scheduler_configs), frequencies)
        self._fast_path_changed()  # off until this fit's fast path, if it has one, prepares
        self._variant = self._choose(trainer, setup, precision, overrides, settings, step_schedulers, manual)
        self._fast = isinstance(self._variant, FastStep)
        #: The optimizers as the module sees them (``self.optimizers()``).
        trainer.lightning_optimizers = self._variant.wrapped
        self._module = pl_module
        return settings

    def _choose(self, trainer: Any, setup: OptimizerSetup, precision: Precision, overrides: ModuleOverrides,
                settings: StepSettings, step_schedulers: List[LRSchedulerConfig], manual: bool) -> StepVariant:
        """The step variant for this fit (see the module docstring)."""
        optimizers = setup.optimizers
        if manual:
            return ManualStep(trainer, optimizers, precision, settings.clip, overrides)
        if applies(settings, optimizers, precision, overrides, step_schedulers):
            self._start_fast_path(trainer, optimizers[0], overrides)
            return FastStep(trainer, optimizers, precision, overrides, self)
        variant = TruncatedBPTTStep if settings.tbptt is not None else AutomaticStep
        return variant(trainer, optimizers, precision, overrides, settings, setup.frequencies, step_schedulers)

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        """Resume the optimizers' ``frequency`` rotation where the step count says it is."""
        self._variant.train_start(trainer)
        # Every plugin's ``configure_model`` has run (DDP may have wrapped the module): decide the
        # fast path again at the first batch.
        self._fast_path_changed()

    @hookimpl
    def on_train_epoch_start(self, trainer: Any) -> None:
        """Pick this epoch's accumulation factor from an ``{epoch: k}`` schedule."""
        self._variant.epoch_start(trainer)

    @hookimpl
    def on_train_epoch_end(self, trainer: Any) -> None:
        """Step the ``interval='epoch'`` schedulers (automatic optimization; plateau ones with their metric).

        An epoch of unknown length cannot tell its last batch in advance: its last, incomplete
        accumulation group steps here. An epoch cut short (``should_stop``, a skipped rest)
        drops its unfinished group, as Lightning does.
        """
        self._variant.epoch_end(trainer)

    @hookimpl
    def teardown(self, trainer: Any, stage: str) -> None:
        """Turn anomaly detection back to what it was before ``fit``; stop watching the dispatch."""
        self._module = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._anomaly_before is not None:
            torch.autograd.set_detect_anomaly(self._anomaly_before)
            self._anomaly_before = None

    # ---- optimizer steps (also what LightningOptimizer.step calls) --------------------------------
    def step_optimizer(self, trainer: Any, index: int, closure: Optional[Callable[[], Any]]) -> Any:
        """Step optimizer ``index`` through the precision: closure, unscale, ``on_before_optimizer_step``,
        clipping, step; under manual optimization also count ``global_step`` (``LightningOptimizer.step``)."""
        return self._variant.step_optimizer(trainer, index, closure)

    # ---- behaviour hooks ------------------------------------------------------------------------
    @hookimpl
    def backward(self, trainer: Any, pl_module: LightningModule, loss: torch.Tensor, optimizer: Any,
                 optimizer_idx: Optional[int]) -> bool:
        """Scale the loss (GradScaler), then the module's ``backward`` if overridden, else ``loss.backward()``."""
        if self._scale is not None:
            loss = self._scale(loss)
        if self._module_backward is not None:
            self._module_backward(loss, optimizer, optimizer_idx)
        else:
            loss.backward()
        return True

    @hookimpl
    def optimizer_step(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int,
                       closure: Any) -> bool:
        """The module's ``optimizer_step`` if overridden (given a :class:`LightningOptimizer`), else a step.

        On the fast path this is ``optimizer.step()``; otherwise the step goes through
        :meth:`step_optimizer` (precision, ``on_before_optimizer_step``, clipping).
        """
        return self._variant.optimizer_step(trainer, pl_module, optimizer, optimizer_idx, closure)

    @hookimpl
    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> bool:
        """Lightning's default: ``scheduler.step()``, or ``scheduler.step(metric)`` for a monitored one."""
        default_scheduler_step(scheduler, metric)
        return True

    @hookimpl
    def optimizer_zero_grad(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int) -> bool:
        """The module's ``optimizer_zero_grad`` if overridden, else ``optimizer.zero_grad()``."""
        if self._module_zero_grad is not None:
            self._module_zero_grad(trainer.current_epoch, trainer.state.batch_idx, optimizer, optimizer_idx)
        else:
            optimizer.zero_grad()
        return True
