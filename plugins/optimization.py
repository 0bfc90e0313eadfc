"""Built-in ``optimization``: builds optimizers and runs backward, optimizer step and zero_grad.

The common case (one optimizer, no accumulation, no clipping) takes the shortest path:
one ``training_step``, one backward, one step, one zero_grad per batch.
"""
from __future__ import annotations

from typing import Any, List, Optional

import torch

from engine import hookimpl
from engine.errors import MisconfigurationException
from engine.module import LightningModule, is_overridden
from plugins.model_hooks import validated_loss


def normalize_optimizers(config: Any) -> tuple:
    """Turn what ``configure_optimizers`` returned into ``(optimizers, schedulers)`` lists."""
    if config is None:
        raise MisconfigurationException("`configure_optimizers` returned None; return an optimizer.")
    if isinstance(config, torch.optim.Optimizer):
        return [config], []
    if isinstance(config, dict):
        return [config["optimizer"]], [config["lr_scheduler"]] if config.get("lr_scheduler") is not None else []
    if isinstance(config, (list, tuple)):
        if len(config) == 2 and isinstance(config[0], (list, tuple)):
            return list(config[0]), list(config[1])
        if all(isinstance(c, dict) for c in config):
            return [c["optimizer"] for c in config], [c["lr_scheduler"] for c in config if c.get("lr_scheduler") is not None]
        if all(isinstance(c, torch.optim.Optimizer) for c in config):
            return list(config), []
    raise MisconfigurationException(
        f"`configure_optimizers` returned {type(config).__name__}, which is not a form hookloop knows: "
        "an optimizer, a list of them, ([optimizers], [schedulers]), or a dict {'optimizer': ..., 'lr_scheduler': ...}."
    )


class OptimizationPlugin:
    """Automatic optimization: for each optimizer, training_step, backward, step, zero_grad."""

    def __init__(self) -> None:
        self._module_backward = False
        self._module_step = False
        self._module_zero_grad = False

    @hookimpl
    def configure_model(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Build ``trainer.optimizers`` from ``configure_optimizers`` (fit only)."""
        if stage != "fit":
            return
        optimizers, schedulers = normalize_optimizers(pl_module.configure_optimizers())
        trainer.optimizers = optimizers
        trainer.lr_scheduler_configs = schedulers
        self._module_backward = is_overridden("backward", pl_module)
        self._module_step = is_overridden("optimizer_step", pl_module)
        self._module_zero_grad = is_overridden("optimizer_zero_grad", pl_module)

    @hookimpl
    def run_training_batch(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int) -> Any:
        """Do one batch's optimization and return ``training_step``'s output."""
        optimizers = trainer.optimizers
        if not pl_module.automatic_optimization:
            return _output_or_done(trainer.hooks.training_step(trainer, pl_module, batch, batch_idx, None))
        if len(optimizers) == 1:
            return self._optimize(trainer, pl_module, batch, batch_idx, optimizers[0], None)
        outputs = []
        for idx, optimizer in enumerate(optimizers):
            pl_module.toggle_optimizer(optimizer, idx)
            try:
                outputs.append(self._optimize(trainer, pl_module, batch, batch_idx, optimizer, idx))
            finally:
                pl_module.untoggle_optimizer(idx)
        return outputs

    def _optimize(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int,
                  optimizer: Any, idx: Optional[int]) -> Any:
        hooks = trainer.hooks
        output = hooks.training_step(trainer, pl_module, batch, batch_idx, idx)
        loss = validated_loss(output)
        if loss is None:
            return _output_or_done(output)
        if hooks.on_before_backward is not None:
            hooks.on_before_backward(trainer, pl_module, loss)
        hooks.backward(trainer, pl_module, loss, optimizer, idx)
        if hooks.on_after_backward is not None:
            hooks.on_after_backward(trainer, pl_module)
        if hooks.on_before_optimizer_step is not None:
            hooks.on_before_optimizer_step(trainer, pl_module, optimizer)
        hooks.optimizer_step(trainer, pl_module, optimizer, idx or 0, None)
        if hooks.on_before_zero_grad is not None:
            hooks.on_before_zero_grad(trainer, pl_module, optimizer)
        hooks.optimizer_zero_grad(trainer, pl_module, optimizer, idx or 0)
        if idx is None or idx == len(trainer.optimizers) - 1:
            trainer.state.global_step += 1
        return output

    @hookimpl
    def backward(self, trainer: Any, pl_module: LightningModule, loss: torch.Tensor, optimizer: Any,
                 optimizer_idx: Optional[int]) -> bool:
        """The module's ``backward`` if overridden, else ``loss.backward()``."""
        if self._module_backward:
            pl_module.backward(loss, optimizer, optimizer_idx)
        else:
            loss.backward()
        return True

    @hookimpl
    def optimizer_step(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int,
                       closure: Any) -> bool:
        """The module's ``optimizer_step`` if overridden, else ``optimizer.step()``."""
        if self._module_step:
            pl_module.optimizer_step(trainer.current_epoch, trainer.state.batch_idx, optimizer, optimizer_idx, closure)
        elif closure is not None:
            optimizer.step(closure)
        else:
            optimizer.step()
        return True

    @hookimpl
    def optimizer_zero_grad(self, trainer: Any, pl_module: LightningModule, optimizer: Any, optimizer_idx: int) -> bool:
        """The module's ``optimizer_zero_grad`` if overridden, else ``optimizer.zero_grad()``."""
        if self._module_zero_grad:
            pl_module.optimizer_zero_grad(trainer.current_epoch, trainer.state.batch_idx, optimizer, optimizer_idx)
        else:
            optimizer.zero_grad()
        return True

    @hookimpl
    def on_train_epoch_end(self, trainer: Any) -> None:
        """Step the per-epoch learning-rate schedulers."""
        for scheduler in trainer.lr_scheduler_configs:
            scheduler.step()


class _Done:
    """A non-``None`` stand-in for a skipped batch (firstresult hooks treat ``None`` as "not handled")."""

    def __repr__(self) -> str:
        return "<skipped batch>"


SKIPPED = _Done()


def _output_or_done(output: Any) -> Any:
    return SKIPPED if output is None else output
