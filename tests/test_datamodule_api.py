"""``LightningDataModule.save_hyperparameters()`` / ``hparams`` and ``LightningDataModule.from_datasets``."""
from __future__ import annotations

import argparse
import pickle

import pytest

from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler

from engine import LightningDataModule, MisconfigurationException
from plugins.logger_base import Logger
from tests.core_support import quiet_trainer
from tests.models import ModernModel, make_data, make_loader


class DigitsData(LightningDataModule):
    def __init__(self, data_dir: str = "./data", batch_size: int = 32, seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["seed"])

    def train_dataloader(self):
        return make_loader(64, self.hparams.batch_size)


def test_datamodule_save_hyperparameters():
    dm = DigitsData(batch_size=16)
    assert dict(dm.hparams) == {"data_dir": "./data", "batch_size": 16}
    assert dm.hparams.batch_size == 16 and dm.hparams_initial == {"data_dir": "./data", "batch_size": 16}
    dm.hparams.batch_size = 8
    assert dm.hparams_initial.batch_size == 16
    assert pickle.loads(pickle.dumps(dm)).hparams == {"data_dir": "./data", "batch_size": 8}  # ddp_spawn's copy
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(ModernModel(), datamodule=dm)
    assert trainer.num_training_batches == 8


class Named(LightningDataModule):
    def __init__(self, *args):
        super().__init__()
        self.save_hyperparameters(*args)


def test_datamodule_hparams_from_a_namespace_or_names_or_assigned():
    assert dict(Named(argparse.Namespace(lr=0.1)).hparams) == {"lr": 0.1}
    assert dict(Named({"width": 3}).hparams) == {"width": 3}
    dm = LightningDataModule()
    assert dict(dm.hparams) == {} and dm.hparams_assigned is None
    dm.hparams = argparse.Namespace(depth=2)
    assert dm.hparams.depth == 2 and dm.hparams_assigned == "Namespace"


class NoSuperInit(LightningDataModule):
    def __init__(self, size: int = 3):  # no super().__init__(): hparams still work
        self.save_hyperparameters()


def test_hparams_without_super_init():
    assert dict(NoSuperInit().hparams) == {"size": 3}


def test_from_datasets_serves_the_datasets():
    train, val = make_data(64), make_data(32, seed=1)
    dm = LightningDataModule.from_datasets(train_dataset=train, val_dataset=[val, val], batch_size=16)
    loader = dm.train_dataloader()
    assert isinstance(loader, DataLoader) and loader.batch_size == 16 and isinstance(loader.sampler, RandomSampler)
    vals = dm.val_dataloader()
    assert len(vals) == 2 and all(isinstance(v.sampler, SequentialSampler) for v in vals)
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(ModernModel(), datamodule=dm)
    assert trainer.num_training_batches == 4 and trainer.num_val_batches == [2, 2]


class Sized(LightningDataModule):
    def __init__(self, batch_size: int, note: str = ""):
        super().__init__()
        self.save_hyperparameters()


class Counting(IterableDataset):
    def __iter__(self):
        return iter(range(6))


def test_from_datasets_hands_batch_size_to_an_init_that_takes_it():
    dm = Sized.from_datasets(train_dataset={"a": make_data(8), "b": Counting()}, batch_size=4, num_workers=0,
                             note="x")
    assert dict(dm.hparams) == {"batch_size": 4, "note": "x"}  # num_workers is not one of its arguments
    loaders = dm.train_dataloader()
    assert set(loaders) == {"a", "b"} and isinstance(loaders["a"].sampler, RandomSampler)
    assert not isinstance(loaders["b"].sampler, RandomSampler)  # an iterable dataset is never shuffled
    with pytest.raises(NotImplementedError):  # no test dataset given: the datamodule has no test data
        dm.test_dataloader()


class HparamsRecorder(Logger):
    """A logger that keeps what ``log_hyperparams`` gets."""

    def __init__(self):
        self.params = []

    def log_hyperparams(self, params):
        self.params.append(dict(params))


def test_loggers_get_the_module_and_datamodule_hyperparameters_merged():
    logger = HparamsRecorder()
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, logger=logger)
    trainer.fit(ModernModel(batch_size=16), datamodule=DigitsData(batch_size=16))
    assert logger.params == [{"lr": 0.05, "n_train": 256, "batch_size": 16, "data_dir": "./data"}]


def test_a_hyperparameter_with_different_values_in_module_and_datamodule_is_an_error_naming_it():
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, logger=HparamsRecorder())
    with pytest.raises(MisconfigurationException, match=r"\['batch_size'\].*ModernModel.hparams and DigitsData.hparams"):
        trainer.fit(ModernModel(batch_size=32), datamodule=DigitsData(batch_size=16))
