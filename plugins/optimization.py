"""Built-in ``optimization``: builds optimizers and does each batch's backward, step and zero_grad.

Everything is decided once, in ``configure_model``:

* **fast path** — automatic optimization, one optimizer that needs no closure, no
  accumulation, no clipping, no GradScaler, no NaN checks, no per-step scheduler, and the
  module does not override ``optimizer_step``: one ``training_step``, backward, step and
  zero_grad per batch, nothing else.
* **general path** — several optimizers (seed-era ``training_step(batch, batch_idx,
  optimizer_idx)``, with ``requires_grad`` toggled and optional ``frequency`` turns), gradient
  accumulation (``int`` or ``{epoch: k}``), clipping, mixed precision, LBFGS-style closures,
  the module's own ``optimizer_step`` (e.g. learning-rate warm-up), ``terminate_on_nan`` and
  ``detect_anomaly``, per-step schedulers.
* **manual optimization** — ``automatic_optimization = False``: only ``training_step`` runs;
  the module calls ``self.optimizers()``, ``self.manual_backward(loss)`` and ``opt.step()``.

Events around a step, in order: ``on_before_backward``, ``on_after_backward``,
``on_before_optimizer_step`` (gradients unscaled, not yet clipped, as in Lightning),
``on_before_zero_grad``. ``global_step`` counts batches whose optimizer(s) stepped
(automatic) or every ``opt.step()`` (manual), as Lightning does.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Any, Callable, Iterator, List, Optional, Tuple

import torch

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.markers import SKIPPED_BATCH
from hookloop.engine.module import LightningModule
from hookloop.plugins.model_hooks import validated_loss
from hookloop.plugins.module_overrides import ModuleOverrides, takes_optimizer_idx
from hookloop.plugins.optimizer_config import LRSchedulerConfig, normalize_optimizers, step_scheduler
from hookloop.plugins.precision import FULL_PRECISION, Precision
from hookloop.plugins.step_settings import StepSettings, accumulating, accumulation_for_epoch, steps_optimizer

#: Read once per batch on the fast path: a module global is one lookup, ``torch.Tensor`` two.
_Tensor = torch.Tensor

__all__ = ["OptimizationPlugin", "LightningOptimizer", "normalize_optimizers", "SKIPPED", "accumulating",
           "steps_optimizer", "accumulation_for_epoch"]

#: A non-``None`` stand-in for a skipped batch (firstresult hooks treat ``None`` as "not handled").
SKIPPED = SKIPPED_BATCH


class LightningOptimizer:
    """What ``self.optimizers()`` returns: a torch optimizer whose ``step`` goes through the trainer.

    ``step(closure=None)`` runs the closure, the active precision (GradScaler unscale/step),
    ``on_before_optimizer_step``, gradient clipping (automatic optimization) and counts
    ``global_step`` under manual optimization. Everything else (``param_groups``,
    ``state_dict()``, ``zero_grad()``...) is the wrapped optimizer's; ``.optimizer`` is it.
    """

    def __init__(self, optimizer: Any, plugin: "OptimizationPlugin", trainer: Any, index: int) -> None:
        self.__dict__.update(optimizer=optimizer, _plugin=plugin, _trainer=trainer, _index=index)

    def __getattr__(self, name: str) -> Any:
        try:
            optimizer = self.__dict__["optimizer"]
        except KeyError:  # half-built (copy/pickle): no forwarding yet
            raise AttributeError(name) from None
        return getattr(optimizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.optimizer, name, value)

    def __repr__(self) -> str:
        return f"LightningOptimizer({self.optimizer!r})"

    def step(self, closure: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
        """Step the optimizer through the trainer (closure, precision, hooks, clipping, step count)."""
        return self._plugin.step_optimizer(self._trainer, self._index, closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the wrapped optimizer's gradients."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @contextlib.contextmanager
    def toggle_model(self) -> Iterator[None]:
        """Within the block, only this optimizer's parameters require grad (``toggle_optimizer``)."""
        module = self._trainer.lightning_module
        module.toggle_optimizer(self)
        try:
            yield
        finally:
            module.untoggle_optimizer(self)


def _do_nothing() -> None:
    return None


class _CachedClosure:
    """The closure handed to ``optimizer_step``: gradients are already there for its first call.

    The plugin runs ``training_step`` and backward before stepping (so ``on_after_backward``
    precedes ``on_before_optimizer_step`` and a seed-era ``optimizer.step()`` without the
    closure still works). The first call returns that loss; later calls (LBFGS re-evaluating
    at new weights) zero the gradients and run ``training_step`` and backward again.
    """

    __slots__ = ("plugin", "trainer", "module", "batch", "batch_idx", "optimizer", "idx", "loss", "calls")

    def __init__(self, plugin: "OptimizationPlugin", trainer: Any, module: Any, batch: Any, batch_idx: int,
                 optimizer: Any, idx: Optional[int], loss: torch.Tensor) -> None:
        self.plugin, self.trainer, self.module, self.batch = plugin, trainer, module, batch
        self.batch_idx, self.optimizer, self.idx, self.loss, self.calls = batch_idx, optimizer, idx, loss, 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.calls == 1:
            return self.loss
        self.optimizer.zero_grad()
        output = self.trainer.hooks.training_step(self.trainer, self.module, self.batch, self.batch_idx, self.idx)
        loss = validated_loss(output)
        if loss is None:
            return None
        self.loss = self.plugin._backward(self.trainer, self.module, loss, self.optimizer, self.idx)
        return self.loss


def _requires_closure(optimizer: Any) -> bool:
    """True for optimizers whose ``step`` cannot run without a closure (LBFGS)."""
    try:
        param = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


class OptimizationPlugin:
    """Built-in ``optimization``: automatic and manual optimization (see the module docstring)."""

    def __init__(self) -> None:
        self._fast = False
        self._own: Tuple[Any, Any, Any] = (None, None, None)
        # Whether the fast path may call torch directly; decided again after every rebuild of the
        # dispatch, which clears ``_ready`` (``Dispatch.watch``).
        self._bare = False
        self._wrap_loss = True
        self._ready = False
        self._unwatch: Optional[Callable[[], None]] = None
        # The ``training_step`` hook's direct form (``finish``) and the plugin offering it, when used.
        self._direct_finish: Optional[Callable[[Any], Any]] = None
        self._direct_owner: Optional[str] = None
        self._optimizer: Any = None
        self._precision: Precision = FULL_PRECISION
        self._scale: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self._module_backward: Optional[Callable[..., Any]] = None
        self._module_step: Optional[Callable[..., Any]] = None
        self._module_zero_grad: Optional[Callable[..., Any]] = None
        self._wrapped: List[LightningOptimizer] = []
        self._accumulate: Any = 1
        self._k = 1
        self._frequencies: List[int] = []
        self._batches_seen = 0
        self._clip: Optional[Callable[[Any], None]] = None
        self._check_finite = False
        self._anomaly = False
        self._anomaly_before: Optional[bool] = None
        self._step_schedulers: List[LRSchedulerConfig] = []
        self._manual = False
        #: Optimizer indices holding accumulated gradients not yet stepped.
        self._pending: set = set()

    # ---- set-up -------------------------------------------------------------------------------
    @hookimpl
    def configure_model(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Build ``trainer.optimizers``/``trainer.lr_scheduler_configs`` and choose the path for ``fit``."""
        if stage != "fit":
            return
        setup = normalize_optimizers(pl_module.configure_optimizers())
        trainer.optimizers = setup.optimizers
        trainer.lr_scheduler_configs = setup.lr_scheduler_configs
        self._wrapped = [LightningOptimizer(opt, self, trainer, i) for i, opt in enumerate(setup.optimizers)]
        #: The optimizers as the module sees them (``self.optimizers()``).
        trainer.lightning_optimizers = self._wrapped
        self._frequencies = setup.frequencies
        self._pending = set()
        self._precision = getattr(trainer, "precision_plugin", None) or FULL_PRECISION
        self._scale = self._precision.pre_backward if self._precision.scaler is not None else None
        self._manual = not pl_module.automatic_optimization
        overrides = ModuleOverrides.of(trainer, pl_module, self._precision)
        self._module_backward = overrides.backward
        self._module_step = overrides.optimizer_step
        self._module_zero_grad = overrides.optimizer_zero_grad
        settings = StepSettings.of(trainer, pl_module)
        self._accumulate = settings.accumulate
        self._k = accumulation_for_epoch(settings.accumulate, trainer.current_epoch)
        self._clip = settings.clip
        self._check_finite = settings.check_finite
        self._anomaly = settings.anomaly
        if self._anomaly:
            self._anomaly_before = torch.is_anomaly_enabled()
            torch.autograd.set_detect_anomaly(True)
        self._step_schedulers = [c for c in setup.lr_scheduler_configs if c.interval == "step"]
        n = len(setup.optimizers)
        if n > 1 and not self._manual and not takes_optimizer_idx(pl_module):
            raise MisconfigurationException(
                f"`configure_optimizers` returned {n} optimizers, but {type(pl_module).__name__}.training_step "
                "takes no `optimizer_idx`. Add it (seed-era: training_step(self, batch, batch_idx, optimizer_idx)) "
                "or set `self.automatic_optimization = False` and step the optimizers yourself."
            )
        self._fast = (
            not self._manual and n == 1 and self._accumulate == 1 and self._clip is None
            and self._scale is None and not self._check_finite and not self._step_schedulers
            and self._module_step is None and not _requires_closure(setup.optimizers[0])
        )
        self._optimizer = setup.optimizers[0] if n else None
        # This plugin's own backward/step/zero_grad as the dispatch holds them (see ``_optimize``).
        self._own = (_own_impls(self, trainer) if self._fast and self._module_backward is None
                     and self._module_zero_grad is None else (None, None, None))
        self._ready = False  # ask _is_bare again at the next batch
        if self._unwatch is None:
            self._unwatch = trainer.registry.dispatch.watch(self._dispatch_rebuilt)
        if not self._manual:
            for opt in setup.optimizers:  # start from clean gradients, as the first zero_grad would
                opt.zero_grad()

    @hookimpl
    def on_train_start(self, trainer: Any) -> None:
        """Resume the optimizers' ``frequency`` rotation where the step count says it is."""
        self._batches_seen = trainer.state.global_step
        # Every plugin's ``configure_model`` has run (DDP may have wrapped the module): decide the
        # fast path again at the first batch.
        self._ready = False

    @hookimpl
    def on_train_epoch_start(self, trainer: Any) -> None:
        """Pick this epoch's accumulation factor from an ``{epoch: k}`` schedule."""
        if isinstance(self._accumulate, dict):
            self._k = accumulation_for_epoch(self._accumulate, trainer.current_epoch)

    @hookimpl
    def teardown(self, trainer: Any, stage: str) -> None:
        """Turn anomaly detection back to what it was before ``fit``; stop watching the dispatch."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._anomaly_before is not None:
            torch.autograd.set_detect_anomaly(self._anomaly_before)
            self._anomaly_before = None

    # ---- one batch ----------------------------------------------------------------------------
    @hookimpl
    def run_training_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """Do one batch's optimization and return its output (see ``on_train_batch_end``).

        The fast path (automatic optimization, one optimizer, no accumulation, a tensor returned)
        is written out here rather than in helpers: it runs once per batch, and on a small model
        every bytecode on it shows (benchmarks/README.md). Anything else leaves it early.
        """
        if not self._ready:  # always true while the fast path is off
            if not self._fast:
                return self._run_general(trainer, pl_module, batch, batch_idx)
            self._prepare_fast_path(trainer, pl_module, trainer.registry.dispatch)
        finish = self._direct_finish
        if finish is not None:
            # The hook's direct form: the module's step, looked up at each call as the hook does.
            try:
                output = pl_module.training_step(batch, batch_idx)
            except BaseException as exc:
                self._blame_direct_step(trainer, exc)
                raise
        else:
            output = trainer.registry.dispatch.training_step(trainer, pl_module, batch, batch_idx, None)
        if type(output) is not _Tensor:  # a seed-era dict, None (skip the batch), or a mistake
            return self._finish_output(trainer, pl_module, trainer.registry.dispatch, output, finish)
        if not self._ready:  # the step registered a plugin (``self.log`` may): it joins now
            self._prepare_fast_path(trainer, pl_module, trainer.registry.dispatch)
        if self._bare:
            # Nothing listens around the step and backward/step/zero_grad are this plugin's own:
            # what a hand-written loop does. The loss's shape is checked only if backward fails.
            optimizer = self._optimizer
            try:
                output.backward()
            except RuntimeError as exc:
                _reject_non_scalar(output, exc)
                raise
            optimizer.step()
            optimizer.zero_grad()
        else:
            if output.ndim:
                validated_loss(output)  # a 1-element loss is fine; a larger one is rejected before any event
            self._step_loss(trainer, pl_module, trainer.registry.dispatch, output)
        trainer.state.global_step += 1
        return {"loss": output.detach()} if self._wrap_loss else output

    def _run_general(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """A batch off the fast path: manual optimization, several optimizers, accumulation..."""
        if self._manual or not trainer.optimizers:
            return _batch_output(trainer.hooks.training_step(trainer, pl_module, batch, batch_idx, None))
        return self._optimize_general(trainer, pl_module, batch, batch_idx)

    def _finish_output(self, trainer: Any, pl_module: LightningModule, hooks: Any, output: Any,
                       finish: Optional[Callable[[Any], Any]]) -> Any:
        """The rest of a fast-path batch whose step returned something other than a tensor.

        The direct form's ``finish`` (seed-era dict logging) runs first, its errors named as the
        ``training_step`` hook's; then a ``'loss'`` is optimized, ``None`` skips the batch, and
        anything else is rejected naming ``training_step``.
        """
        if finish is not None:
            try:
                output = finish(output)
            except BaseException as exc:
                self._blame_direct_step(trainer, exc)
                raise
        if not self._ready:
            self._prepare_fast_path(trainer, pl_module, hooks)
        loss = validated_loss(output)
        if loss is None:
            return _batch_output(output)
        self._step_loss(trainer, pl_module, hooks, loss)
        trainer.state.global_step += 1
        return output

    def _step_loss(self, trainer: Any, pl_module: LightningModule, hooks: Any, loss: torch.Tensor) -> None:
        """Backward, optimizer step and zero_grad of a fast-path batch's validated loss, with their events."""
        optimizer = self._optimizer
        if self._bare:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return
        if hooks.on_before_backward is not None:
            hooks.on_before_backward(trainer, pl_module, loss)
        hooks.backward(trainer, pl_module, loss, optimizer, None)
        if hooks.on_after_backward is not None:
            hooks.on_after_backward(trainer, pl_module)
        if hooks.on_before_optimizer_step is not None:
            hooks.on_before_optimizer_step(trainer, pl_module, optimizer)
        hooks.optimizer_step(trainer, pl_module, optimizer, 0, None)
        if hooks.on_before_zero_grad is not None:
            hooks.on_before_zero_grad(trainer, pl_module, optimizer)
        hooks.optimizer_zero_grad(trainer, pl_module, optimizer, 0)

    def _prepare_fast_path(self, trainer: Any, pl_module: LightningModule, hooks: Any) -> None:
        """Decide, once per dispatch build (and per run), what a fast-path batch calls."""
        self._bare = self._is_bare(hooks)
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
        self._ready = True

    def _dispatch_rebuilt(self) -> None:
        """``Dispatch.watch`` callback: a plugin joined or left, so the fast path is decided again."""
        self._ready = False

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

    def _is_bare(self, hooks: Any) -> bool:
        """True when a fast-path step may call torch directly: no event around it has a listener, and
        ``backward``/``optimizer_step``/``optimizer_zero_grad`` are still only this plugin's (no plugin
        replaced or wrapped them). Asked again whenever the dispatch is rebuilt, so a plugin registered
        mid-run takes effect at its next batch.
        """
        backward, step, zero_grad = self._own
        return (backward is not None and hooks.backward is backward and hooks.optimizer_step is step
                and hooks.optimizer_zero_grad is zero_grad and hooks.on_before_backward is None
                and hooks.on_after_backward is None and hooks.on_before_optimizer_step is None
                and hooks.on_before_zero_grad is None)

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

    def _optimize_general(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        optimizers = trainer.optimizers
        multi = len(optimizers) > 1
        k = self._k
        total = trainer.num_training_batches
        step_now = steps_optimizer(batch_idx, k, total)
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
        if self._frequencies:
            self._batches_seen += 1
        if stepped:
            trainer.state.global_step += 1
            if self._step_schedulers:
                self._step_lr_schedulers(trainer, stepped)
        if not multi:
            return outputs[0]
        return outputs[0] if self._frequencies else outputs

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
                return _batch_output(output)
            if self._check_finite:
                self._check_loss(trainer, loss, batch_idx)
            if k > 1:
                loss = loss / k  # the mean over the k accumulated batches
            loss = self._backward(trainer, pl_module, loss, optimizer, idx)
        if not step_now:
            self._pending.add(idx or 0)
            return _batch_output(output)
        self._pending.discard(idx or 0)
        closure = _CachedClosure(self, trainer, pl_module, batch, batch_idx, optimizer, idx, loss)
        hooks.optimizer_step(trainer, pl_module, optimizer, idx or 0, closure)
        if hooks.on_before_zero_grad is not None:
            hooks.on_before_zero_grad(trainer, pl_module, optimizer)
        hooks.optimizer_zero_grad(trainer, pl_module, optimizer, idx or 0)
        if trainer.terminate_on_nan:
            self._check_parameters(trainer, pl_module, batch_idx)
        return _batch_output(output)

    def _backward(self, trainer: Any, pl_module: LightningModule, loss: torch.Tensor, optimizer: Any,
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

    # ---- optimizer steps (also what LightningOptimizer.step calls) --------------------------------
    def step_optimizer(self, trainer: Any, index: int, closure: Optional[Callable[[], Any]]) -> Any:
        """Step optimizer ``index`` through the precision: closure, unscale, ``on_before_optimizer_step``,
        clipping, step; under manual optimization also count ``global_step``."""
        optimizer = trainer.optimizers[index]
        module = trainer.lightning_module
        hooks = trainer.hooks
        clip = self._clip

        def after_closure() -> None:
            if hooks.on_before_optimizer_step is not None:
                hooks.on_before_optimizer_step(trainer, module, optimizer)
            if clip is not None:
                clip(optimizer)

        result = self._precision.optimizer_step(optimizer, closure if closure is not None else _do_nothing,
                                                after_closure)
        if self._manual:
            trainer.state.global_step += 1
        return result

    def _flush_pending(self, trainer: Any) -> None:
        module = trainer.lightning_module
        hooks = trainer.hooks
        if trainer.num_training_batches != math.inf:
            for idx in self._pending:
                trainer.optimizers[idx].zero_grad()
            self._pending.clear()
            return
        for idx in sorted(self._pending):
            optimizer = trainer.optimizers[idx]
            hooks.optimizer_step(trainer, module, optimizer, idx, None)
            if hooks.on_before_zero_grad is not None:
                hooks.on_before_zero_grad(trainer, module, optimizer)
            hooks.optimizer_zero_grad(trainer, module, optimizer, idx)
        self._pending.clear()
        trainer.state.global_step += 1

    def _step_lr_schedulers(self, trainer: Any, stepped: List[int]) -> None:
        step = trainer.state.global_step
        for config in self._step_schedulers:
            if (config.opt_idx is None or config.opt_idx in stepped) and step % config.frequency == 0:
                step_scheduler(trainer, config)

    @hookimpl
    def on_train_epoch_end(self, trainer: Any) -> None:
        """Step the ``interval='epoch'`` schedulers (automatic optimization; plateau ones with their metric).

        An epoch of unknown length cannot tell its last batch in advance: its last, incomplete
        accumulation group steps here. An epoch cut short (``should_stop``, a skipped rest)
        drops its unfinished group, as Lightning does.
        """
        if self._manual:
            return
        if self._pending:
            self._flush_pending(trainer)
        epoch = trainer.current_epoch
        for config in trainer.lr_scheduler_configs:
            if config.interval == "epoch" and (epoch + 1) % config.frequency == 0:
                step_scheduler(trainer, config)

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
        if self._fast:
            optimizer.step()
            return True
        wrapped = self._wrapped[optimizer_idx] if optimizer_idx < len(self._wrapped) else None
        if wrapped is None or wrapped.optimizer is not optimizer:
            wrapped = next((w for w in self._wrapped if w.optimizer is optimizer), None)
        if wrapped is None:  # an optimizer the trainer did not build: step it as asked
            optimizer.step(closure) if closure is not None else optimizer.step()
            return True
        if self._module_step is not None:
            self._module_step(trainer.current_epoch, trainer.state.batch_idx, wrapped, optimizer_idx,
                              closure if closure is not None else _do_nothing)
        else:
            wrapped.step(closure)
        return True

    @hookimpl
    def optimizer_zero_grad(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int) -> bool:
        """The module's ``optimizer_zero_grad`` if overridden, else ``optimizer.zero_grad()``."""
        if self._module_zero_grad is not None:
            self._module_zero_grad(trainer.current_epoch, trainer.state.batch_idx, optimizer, optimizer_idx)
        else:
            optimizer.zero_grad()
        return True


def _own_impls(plugin: Any, trainer: Any) -> Tuple[Any, Any, Any]:
    """``plugin``'s ``backward``/``optimizer_step``/``optimizer_zero_grad`` functions as registered.

    The dispatch hands out exactly these objects for an event whose only implementation is
    this plugin's, so ``hooks.backward is own[0]`` tells that nothing else takes part.
    """
    own = []
    for name in ("backward", "optimizer_step", "optimizer_zero_grad"):
        impls = getattr(trainer.registry.hook, name).get_hookimpls()
        own.append(next((impl.function for impl in impls if impl.plugin is plugin), None))
    return own[0], own[1], own[2]


def _defined_by_one_class(obj: Any, *names: str) -> bool:
    """True when the class that gives ``obj`` each of ``names`` is the same for all of them."""
    owners = {next((cls for cls in type(obj).__mro__ if name in vars(cls)), None) for name in names}
    return len(owners) == 1 and None not in owners


def _position(trainer: Any, batch_idx: int) -> str:
    return f"global step {trainer.state.global_step}, epoch {trainer.current_epoch}, batch index {batch_idx}"


def _reject_non_scalar(loss: torch.Tensor, exc: BaseException) -> None:
    """After ``loss.backward()`` failed: raise the step's own error if the loss is not a scalar."""
    if loss.numel() != 1:
        try:
            validated_loss(loss)
        except MisconfigurationException as error:
            raise error from exc


def _batch_output(output: Any) -> Any:
    """The step's output as ``on_train_batch_end`` gets it: a loss tensor becomes ``{'loss': loss.detach()}``."""
    if output is None:
        return SKIPPED
    if isinstance(output, torch.Tensor):
        return {"loss": output.detach()}
    return output
