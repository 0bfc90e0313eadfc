"""The fast path: automatic optimization at its simplest, at the cost of a hand-written loop.

It applies (:func:`applies`) to a fit with automatic optimization, one optimizer that needs no
closure, no accumulation, no clipping, no GradScaler, no NaN checks, no per-step scheduler, and a
module that does not override ``optimizer_step``. A batch is then ``training_step``, backward,
``step()`` and ``zero_grad()``, one ``global_step`` counted, and nothing else.

Its batch is the optimization plugin's ``run_training_batch`` hook itself: :class:`FastPath`, a
base class of the plugin, defines that hook. It runs once per batch, and on a small model every
bytecode on it shows (benchmarks/README.md): a call from the hook into a variant object would add
a Python frame to every batch. The fit's variant object, :class:`FastStep`, does the rest of the
variant's interface (:mod:`~hookloop.plugins.step_variant`) and hands the batches back.

What a batch calls is decided once per build of the dispatch (:meth:`FastPath._prepare_fast_path`):

* **bare** — while no plugin listens to ``on_before_backward``, ``on_after_backward``,
  ``on_before_optimizer_step`` or ``on_before_zero_grad`` and ``backward``/``optimizer_step``/
  ``optimizer_zero_grad`` are still only the optimization plugin's own (no plugin replaced or
  wrapped them), a tensor loss goes straight to ``loss.backward()``, ``step()``, ``zero_grad()``;
  its shape is checked only if backward fails. Otherwise the events fire and the three behaviour
  hooks are called, in Lightning's order.
* **direct** — the ``training_step`` hook's direct form (see its hookspec): when its only
  implementation offers one, the module's ``training_step`` is called from the hook, one Python
  frame fewer per batch; an error in it is still reported as that hook's.
* ``{'loss': loss.detach()}`` is built for the batch's output only when something listens to
  ``on_train_batch_end``; otherwise the loss tensor itself is the output.

A plugin registered mid-run (also by the step itself, as ``self.log`` may) takes part at once:
the plugin calls :meth:`FastPath._fast_path_changed` at every rebuild of the dispatch
(``Dispatch.watch``) and at ``on_train_start``; the batch in flight then leaves the bare path and
prepares again before its backward.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Tuple

import torch

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.module import LightningModule
from hookloop.plugins.model_hooks import validated_loss
from hookloop.plugins.module_overrides import ModuleOverrides
from hookloop.plugins.precision import Precision
from hookloop.plugins.step_settings import StepSettings
from hookloop.plugins.step_variant import StepVariant, batch_output, count_step

__all__ = ["FastPath", "FastStep", "applies", "reject_non_scalar"]

#: Read once per batch: a module global is one lookup, ``torch.Tensor`` two.
_Tensor = torch.Tensor


def applies(settings: StepSettings, optimizers: List[Any], precision: Precision, overrides: ModuleOverrides,
            step_schedulers: List[Any]) -> bool:
    """Whether an automatic-optimization fit's configuration lets the fast path run its batches (see above)."""
    return (
        len(optimizers) == 1 and settings.accumulate == 1 and settings.clip is None
        and precision.scaler is None and not settings.check_finite and not step_schedulers and settings.tbptt is None
        and overrides.optimizer_step is None and not _requires_closure(optimizers[0])
    )


class FastPath:
    """The optimization plugin's base class that runs the fast path's batches (see the module docstring).

    While the fast path is not prepared for the current dispatch — always, when the fit's
    variant is another — a batch goes to ``self._variant.run_batch`` (the plugin's variant);
    :class:`FastStep`'s hands it back through :meth:`run_prepared`.
    """

    _variant: StepVariant

    def __init__(self) -> None:
        #: Prepared for the current dispatch: the one test per batch (cleared at every rebuild).
        self._fast_ready = False
        self._bare = False
        self._wrap_loss = True
        self._optimizer: Any = None
        # This plugin's own backward/step/zero_grad as the dispatch holds them (see ``_is_bare``).
        self._own: Tuple[Any, Any, Any] = (None, None, None)
        # The ``training_step`` hook's direct form (``finish``) and the plugin offering it, when used.
        self._direct_finish: Optional[Callable[[Any], Any]] = None
        self._direct_owner: Optional[str] = None

    def _start_fast_path(self, trainer: Any, optimizer: Any, overrides: ModuleOverrides) -> None:
        """This fit takes the fast path with ``optimizer``: it prepares at its first batch."""
        self._optimizer = optimizer
        # Never bare when the module overrides backward or optimizer_zero_grad (they run in the hooks).
        self._own = (_own_impls(self, trainer) if overrides.backward is None and overrides.optimizer_zero_grad is None
                     else (None, None, None))
        self._fast_path_changed()

    def _fast_path_changed(self) -> None:
        """The dispatch was rebuilt (or training starts): prepare again; a batch in flight leaves the bare path."""
        self._fast_ready = False
        self._bare = False

    # ---- one batch ----------------------------------------------------------------------------
    @hookimpl
    def run_training_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """Do one batch's optimization and return its output (see ``on_train_batch_end``).

        The fast path (automatic optimization, one optimizer, no accumulation, a tensor returned)
        is written out here rather than in helpers: it runs once per batch, and on a small model
        every bytecode on it shows (benchmarks/README.md). Anything else leaves it early.
        """
        if not self._fast_ready:  # another variant, or the fast path not yet prepared for this dispatch
            return self._variant.run_batch(trainer, pl_module, batch, batch_idx)
        if self._direct_finish is not None:
            # The hook's direct form: the module's step, looked up at each call as the hook does.
            try:
                output = pl_module.training_step(batch, batch_idx)
            except BaseException as exc:
                self._blame_direct_step(trainer, exc)
                raise
        else:
            output = trainer.registry.dispatch.training_step(trainer, pl_module, batch, batch_idx, None)
        if type(output) is not _Tensor:  # a seed-era dict, None (skip the batch), or a mistake
            return self._finish_output(trainer, pl_module, trainer.registry.dispatch, output)
        if not self._bare:  # something listens around the step, or the step changed the dispatch
            self._step_loss(trainer, pl_module, trainer.registry.dispatch, output)
        else:
            # Nothing listens around the step and backward/step/zero_grad are this plugin's own:
            # what a hand-written loop does. The loss's shape is checked only if backward fails.
            try:
                output.backward()
            except RuntimeError as exc:
                reject_non_scalar(output, exc)
                raise
            self._optimizer.step()
            self._optimizer.zero_grad()
        count_step(trainer)
        return {"loss": output.detach()} if self._wrap_loss else output

    def run_prepared(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """Prepare the fast path for the current dispatch, if it is not, and run the batch with it."""
        if not self._fast_ready:
            self._prepare_fast_path(trainer, pl_module, trainer.registry.dispatch)
        return self.run_training_batch(trainer, pl_module, batch, batch_idx)

    def _finish_output(self, trainer: Any, pl_module: LightningModule, hooks: Any, output: Any) -> Any:
        """The rest of a fast-path batch whose step returned something other than a tensor.

        The direct form's ``finish`` (seed-era dict logging) runs first, its errors named as the
        ``training_step`` hook's; then a ``'loss'`` is optimized, ``None`` skips the batch, and
        anything else is rejected naming ``training_step``.
        """
        finish = self._direct_finish
        if finish is not None:
            try:
                output = finish(output)
            except BaseException as exc:
                self._blame_direct_step(trainer, exc)
                raise
        loss = validated_loss(output)
        if loss is None:
            return batch_output(output)
        self._step_loss(trainer, pl_module, hooks, loss)  # prepares first if the step or finish changed the dispatch
        count_step(trainer)
        return output

    def _step_loss(self, trainer: Any, pl_module: LightningModule, hooks: Any, loss: torch.Tensor) -> None:
        """Backward, optimizer step and zero_grad of a loss the hook's own code did not step: bare if it
        may, else with their events and through the behaviour hooks.

        A step that changed the dispatch (it registered a plugin, as ``self.log`` may) prepares the
        fast path again first.
        """
        if not self._fast_ready:
            self._prepare_fast_path(trainer, pl_module, hooks)
        optimizer = self._optimizer
        if self._bare:
            try:
                loss.backward()
            except RuntimeError as exc:
                reject_non_scalar(loss, exc)
                raise
            optimizer.step()
            optimizer.zero_grad()
            return
        if loss.ndim:
            validated_loss(loss)  # a 1-element loss is fine; a larger one is rejected before any event
        # Lightning 2.x's closure order: zero_grad before backward (every batch is a group's first here).
        if hooks.on_before_zero_grad is not None:
            hooks.on_before_zero_grad(trainer, pl_module, optimizer)
        hooks.optimizer_zero_grad(trainer, pl_module, optimizer, 0)
        if hooks.on_before_backward is not None:
            hooks.on_before_backward(trainer, pl_module, loss)
        hooks.backward(trainer, pl_module, loss, optimizer, None)
        if hooks.on_after_backward is not None:
            hooks.on_after_backward(trainer, pl_module)
        if hooks.on_before_optimizer_step is not None:
            hooks.on_before_optimizer_step(trainer, pl_module, optimizer)
        hooks.optimizer_step(trainer, pl_module, optimizer, 0, None)

    # ---- what a batch calls -------------------------------------------------------------------
    def _prepare_fast_path(self, trainer: Any, pl_module: LightningModule, hooks: Any) -> None:
        """Decide, once per dispatch build (and per run), what a fast-path batch calls."""
        self._bare = self._is_bare(hooks)
        if self._bare:
            # The bare order zeroes after the step, the hooks' order before backward: a batch that took
            # the hooks' order left its gradients, which the bare path's backward would add to.
            self._optimizer.zero_grad()
        # Lightning's ``{'loss': loss.detach()}`` is built for ``on_train_batch_end`` listeners only.
        self._wrap_loss = hooks.on_train_batch_end is not None
        # The ``training_step`` event's direct form, when its only implementation offers one (see the
        # hookspec): the module's step is then called from here, one Python frame fewer per batch. The
        # offer counts only from the class that defines the implementation (a subclass overriding
        # ``training_step`` alone does not inherit it).
        owner = getattr(hooks.training_step, "__self__", None)
        offer = getattr(owner, "direct_training_step", None)
        finish = None
        if offer is not None and _defined_by_one_class(owner, "training_step", "direct_training_step"):
            finish = offer(trainer, pl_module)
        self._direct_finish = finish
        self._direct_owner = trainer.registry.get_name(owner) if finish is not None else None
        self._fast_ready = True

    def _is_bare(self, hooks: Any) -> bool:
        """True when a fast-path step may call torch directly: no event around it has a listener, and
        ``backward``/``optimizer_step``/``optimizer_zero_grad`` are still only this plugin's own (no plugin
        replaced or wrapped them). Asked again whenever the dispatch is rebuilt, so a plugin registered
        mid-run takes effect at its next batch.
        """
        backward, step, zero_grad = self._own
        return (backward is not None and hooks.backward is backward and hooks.optimizer_step is step
                and hooks.optimizer_zero_grad is zero_grad and hooks.on_before_backward is None
                and hooks.on_after_backward is None and hooks.on_before_optimizer_step is None
                and hooks.on_before_zero_grad is None)

    def _blame_direct_step(self, trainer: Any, exc: BaseException) -> None:
        """Name the ``training_step`` hook's plugin as the culprit of an error raised in its direct form.

        Its frame is not on the traceback (that is the point of the form), so the deepest hook frame
        would be this plugin's ``run_training_batch``; a deeper one (a hook the step called) still wins.
        """
        found = trainer.registry.culprit(exc)
        if found is None or found == (trainer.registry.get_name(self), "run_training_batch"):
            try:
                exc._engine_culprit = (self._direct_owner, "training_step")  # type: ignore[attr-defined]
            except Exception:  # best effort: an exception refusing attributes is re-raised as it is
                pass


class FastStep(StepVariant):
    """The fast path's variant object: a :class:`StepVariant` whose batches the plugin's hook runs.

    Args (besides :class:`StepVariant`'s ``trainer``, ``optimizers``, ``precision``, ``overrides``):
        path: the optimization plugin (a :class:`FastPath`), which runs this variant's batches.
    """

    def __init__(self, trainer: Any, optimizers: List[Any], precision: Precision, overrides: ModuleOverrides,
                 path: FastPath) -> None:
        super().__init__(trainer, optimizers, precision, None, overrides)
        self._path = path

    def run_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """A batch while the fast path is not prepared (the first, and the first after each change of the
        dispatch): the plugin prepares it and runs the batch; later batches go there directly."""
        return self._path.run_prepared(trainer, pl_module, batch, batch_idx)

    def optimizer_step(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int,
                       closure: Any) -> bool:
        """The ``optimizer_step`` hook's work: ``optimizer.step()`` (``on_before_optimizer_step`` fired already)."""
        optimizer.step()
        return True


def reject_non_scalar(loss: torch.Tensor, exc: BaseException) -> None:
    """After ``loss.backward()`` failed: raise the step's own error if the loss is not a scalar."""
    if loss.numel() != 1:
        try:
            validated_loss(loss)
        except MisconfigurationException as error:
            raise error from exc


def _requires_closure(optimizer: Any) -> bool:
    """True for optimizers whose ``step`` cannot run without a closure (LBFGS)."""
    try:
        param = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


def _own_impls(plugin: Any, trainer: Any) -> Tuple[Any, Any, Any]:
    """``plugin``'s ``backward``/``optimizer_step``/``optimizer_zero_grad`` functions as registered.

    The dispatch hands out exactly these objects for an event whose only implementation is
    this plugin's, so ``hooks.backward is own[0]`` tells that nothing else takes part.
    """
    registry = trainer.registry
    return (registry.implementation(plugin, "backward"), registry.implementation(plugin, "optimizer_step"),
            registry.implementation(plugin, "optimizer_zero_grad"))


def _defined_by_one_class(obj: Any, *names: str) -> bool:
    """True when the class that gives ``obj`` each of ``names`` is the same for all of them."""
    owners = {next((cls for cls in type(obj).__mro__ if name in vars(cls)), None) for name in names}
    return len(owners) == 1 and None not in owners
