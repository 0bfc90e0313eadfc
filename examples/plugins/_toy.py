"""A tiny regression model and data shared by the plugin examples (runs in a second on a CPU)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import LightningModule


def toy_loader(n: int = 64, batch_size: int = 16, seed: int = 0) -> DataLoader:
    """``y = x @ w + noise`` with 4 features, in order (no shuffling, so runs are reproducible)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


class ToyRegression(LightningModule):
    """A linear layer trained with SGD on :func:`toy_loader`."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        torch.manual_seed(0)
        self.layer = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return toy_loader()


def quiet_trainer_kwargs() -> dict:
    """Trainer flags for a quick example run: no logger, bar, checkpoint or validation."""
    return dict(logger=False, enable_progress_bar=False, enable_checkpointing=False,
                enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
