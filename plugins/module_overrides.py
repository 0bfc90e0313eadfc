"""The module's own ``backward``, ``optimizer_step`` and ``optimizer_zero_grad``, called in its era's signature.

A ``LightningModule`` may override any of the three; every era's signature works, told apart
once per fit from the override's parameters:

* ``backward``: 0.8 ``(trainer, loss, optimizer, optimizer_idx)``, 1.x ``(loss, optimizer,
  optimizer_idx)``, ``(loss, optimizer)``, 2.x ``(loss)``;
* ``optimizer_step``: seed era ``(epoch, batch_idx, optimizer, optimizer_idx, closure, [on_tpu,
  using_native_amp, using_lbfgs])`` (the index may have any name, e.g. ``optimizer_i``), 2.x
  ``(epoch, batch_idx, optimizer, optimizer_closure=None)``;
* ``optimizer_zero_grad``: ``(epoch, batch_idx, optimizer, optimizer_idx)``, 2.x without the index.

:meth:`ModuleOverrides.of` builds a caller with one fixed signature for each override (``None``
when the module keeps the default); the optimization plugin's behaviour hooks call them.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import torch

from hookloop.engine.module import LightningModule, is_overridden
from hookloop.plugins.precision import Precision

__all__ = ["ModuleOverrides", "NO_OVERRIDES", "takes_optimizer_idx"]


@dataclass(frozen=True)
class ModuleOverrides:
    """Callers of the module's overrides, ``None`` for each one it does not override."""

    #: ``backward(loss, optimizer, optimizer_idx)``.
    backward: Optional[Callable[[Any, Any, Optional[int]], Any]]
    #: ``optimizer_step(epoch, batch_idx, optimizer, optimizer_idx, closure)``.
    optimizer_step: Optional[Callable[[int, int, Any, int, Any], Any]]
    #: ``optimizer_zero_grad(epoch, batch_idx, optimizer, optimizer_idx)``.
    optimizer_zero_grad: Optional[Callable[[int, int, Any, int], Any]]

    @classmethod
    def of(cls, trainer: Any, module: LightningModule, precision: Precision) -> "ModuleOverrides":
        """The callers for ``module``'s overrides (``precision`` answers a seed-era ``using_native_amp``)."""
        return cls(
            _backward_caller(trainer, module) if is_overridden("backward", module) else None,
            _step_caller(module, precision) if is_overridden("optimizer_step", module) else None,
            _zero_grad_caller(module) if is_overridden("optimizer_zero_grad", module) else None,
        )


def takes_optimizer_idx(module: LightningModule) -> bool:
    """Whether the module's ``training_step`` takes ``optimizer_idx`` (seed-era several optimizers)."""
    return "optimizer_idx" in _names(module.training_step)


def _names(fn: Any) -> List[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _positional_names(fn: Any) -> List[str]:
    """The parameters of ``fn`` that a positional argument can fill (not ``*args``/``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _backward_caller(trainer: Any, module: Any) -> Callable[..., Any]:
    """Call the module's overridden ``backward`` with the arguments its signature asks for (0.8, 1.x or 2.x)."""
    names = _names(module.backward)
    if names and names[0] == "trainer":  # 0.8: backward(self, trainer, loss, optimizer, optimizer_idx)
        return lambda loss, opt, idx: module.backward(trainer, loss, opt, idx)
    if "optimizer_idx" in names:  # 1.x: backward(self, loss, optimizer, optimizer_idx)
        return lambda loss, opt, idx: module.backward(loss, opt, idx)
    if "optimizer" in names:
        return lambda loss, opt, idx: module.backward(loss, opt)
    return lambda loss, opt, idx: module.backward(loss)  # 2.x: backward(self, loss)


def _step_caller(module: Any, precision: Precision) -> Callable[..., Any]:
    """Call the module's overridden ``optimizer_step`` in its era's signature."""
    names = _names(module.optimizer_step)
    positional = _positional_names(module.optimizer_step)
    # Seed era: an optimizer index 4th (named optimizer_idx in 0.8/1.x, optimizer_i or anything else in
    # older code), then the closure; 2.x: optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None).
    seed = "optimizer_idx" in names or any(
        n in names for n in ("second_order_closure", "on_tpu", "using_native_amp", "using_lbfgs")) or (
        len(positional) >= 5 and "closure" not in positional[3])
    if not seed:
        return lambda epoch, batch_idx, opt, idx, closure: module.optimizer_step(epoch, batch_idx, opt, closure)
    extras = [n for n in ("on_tpu", "using_native_amp", "using_lbfgs") if n in names]

    def seed_step(epoch: int, batch_idx: int, opt: Any, idx: int, closure: Any) -> Any:
        kwargs = {}
        if extras:  # 0.8/1.x flags, computed only for overrides that ask for them
            values = {"on_tpu": False, "using_native_amp": precision.scaler is not None,
                      "using_lbfgs": isinstance(getattr(opt, "optimizer", opt), torch.optim.LBFGS)}
            kwargs = {n: values[n] for n in extras}
        return module.optimizer_step(epoch, batch_idx, opt, idx, closure, **kwargs)

    return seed_step


def _zero_grad_caller(module: Any) -> Callable[..., Any]:
    """Call the module's overridden ``optimizer_zero_grad`` (2.x drops ``optimizer_idx``)."""
    if "optimizer_idx" in _names(module.optimizer_zero_grad):
        return lambda epoch, batch_idx, opt, idx: module.optimizer_zero_grad(epoch, batch_idx, opt, idx)
    return lambda epoch, batch_idx, opt, idx: module.optimizer_zero_grad(epoch, batch_idx, opt)


#: A module that overrides none of the three (also the plugin's value before its first fit).
NO_OVERRIDES = ModuleOverrides(None, None, None)
