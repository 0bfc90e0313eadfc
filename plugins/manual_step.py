"""Manual optimization (``automatic_optimization = False``): the module steps its optimizers itself.

Only ``training_step`` runs per batch. Inside it the module calls ``self.optimizers()`` (the
``LightningOptimizer`` wrappers), ``self.manual_backward(loss)`` (``on_before_backward``, the
``backward`` hook with the precision's loss scaling, ``on_after_backward``) and ``opt.step()``
(the closure, the precision's unscale and step, ``on_before_optimizer_step``) and
``opt.zero_grad()``. Every ``opt.step()`` counts one ``global_step``, as in Lightning.

Nothing is stepped for the module: no clipping or accumulation (those flags are refused, see
:mod:`~hookloop.plugins.step_settings`) and no scheduler — the module steps ``self.lr_schedulers()``
where it wants (for example in ``on_train_epoch_end``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from hookloop.plugins.step_variant import StepVariant, count_step

__all__ = ["ManualStep"]


class ManualStep(StepVariant):
    """The manual-optimization variant (see the module docstring); constructed as a :class:`StepVariant`.

    A batch is :meth:`StepVariant.run_batch`'s: ``training_step`` only.
    """

    def step_optimizer(self, trainer: Any, index: int, closure: Optional[Callable[[], Any]]) -> Any:
        """``opt.step()``: the step through the precision, then one ``global_step`` counted."""
        result = super().step_optimizer(trainer, index, closure)
        count_step(trainer)
        return result

    def epoch_end(self, trainer: Any) -> None:
        """Nothing: under manual optimization the module steps its schedulers itself."""
