"""``LightningOptimizer``: the optimizers as the module sees them (``self.optimizers()``).

Each wraps one of ``trainer.optimizers``. Its ``step(closure=None)`` goes through the trainer —
the fit's step variant (:mod:`hookloop.plugins.step_variant`) runs the closure, the active
precision (GradScaler unscale and step), ``on_before_optimizer_step`` and clipping, and under
manual optimization counts ``global_step``. Everything else (``param_groups``, ``state_dict()``,
``zero_grad()``, any attribute) is the wrapped optimizer's, which ``.optimizer`` holds.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

if TYPE_CHECKING:
    from hookloop.plugins.step_variant import StepVariant

__all__ = ["LightningOptimizer"]


class LightningOptimizer:
    """What ``self.optimizers()`` returns: a torch optimizer whose ``step`` goes through the trainer.

    ``step(closure=None)`` runs the closure, the active precision (GradScaler unscale/step),
    ``on_before_optimizer_step``, gradient clipping (automatic optimization) and counts
    ``global_step`` under manual optimization. Everything else (``param_groups``,
    ``state_dict()``, ``zero_grad()``...) is the wrapped optimizer's; ``.optimizer`` is it.
    """

    def __init__(self, optimizer: Any, variant: "StepVariant", trainer: Any, index: int) -> None:
        self.__dict__.update(optimizer=optimizer, _variant=variant, _trainer=trainer, _index=index)

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
        return self._variant.step_optimizer(self._trainer, self._index, closure)

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
