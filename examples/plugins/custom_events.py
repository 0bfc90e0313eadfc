"""Custom loop behaviour (d): a plugin that adds its own events, which other plugins implement.

``GradNormMonitor`` brings a small event catalogue (``GradNormEvents``) through its
``__engine_hookspecs__`` attribute; the registry adds those events when the plugin is
registered, so any other plugin or callback registered with it may implement them, and a
typo in their names is caught as for the built-in events. The monitor fires
``on_grad_norm`` after every backward pass — and skips computing the norm when nobody
listens (``trainer.hooks.on_grad_norm is None``).

Run: ``python examples/plugins/custom_events.py``
"""
from __future__ import annotations

from typing import Any, List

import torch

from engine import Callback, hookimpl, hookspec


class GradNormEvents:
    """The events ``GradNormMonitor`` fires."""

    @hookspec
    def on_grad_norm(self, trainer, pl_module, norm: float) -> None:
        """Called after each backward pass with the total 2-norm of the module's gradients.

        Args:
            trainer: the Trainer.
            pl_module: the LightningModule being trained.
            norm: the gradients' total 2-norm (a float).
        """


class GradNormMonitor:
    """Computes the gradient norm after backward and fires ``on_grad_norm``."""

    __engine_hookspecs__ = GradNormEvents

    @hookimpl
    def on_after_backward(self, trainer: Any, pl_module: Any) -> None:
        """Fire ``on_grad_norm`` if anyone implements it."""
        fire = trainer.hooks.on_grad_norm
        if fire is None:  # nobody listens: do no work
            return
        grads = [p.grad.norm(2) for p in pl_module.parameters() if p.grad is not None]
        fire(trainer, pl_module, float(torch.norm(torch.stack(grads), 2)) if grads else 0.0)


class GradNormRecorder(Callback):
    """A callback implementing the new event by name, like any built-in event."""

    def __init__(self) -> None:
        self.norms: List[float] = []

    def on_grad_norm(self, trainer: Any, pl_module: Any, norm: float) -> None:
        """Keep every norm."""
        self.norms.append(norm)


class GradNormAlarm:
    """A plain plugin implementing the new event with ``@hookimpl``: stops on exploding gradients."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    @hookimpl
    def on_grad_norm(self, trainer: Any, norm: float) -> None:
        """Stop training when the norm exceeds the limit."""
        if norm > self.limit:
            trainer.should_stop = True


if __name__ == "__main__":
    from _toy import ToyRegression, quiet_trainer_kwargs

    from engine import Trainer

    recorder = GradNormRecorder()
    Trainer(max_epochs=2, plugins=[GradNormMonitor(), GradNormAlarm(limit=1e3)], callbacks=[recorder],
            **quiet_trainer_kwargs()).fit(ToyRegression())
    print("gradient norms:", [round(n, 3) for n in recorder.norms])
