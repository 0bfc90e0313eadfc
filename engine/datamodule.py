"""``LightningDataModule``: the data side of a run, reusable across models."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from hookloop.engine.hparams import HyperparametersMixin


class LightningDataModule(HyperparametersMixin):
    """Groups ``prepare_data``, ``setup`` and the ``*_dataloader`` methods of a data set.

    Pass it as ``trainer.fit(model, datamodule=dm)``; its dataloaders take precedence over
    the module's. ``self.trainer`` is set while it is in use. ``self.save_hyperparameters()``
    in ``__init__`` keeps its arguments in ``self.hparams``, as a module's.
    """

    prepare_data_per_node: bool = True

    def __init__(self) -> None:
        self.trainer: Optional[Any] = None

    @classmethod
    def from_datasets(cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
                      predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0,
                      **datamodule_kwargs: Any) -> "LightningDataModule":
        """A datamodule serving these datasets through ``DataLoader``s (Lightning's ``from_datasets``).

        Each ``*_dataset`` may be one dataset or a dict or list of them (several dataloaders). The
        training data is shuffled (an ``IterableDataset`` never is). ``batch_size`` and
        ``num_workers`` go to every ``DataLoader``, and to ``cls(...)`` too when its ``__init__``
        takes them; ``datamodule_kwargs`` go to ``cls(...)``.
        """
        def loaders(datasets: Any, shuffle: bool) -> Callable[[], Any]:
            def make(ds: Dataset) -> DataLoader:
                return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and not isinstance(ds, IterableDataset),
                                  num_workers=num_workers, pin_memory=torch.cuda.is_available())

            def dataloader() -> Any:
                if isinstance(datasets, Mapping):
                    return {name: make(ds) for name, ds in datasets.items()}
                if isinstance(datasets, (list, tuple)):
                    return [make(ds) for ds in datasets]
                return make(datasets)

            return dataloader

        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        special = {k: v for k, v in (("batch_size", batch_size), ("num_workers", num_workers))
                   if takes_any or k in params}
        datamodule = cls(**datamodule_kwargs, **special)
        for name, datasets, shuffle in (("train_dataloader", train_dataset, True), ("val_dataloader", val_dataset, False),
                                        ("test_dataloader", test_dataset, False),
                                        ("predict_dataloader", predict_dataset, False)):
            if datasets is not None:
                setattr(datamodule, name, loaders(datasets, shuffle))
        return datamodule

    def prepare_data(self) -> None:
        """Download or write data; called once per node (or job) before ``setup``."""

    def setup(self, stage: Optional[str] = None) -> None:
        """Build data sets for ``stage`` (``'fit'``, ``'validate'``, ``'test'``, ``'predict'``)."""

    def teardown(self, stage: Optional[str] = None) -> None:
        """Release what ``setup`` built."""

    def train_dataloader(self) -> Any:
        """Return the training dataloader (or a dict or list of them: each batch then holds one of each)."""
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
