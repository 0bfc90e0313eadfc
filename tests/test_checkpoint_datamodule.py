"""The datamodule's part of a checkpoint, as in Lightning 2.x: its hyperparameters and its ``state_dict()``
(under its class's name), given back on resume and evaluation, and ``LightningDataModule.load_from_checkpoint``."""
from __future__ import annotations

import torch

from engine import LightningDataModule, Trainer
from tests.models import ModernModel, make_loader

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, num_sanity_val_steps=0)


class StatefulData(LightningDataModule):
    """Counts the epochs it served; the count is its state."""

    def __init__(self, batch_size: int = 32, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.served = 0
        self.restored = None

    def train_dataloader(self):
        self.served += 1
        return make_loader(64, self.hparams.batch_size, shuffle=True, seed=self.hparams.seed)

    def val_dataloader(self):
        return make_loader(32, self.hparams.batch_size)

    def test_dataloader(self):
        return make_loader(32, self.hparams.batch_size)

    def state_dict(self):
        return {"served": self.served}

    def load_state_dict(self, state_dict):
        self.restored = dict(state_dict)
        self.served = state_dict["served"]


def test_the_checkpoint_holds_the_datamodule_hparams_and_state_and_resume_gives_them_back(tmp_path):
    trainer = Trainer(max_epochs=2, default_root_dir=str(tmp_path), reload_dataloaders_every_n_epochs=1, **QUIET)
    trainer.fit(ModernModel(), datamodule=StatefulData(batch_size=16, seed=3))
    path = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    saved = torch.load(path, weights_only=True)
    assert saved["datamodule_hyper_parameters"] == {"batch_size": 16, "seed": 3}
    assert saved["StatefulData"] == {"served": 2}
    assert saved["hyper_parameters"]["lr"] == 0.05  # the module's stay where they were

    resumed_dm = StatefulData(batch_size=16, seed=3)
    resumed = Trainer(max_epochs=3, default_root_dir=str(tmp_path), reload_dataloaders_every_n_epochs=1, **QUIET)
    resumed.fit(ModernModel(), datamodule=resumed_dm, ckpt_path=path)
    assert resumed_dm.restored == {"served": 2} and resumed_dm.served == 3

    tested_dm = StatefulData(batch_size=16, seed=3)
    Trainer(**QUIET).test(ModernModel(), datamodule=tested_dm, ckpt_path=path, verbose=False)
    assert tested_dm.restored == {"served": 2}  # every stage, as in Lightning


def test_datamodule_load_from_checkpoint_rebuilds_it_from_its_hparams_and_state(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(ModernModel(), datamodule=StatefulData(batch_size=8, seed=5))
    path = trainer.checkpoint_callback.best_model_path
    dm = StatefulData.load_from_checkpoint(path)
    assert (dm.hparams.batch_size, dm.hparams.seed, dm.served) == (8, 5, 1)
    assert StatefulData.load_from_checkpoint(path, batch_size=4).hparams.batch_size == 4


def test_a_datamodule_without_hparams_or_state_adds_nothing(tmp_path):
    class Plain(LightningDataModule):
        def train_dataloader(self):
            return make_loader(64, 32)

    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), limit_val_batches=0, **QUIET)
    trainer.fit(ModernModel(), datamodule=Plain())
    saved = torch.load(trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path,
                       weights_only=True)
    assert "datamodule_hyper_parameters" not in saved and "Plain" not in saved
