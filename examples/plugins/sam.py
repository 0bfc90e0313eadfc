"""Custom loop behaviour (a): replace the training step's execution with SAM.

Sharpness-Aware Minimization (Foret et al., 2021) takes two forward/backward passes per
batch: one to find the worst-case nearby weights ``w + e(w)``, one there to get the gradient
that the optimizer then applies to the original weights ``w``. The engine asks the behaviour
hook ``run_training_batch`` to do a batch's work; the built-in optimization plugin answers
it. This plugin answers first (``tryfirst=True``), so it replaces that work without forking
the loop. It still goes through ``trainer.hooks.training_step``/``backward``/``optimizer_step``,
so precision, device and the module's own overrides keep working.

Run: ``python examples/plugins/sam.py``
"""
from __future__ import annotations

from typing import Any

import torch

from engine import hookimpl


class SAM:
    """Two-step SAM update for a module with one optimizer.

    Args:
        rho: radius of the neighbourhood in which the worst case is sought.
    """

    def __init__(self, rho: float = 0.05) -> None:
        self.rho = rho

    @hookimpl(tryfirst=True)
    def run_training_batch(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> Any:
        """Do one SAM step and return the first pass's ``training_step`` output."""
        hooks = trainer.hooks
        (optimizer,) = trainer.optimizers  # SAM as written here drives exactly one optimizer
        output = hooks.training_step(trainer, pl_module, batch, batch_idx, None)
        hooks.backward(trainer, pl_module, _loss(output), optimizer, None)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        with torch.no_grad():
            norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
            shifts = [p.grad * (self.rho / (norm + 1e-12)) for p in params]
            for p, shift in zip(params, shifts):
                p.add_(shift)  # climb to w + e(w)
        hooks.optimizer_zero_grad(trainer, pl_module, optimizer, 0)
        second = hooks.training_step(trainer, pl_module, batch, batch_idx, None)
        hooks.backward(trainer, pl_module, _loss(second), optimizer, None)
        with torch.no_grad():
            for p, shift in zip(params, shifts):
                p.sub_(shift)  # back to w; the gradient stays the one taken at w + e(w)
        hooks.optimizer_step(trainer, pl_module, optimizer, 0, None)
        hooks.optimizer_zero_grad(trainer, pl_module, optimizer, 0)
        trainer.state.global_step += 1  # the replaced behaviour counted steps; so must this one
        return output


def _loss(output: Any) -> torch.Tensor:
    return output["loss"] if isinstance(output, dict) else output


if __name__ == "__main__":
    from _toy import ToyRegression, quiet_trainer_kwargs

    from engine import Trainer

    model = ToyRegression()
    Trainer(max_epochs=3, plugins=[SAM(rho=0.05)], **quiet_trainer_kwargs()).fit(model)
    print("trained with SAM; weights:", model.layer.weight.data.tolist())
