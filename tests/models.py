"""Small models and data shared by the tests (synthetic, generated in-process)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import LightningModule


def make_data(n: int = 256, features: int = 8, seed: int = 0) -> TensorDataset:
    """A linearly separable two-class problem."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def make_loader(n: int = 256, batch_size: int = 32, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader over :func:`make_data`."""
    return DataLoader(make_data(n, seed=seed), batch_size=batch_size, shuffle=shuffle)


class SeedModel(LightningModule):
    """The seed's LitModel: dict returns with 'log', training_epoch_end, validation_epoch_end."""

    def __init__(self, lr: float = 0.05, n_train: int = 256, n_val: int = 64, batch_size: int = 32):
        super().__init__()
        self.lr, self.n_train, self.n_val, self.batch_size = lr, n_train, n_val, batch_size
        self.layer = nn.Linear(8, 2)
        self.epoch_end_outputs = []

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        return {"loss": loss, "log": {"train_loss": loss}}

    def training_epoch_end(self, outputs):
        self.epoch_end_outputs.append(outputs)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return {"val_loss": nn.functional.cross_entropy(self(x), y)}

    def validation_epoch_end(self, outputs):
        avg = torch.stack([o["val_loss"] for o in outputs]).mean()
        return {"val_loss": avg, "log": {"eval_loss": avg}}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return make_loader(self.n_train, self.batch_size, shuffle=True)

    def val_dataloader(self):
        return make_loader(self.n_val, self.batch_size, seed=1)


class ModernModel(LightningModule):
    """The 2.x style: self.log, on_*_epoch_end, a test_step."""

    def __init__(self, lr: float = 0.05, n_train: int = 256, batch_size: int = 32):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(8, 2)

    def forward(self, x):
        return self.layer(x)

    def _loss(self, batch):
        x, y = batch
        logits = self(x)
        return nn.functional.cross_entropy(logits, y), (logits.argmax(-1) == y).float().mean()

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._loss(batch)
        self.log("val_loss", loss)
        self.log("val_acc", acc, prog_bar=True)

    def test_step(self, batch, batch_idx):
        loss, acc = self._loss(batch)
        self.log("test_loss", loss)
        self.log("test_acc", acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self):
        return make_loader(self.hparams.n_train, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return make_loader(64, self.hparams.batch_size, seed=1)

    def test_dataloader(self):
        return make_loader(64, self.hparams.batch_size, seed=2)
