"""Built-in ``device``: picks the root device, moves the model there, moves every batch there."""
from __future__ import annotations

from typing import Any

import torch

from engine import hookimpl
from engine.apply import move_to_device
from engine.module import LightningModule, is_overridden


class DevicePlugin:
    """Single-process placement. ``trainer.root_device`` is set in ``setup_environment``."""

    def __init__(self) -> None:
        self._module_moves_batches = False
        self._on_cpu = True

    @hookimpl
    def setup_environment(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Pick the device from ``accelerator``/``devices``/``gpus``; apply ``deterministic``/``benchmark``."""
        if trainer.root_device is None:
            trainer.root_device = select_root_device(trainer)
        self._on_cpu = trainer.root_device.type == "cpu"
        if trainer.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)
            torch.backends.cudnn.deterministic = True
        if trainer.benchmark is not None:
            torch.backends.cudnn.benchmark = bool(trainer.benchmark)

    @hookimpl(tryfirst=True)
    def configure_model(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Move the module to the root device before optimizers are built."""
        pl_module.to(trainer.root_device)
        self._module_moves_batches = is_overridden("transfer_batch_to_device", pl_module)

    @hookimpl
    def transfer_batch_to_device(self, trainer: Any, pl_module: LightningModule, batch: Any, device: Any,
                                 dataloader_idx: int) -> Any:
        """The module's own ``transfer_batch_to_device`` if it has one, else a recursive ``.to(device)``."""
        if self._module_moves_batches:
            return pl_module.transfer_batch_to_device(batch, device, dataloader_idx)
        if self._on_cpu and isinstance(batch, (torch.Tensor, list, tuple)) and _all_cpu(batch):
            return batch  # already where it must be: skip the rebuild
        return move_to_device(batch, device)


def _all_cpu(batch: Any) -> bool:
    if isinstance(batch, torch.Tensor):
        return batch.device.type == "cpu"
    return all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in batch)


def select_root_device(trainer: Any) -> torch.device:
    """The device this process trains on (CPU unless a GPU accelerator was asked for)."""
    accelerator = str(trainer.accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda") or trainer.gpus not in (None, 0, "0", "", []):
        return torch.device("cuda", 0)
    if accelerator == "mps":
        return torch.device("mps")
    return torch.device("cpu")
