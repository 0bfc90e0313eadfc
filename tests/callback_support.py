"""Small models shared by the tests of the Lightning-style built-in callbacks (tests/test_callbacks_*.py)."""
from __future__ import annotations

import torch
from torch import nn

from engine import LightningModule
from tests.models import make_loader

#: A trainer that prints nothing and writes nothing unless a test asks for it.
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
             num_sanity_val_steps=0)


class BackboneModel(LightningModule):
    """A backbone (two layers, one BatchNorm) and a head; SGD over the trainable parameters only.

    Batches come unshuffled, so two runs of the same length train to the same weights.
    """

    def __init__(self, lr: float = 0.1, batch_norm: bool = True, n_train: int = 128):
        super().__init__()
        self.lr, self.n_train = lr, n_train
        layers = [nn.Linear(8, 16)] + ([nn.BatchNorm1d(16)] if batch_norm else []) + [nn.ReLU(), nn.Linear(16, 16)]
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(torch.relu(self.backbone(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=self.lr)

    def train_dataloader(self):
        return make_loader(self.n_train, 32)


def weights(module: nn.Module) -> dict:
    """A detached copy of ``module``'s state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
