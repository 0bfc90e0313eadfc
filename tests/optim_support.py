"""Tiny regression models and hand-written PyTorch loops for the optimization and precision tests."""
from __future__ import annotations

import copy
from typing import Any, Callable, List

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import LightningModule, Trainer

#: Trainer flags that keep a test run quiet and small (no logs, checkpoints, bars or sanity check).
QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0)


def regression_data(n: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32) -> TensorDataset:
    """``y = x @ w + noise`` with 4 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=dtype)
    w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=dtype)
    return TensorDataset(x, x @ w + 0.1 * torch.randn(n, 1, generator=g, dtype=dtype))


def loader(n: int = 64, batch_size: int = 8, seed: int = 0) -> DataLoader:
    """An unshuffled loader over :func:`regression_data`."""
    return DataLoader(regression_data(n, seed), batch_size=batch_size)


class Regressor(LightningModule):
    """A linear regressor whose ``configure_optimizers`` is the given function of the module."""

    def __init__(self, make_optim: Callable[["Regressor"], Any] = None, n: int = 64, batch_size: int = 8,
                 val: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 1)
        self.make_optim = make_optim or (lambda m: torch.optim.SGD(m.parameters(), lr=0.05))
        self.n, self.batch_size = n, batch_size
        if val:
            self.validation_step = self._validation_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def _validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> Any:
        return self.make_optim(self)

    def train_dataloader(self) -> DataLoader:
        return loader(self.n, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return loader(32, 8, seed=1)


def fit(model: LightningModule, **flags: Any) -> Trainer:
    """Fit ``model`` with quiet flags (overridable) and return the trainer."""
    trainer = Trainer(**{**QUIET, "max_epochs": 2, **flags})
    trainer.fit(model)
    return trainer


def twin(model: nn.Module) -> nn.Module:
    """An independent copy of ``model`` (same initial weights) for the hand-written loop."""
    clone = copy.deepcopy(model)
    clone._trainer = None
    return clone


def assert_same_weights(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> None:
    """Every parameter of ``a`` equals ``b``'s within ``atol``."""
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa.detach().double(), pb.detach().double(), atol=atol), (name, pa, pb)


def mse(model: nn.Module, batch: Any) -> torch.Tensor:
    """The regressor's loss on ``batch``."""
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def batches(n: int = 64, batch_size: int = 8, seed: int = 0) -> List[Any]:
    """The batches :func:`loader` yields, as a list."""
    return list(loader(n, batch_size, seed))


def hand_accumulation(model: nn.Module, k_of_epoch: Callable[[int], int], epochs: int, n: int = 64,
                      lr: float = 0.1, optimizer_of_epoch: Callable[[int, Any], Any] = None) -> None:
    """The hand-written loop of SGD(``lr``) with ``k_of_epoch(epoch)`` batches accumulated per step (an epoch's
    last, incomplete group steps too); ``optimizer_of_epoch(epoch, opt)`` may swap the optimizer at an epoch's start."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    all_batches = batches(n)
    for epoch in range(epochs):
        if optimizer_of_epoch is not None:
            opt = optimizer_of_epoch(epoch, opt)
        k = k_of_epoch(epoch)
        for i, batch in enumerate(all_batches):
            (mse(model, batch) / k).backward()
            if (i + 1) % k == 0 or i + 1 == len(all_batches):
                opt.step()
                opt.zero_grad()
