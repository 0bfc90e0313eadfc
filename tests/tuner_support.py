"""Models and helpers for the tuner's tests: a model that runs out of memory above a batch size, file listings."""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import LightningDataModule, LightningModule
from tests.models import make_data


class MemoryBound(LightningModule):
    """A classifier whose steps run out of memory above ``limit`` samples per batch, as a device would.

    Above the limit the step raises torch's own ``OutOfMemoryError`` (what CUDA raises), or, with
    ``real_allocation=True``, asks the CPU allocator for an impossible amount of memory, which fails for real.
    ``where`` says where the batch size lives: ``'model'``, ``'hparams'`` or ``'datamodule'``.
    """

    def __init__(self, limit: int, batch_size: int = 16, n: int = 512, where: str = "model",
                 real_allocation: bool = False, eval_limit: Optional[int] = None) -> None:
        super().__init__()
        self.limit, self.n, self.real_allocation = limit, n, real_allocation
        self.eval_limit = eval_limit if eval_limit is not None else limit
        if where == "model":
            self.batch_size = batch_size
        elif where == "hparams":
            self.save_hyperparameters({"batch_size": batch_size})
        self.layer = nn.Linear(8, 2)
        self.sizes_seen: List[int] = []

    def _check(self, x: torch.Tensor, limit: int) -> None:
        self.sizes_seen.append(len(x))
        if len(x) > limit:
            if self.real_allocation:
                torch.empty(2 ** 62, dtype=torch.uint8)  # the CPU allocator refuses: a real out-of-memory error
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x)} samples' activations.")

    def training_step(self, batch, batch_idx):
        x, y = batch
        self._check(x, self.limit)
        return nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._check(x, self.eval_limit)
        return nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _size(self) -> int:
        if hasattr(self, "batch_size"):
            return self.batch_size
        if "batch_size" in self.hparams:
            return self.hparams.batch_size
        return self.trainer.datamodule.batch_size

    def train_dataloader(self):
        return DataLoader(make_data(self.n), batch_size=self._size(), shuffle=True)

    def val_dataloader(self):
        return DataLoader(make_data(self.n, seed=1), batch_size=self._size())


class SizedData(LightningDataModule):
    """A datamodule holding the batch size (for :class:`MemoryBound` with ``where='datamodule'``)."""

    def __init__(self, batch_size: int = 16, n: int = 512) -> None:
        super().__init__()
        self.batch_size, self.n = batch_size, n

    def train_dataloader(self):
        return DataLoader(make_data(self.n), batch_size=self.batch_size, shuffle=True)


def temporary_checkpoints(root: str) -> List[str]:
    """The tuner's temporary checkpoint files under ``root``."""
    return glob.glob(os.path.join(root, "**", ".lr_find_*"), recursive=True) + \
        glob.glob(os.path.join(root, "**", ".scale_batch_size_*"), recursive=True)


def files_under(root: str) -> Dict[str, tuple]:
    """Every file under ``root`` with its size and modification time."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def weights(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of the model's state."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    """Bitwise equal states."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
