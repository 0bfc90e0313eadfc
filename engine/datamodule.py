"""``LightningDataModule``: the data side of a run, reusable across models."""
from __future__ import annotations

from typing import Any, Optional


class LightningDataModule:
    """Groups ``prepare_data``, ``setup`` and the ``*_dataloader`` methods of a data set.

    Pass it as ``trainer.fit(model, datamodule=dm)``; its dataloaders take precedence over
    the module's. ``self.trainer`` is set while it is in use.
    """

    prepare_data_per_node: bool = True

    def __init__(self) -> None:
        self.trainer: Optional[Any] = None

    def prepare_data(self) -> None:
        """Download or write data; called once per node (or job) before ``setup``."""

    def setup(self, stage: Optional[str] = None) -> None:
        """Build data sets for ``stage`` (``'fit'``, ``'validate'``, ``'test'``, ``'predict'``)."""

    def teardown(self, stage: Optional[str] = None) -> None:
        """Release what ``setup`` built."""

    def train_dataloader(self) -> Any:
        """Return the training dataloader."""
        raise NotImplementedError

    def val_dataloader(self) -> Any:
        """Return the validation dataloader(s)."""
        raise NotImplementedError

    def test_dataloader(self) -> Any:
        """Return the test dataloader(s)."""
        raise NotImplementedError

    def predict_dataloader(self) -> Any:
        """Return the predict dataloader(s)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """State saved in checkpoints (default: nothing)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state returned by :meth:`state_dict`."""
