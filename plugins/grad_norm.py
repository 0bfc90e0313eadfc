"""Built-in ``grad_norm``: the seed era's ``Trainer(track_grad_norm=p)``, gradient norms logged per step.

Registered only when the flag is set (``2``, ``1.5``, ``'inf'``...; ``-1``, the default, is off), so a
fit without it pays nothing. At ``on_before_optimizer_step`` — after backward and accumulation,
gradients unscaled and not yet clipped, as Lightning 0.9 computed them — it logs, like 0.9's
``LightningModule.grad_norm``, the ``p``-norm of each parameter's gradient as
``grad_{p}_norm_{name}`` and the norm of those as ``grad_{p}_norm_total`` (``p`` a float:
``grad_2.0_norm_layer.weight``, ``grad_inf_norm_total``), rounded to 3 decimals. They go through
``self.log(..., on_step=True, on_epoch=False)``: loggers get them at the logging steps
(``log_every_n_steps``), and ``trainer.logged_metrics``/``callback_metrics`` hold them.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from hookloop.engine import hookimpl

__all__ = ["GradNormTracker", "grad_norm", "grad_norm_tracker_for"]


def grad_norm(module: torch.nn.Module, norm_type: float) -> Dict[str, float]:
    """0.9's ``grad_norm``: ``{'grad_{p}_norm_{name}': norm, ..., 'grad_{p}_norm_total': total}`` over the
    parameters that have a gradient (norms rounded to 3 decimals)."""
    norms: Dict[str, float] = {}
    every = []
    for name, parameter in module.named_parameters():
        if parameter.grad is None:
            continue
        norm = float(parameter.grad.detach().norm(norm_type))
        norms[f"grad_{norm_type}_norm_{name}"] = round(norm, 3)
        every.append(norm)
    total = float(torch.tensor(every).norm(norm_type)) if every else 0.0
    norms[f"grad_{norm_type}_norm_total"] = round(total, 3)
    return norms


class GradNormTracker:
    """Built-in ``grad_norm``: logs the gradients' ``norm_type``-norms before every optimizer step (see above)."""

    def __init__(self, norm_type: float) -> None:
        #: The ``p`` of the norms (``float('inf')`` for the largest absolute value).
        self.norm_type = norm_type

    @hookimpl
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any) -> None:
        """Log this step's gradient norms (``self.log``, per step)."""
        for name, value in grad_norm(pl_module, self.norm_type).items():
            pl_module.log(name, value, on_step=True, on_epoch=False, prog_bar=False, logger=True)


def grad_norm_tracker_for(trainer: Any) -> Optional[GradNormTracker]:
    """The tracker ``Trainer(track_grad_norm=p)`` asks for; ``None`` when it is off (``-1``, or any ``p <= 0``)."""
    value = trainer.track_grad_norm
    if value is None:
        return None
    norm_type = float(value)  # 'inf' too; the trainer checked the value
    return GradNormTracker(norm_type) if norm_type > 0 else None
