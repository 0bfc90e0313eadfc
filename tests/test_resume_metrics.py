"""A run resumed from a mid-epoch checkpoint computes the epoch's torchmetrics values over the whole
epoch, as the uninterrupted run does: the metrics' running states travel with the loop position."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import CatMetric, MeanMetric

from engine import LightningModule, Trainer, seed_everything
from plugins import ModelCheckpoint


class Tracking(LightningModule):
    """Logs a ``MeanMetric`` of its inputs (epoch only) and keeps a ``CatMetric`` of them itself."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.mean = MeanMetric()
        self.seen = CatMetric()
        self.epoch_seen = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.mean.update(x[:, 0])
        self.log("x_mean", self.mean, on_step=False, on_epoch=True)
        self.seen.update(x[:, 0])
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(1), y)

    def on_train_epoch_end(self):
        self.epoch_seen.append(self.seen.compute().numel())
        self.seen.reset()

    def train_dataloader(self):
        x = torch.arange(32, dtype=torch.float32).reshape(16, 2)  # 8 batches of 2: inputs known, means differ
        return DataLoader(TensorDataset(x, x.sum(1)), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.001)


def _fit(directory, ckpt_path=None):
    seed_everything(3)
    model = Tracking()
    trainer = Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[ModelCheckpoint(dirpath=str(directory), every_n_train_steps=3, save_top_k=-1)])
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer, model


def test_a_mid_epoch_resume_keeps_the_epochs_torchmetrics_states(tmp_path):
    full, full_model = _fit(tmp_path / "a")
    assert full.callback_metrics["x_mean"].item() == torch.arange(0, 32, 2.0).mean().item()
    mid = str(tmp_path / "a" / "epoch=0-step=3.ckpt")
    saved = torch.load(mid, weights_only=True)["loop"]
    assert saved["resume_batch"] == 3 and set(saved["metric_states"]) == {"mean", "seen"}
    resumed, resumed_model = _fit(tmp_path / "b", ckpt_path=mid)
    assert resumed.callback_metrics["x_mean"].item() == full.callback_metrics["x_mean"].item()
    assert resumed_model.epoch_seen == full_model.epoch_seen == [16]  # all 16 inputs, 6 of them before the kill
    assert os.listdir(tmp_path / "b")  # the resumed run goes on saving
