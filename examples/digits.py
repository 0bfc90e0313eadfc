"""Train a small classifier on scikit-learn's bundled digits (8x8 images, 10 classes), then test it.

Real data, no download: ``sklearn.datasets.load_digits`` ships with scikit-learn. The model is
written in the seed-era (Lightning 0.8/0.9) style: steps return dicts with ``'loss'``/``'log'``,
``validation_epoch_end`` aggregates the step outputs. Every ``Trainer`` flag is a command-line
flag too::

    python examples/digits.py                      # defaults: test accuracy >= 0.95
    python examples/digits.py --max_epochs 5 --lr 0.005 --hidden 64
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

# Runnable from a plain checkout too (``python examples/digits.py`` without installing).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import LightningModule, Trainer, seed_everything  # noqa: E402


def digits_splits(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Dict[str, TensorDataset]:
    """The digits as ``train``/``val``/``test`` tensor datasets (stratified, pixels scaled to [0, 1])."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest)

    def dataset(features, labels) -> TensorDataset:
        return TensorDataset(torch.tensor(features, dtype=torch.float32), torch.tensor(labels, dtype=torch.long))

    return {"train": dataset(x_train, y_train), "val": dataset(x_val, y_val), "test": dataset(x_test, y_test)}


class DigitsClassifier(LightningModule):
    """A two-layer perceptron over the 64 pixels, in the seed-era style.

    Extra keyword arguments (e.g. every parsed command-line flag, ``DigitsClassifier(**vars(args))``)
    are ignored.
    """

    def __init__(self, hidden: int = 128, lr: float = 0.01, batch_size: int = 64, seed: int = 0,
                 **kwargs: object) -> None:
        super().__init__()
        self.save_hyperparameters("hidden", "lr", "batch_size", "seed")
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 10))
        self.splits = digits_splits(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of flattened 8x8 images."""
        return self.net(x)

    # ---- training -----------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        """Cross-entropy of one batch; logged as ``train_loss``."""
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        return {"loss": loss, "log": {"train_loss": loss}}

    def configure_optimizers(self):
        """Adam at ``lr``."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # ---- validation and test ------------------------------------------------------------
    def _evaluate(self, batch, prefix: str) -> Dict[str, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return {f"{prefix}_loss": F.cross_entropy(logits, y, reduction="sum"),
                f"{prefix}_correct": (logits.argmax(dim=1) == y).sum(),
                f"{prefix}_count": torch.tensor(len(y))}

    def _epoch_end(self, outputs: List[Dict[str, torch.Tensor]], prefix: str) -> Dict[str, object]:
        count = torch.stack([o[f"{prefix}_count"] for o in outputs]).sum()
        loss = torch.stack([o[f"{prefix}_loss"] for o in outputs]).sum() / count
        acc = torch.stack([o[f"{prefix}_correct"] for o in outputs]).sum().float() / count
        metrics = {f"{prefix}_loss": loss, f"{prefix}_acc": acc}
        return {**metrics, "log": metrics, "progress_bar": {f"{prefix}_acc": acc}}

    def validation_step(self, batch, batch_idx):
        """Summed loss, correct predictions and size of one validation batch."""
        return self._evaluate(batch, "val")

    def validation_epoch_end(self, outputs):
        """``val_loss`` and ``val_acc`` over the whole validation set."""
        return self._epoch_end(outputs, "val")

    def test_step(self, batch, batch_idx):
        """Summed loss, correct predictions and size of one test batch."""
        return self._evaluate(batch, "test")

    def test_epoch_end(self, outputs):
        """``test_loss`` and ``test_acc`` over the whole test set."""
        return self._epoch_end(outputs, "test")

    # ---- data ---------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return DataLoader(self.splits["train"], batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches, in order."""
        return DataLoader(self.splits["val"], batch_size=256)

    def test_dataloader(self) -> DataLoader:
        """Test batches, in order."""
        return DataLoader(self.splits["test"], batch_size=256)

    @staticmethod
    def add_model_specific_args(parent_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """The model's own flags (the seed-era convention)."""
        parser = argparse.ArgumentParser(parents=[parent_parser], add_help=False)
        parser.add_argument("--hidden", type=int, default=128, help="hidden units")
        parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
        parser.add_argument("--batch_size", type=int, default=64, help="training batch size")
        parser.add_argument("--seed", type=int, default=0, help="seed for the split, the weights and the shuffling")
        return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Trainer flags (``--max_epochs``...) plus the model's (``--lr``...), with this example's defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser = Trainer.add_argparse_args(parser)
    parser = DigitsClassifier.add_model_specific_args(parser)
    parser.set_defaults(max_epochs=20)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> float:
    """Train, validate and test; print and return the test accuracy."""
    args = parse_args(argv)
    seed_everything(args.seed)
    model = DigitsClassifier(hidden=args.hidden, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    trainer = Trainer.from_argparse_args(args)
    trainer.fit(model)
    results = trainer.test(model)
    accuracy = float(results[0]["test_acc"])
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
