"""Lightning 0.9's datamodule API: transforms, ``dims``/``size()``, the ``has_*`` record, calls made by hand not
repeated by the next run, argparse classmethods; and the datamodule's batch-transfer hooks (both eras)."""
from __future__ import annotations

import argparse
import pickle
from typing import Optional, Union

import pytest
import torch

from engine import LightningDataModule, Trainer
from tests.core_support import quiet_trainer
from tests.models import ModernModel, SeedModel, make_data, make_loader


class CallsData(LightningDataModule):
    """The 0.9 docs' datamodule: records each prepare_data/setup/teardown it gets."""

    def __init__(self, data_dir: str = "./data", batch_size: int = 32):
        super().__init__()
        self.data_dir, self.batch_size = data_dir, batch_size
        self.dims = (1, 8)
        self.calls = []

    def prepare_data(self):
        self.calls.append("prepare_data")

    def setup(self, stage=None):
        self.calls.append(f"setup({stage})")
        self.data = make_data(64)

    def teardown(self, stage=None):
        self.calls.append(f"teardown({stage})")

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size)

    def test_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=self.batch_size)


def test_has_flags_record_calls_as_in_0_9():
    dm = CallsData()
    assert (dm.has_prepared_data, dm.has_setup_fit, dm.has_setup_test) == (False, False, False)
    dm.prepare_data()
    assert (dm.has_prepared_data, dm.has_setup_fit, dm.has_setup_test) == (True, False, False)
    dm.setup("fit")
    assert (dm.has_setup_fit, dm.has_setup_validate, dm.has_setup_test) == (True, False, False)
    dm.setup("test")
    assert dm.has_setup_test and not dm.has_setup_predict
    other = CallsData()
    other.setup()  # no stage: every stage
    assert other.has_setup_fit and other.has_setup_validate and other.has_setup_test and other.has_setup_predict
    assert not other.has_teardown_fit
    other.teardown("fit")
    assert other.has_teardown_fit and not other.has_teardown_test


def test_a_run_records_its_own_calls():
    dm = CallsData()
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(ModernModel(), datamodule=dm)
    assert dm.calls == ["prepare_data", "setup(fit)", "teardown(fit)"]
    assert dm.has_prepared_data and dm.has_setup_fit and dm.has_teardown_fit and not dm.has_setup_test


def test_calls_made_by_hand_are_not_repeated_by_the_next_run():
    # The 0.9 docs' pattern: the model is built from what setup found, then fit and test go on.
    dm = CallsData()
    dm.prepare_data()
    dm.setup("fit")
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(ModernModel(), datamodule=dm)
    assert dm.calls == ["prepare_data", "setup(fit)", "teardown(fit)"]
    dm.setup("test")
    trainer.test(ModernModel(), datamodule=dm, verbose=False)
    assert dm.calls[3:] == ["setup(test)", "prepare_data", "teardown(test)"]
    # What a run called itself, the next run calls again (Lightning 2.x).
    trainer2 = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer2.fit(ModernModel(), datamodule=dm)
    assert dm.calls[6:] == ["prepare_data", "setup(fit)", "teardown(fit)"]


def test_setup_without_a_stage_by_hand_covers_fit_and_test():
    dm = CallsData()
    dm.setup()
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(ModernModel(), datamodule=dm)
    trainer.test(ModernModel(), datamodule=dm, verbose=False)
    assert [c for c in dm.calls if c.startswith("setup")] == ["setup(None)"]


def test_dims_size_and_transforms():
    dm = CallsData()
    assert dm.size() == (1, 8) and dm.size(1) == 8
    base = LightningDataModule(train_transforms="t", val_transforms="v", test_transforms="x", dims=(3, 4))
    assert (base.train_transforms, base.val_transforms, base.test_transforms) == ("t", "v", "x")
    assert base.size() == (3, 4) and base.size(0) == 3
    base.train_transforms = "t2"
    assert base.train_transforms == "t2"


class NoSuper(LightningDataModule):
    def __init__(self):  # no super().__init__(): 0.9's attributes still answer
        self.seen = []

    def setup(self, stage=None):
        self.seen.append(stage)


def test_a_datamodule_without_super_init():
    dm = NoSuper()
    assert dm.size() == () and dm.train_transforms is None and not dm.has_setup_fit
    dm.setup("fit")
    assert dm.has_setup_fit and dm.seen == ["fit"]


def test_many_instances_and_subclasses_wrap_once_and_pickle():
    class Child(CallsData):
        def setup(self, stage=None):
            super().setup(stage)

    for _ in range(1005):  # wrapping is per class: instances never stack wrappers
        dm = Child()
        dm.setup("fit")
    assert dm.calls == ["setup(fit)"] and dm.has_setup_fit
    copy = pickle.loads(pickle.dumps(CallsData()))  # ddp_spawn pickles the datamodule
    copy.setup("test")
    assert copy.has_setup_test


def test_argparse_classmethods():
    class Args(LightningDataModule):
        def __init__(self, data_dir: str = "./", batch_size: int = 64, augment: bool = False,
                     fraction: Optional[Union[int, float]] = None):
            super().__init__()
            self.data_dir, self.batch_size, self.augment, self.fraction = data_dir, batch_size, augment, fraction

    parser = Args.add_argparse_args(argparse.ArgumentParser())
    args = parser.parse_args(["--batch_size", "8", "--augment", "--data_dir", "/d", "--fraction", "0.5"])
    dm = Args.from_argparse_args(args, data_dir="/override")
    assert (dm.data_dir, dm.batch_size, dm.augment, dm.fraction) == ("/override", 8, True, 0.5)
    rows = {name: (types, default) for name, types, default in Args.get_init_arguments_and_types()}
    assert rows["batch_size"] == ((int,), 64) and rows["augment"] == ((bool,), False)
    assert set(rows["fraction"][0]) == {int, float, type(None)}
    trainer_rows = {name: default for name, _, default in Trainer.get_init_arguments_and_types()}
    assert trainer_rows["max_epochs"] is None and trainer_rows["gpus"] is None


class Batch:
    """A custom batch type only its datamodule knows how to move."""

    def __init__(self, x, y):
        self.x, self.y = x, y


class CustomBatchData(LightningDataModule):
    def __init__(self):
        super().__init__()
        self.moved = self.before = self.after = 0

    def train_dataloader(self):
        return torch.utils.data.DataLoader(make_data(64), batch_size=32, collate_fn=self.collate)

    @staticmethod
    def collate(rows):
        return Batch(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]))

    def transfer_batch_to_device(self, batch, device):  # 0.9's signature
        self.moved += 1
        if isinstance(batch, Batch):
            return Batch(batch.x.to(device), batch.y.to(device))
        return super().transfer_batch_to_device(batch, device)

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.before += 1
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.after += 1
        return (batch.x, batch.y)  # the module's step gets a plain pair


def test_the_datamodule_transfer_hooks_run_for_its_batches():
    dm = CustomBatchData()
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(ModernModel(), datamodule=dm)
    assert (dm.moved, dm.before, dm.after) == (2, 2, 2)


def test_transfer_defined_by_module_and_datamodule_runs_the_datamodule_one_with_a_warning():
    class Model(ModernModel):
        moved = 0

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            type(self).moved += 1
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

    class Data(LightningDataModule):
        moved = 0

        def train_dataloader(self):
            return make_loader(64, 32)

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            type(self).moved += 1
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

    with pytest.warns(UserWarning, match=r"`transfer_batch_to_device` is defined by both Model .* and Data"):
        quiet_trainer(max_epochs=1, limit_val_batches=0).fit(Model(), datamodule=Data())
    assert (Model.moved, Data.moved) == (0, 2)


def test_fit_returns_1_after_a_seed_era_run_and_none_after_a_2x_one():
    assert quiet_trainer(max_epochs=1, limit_val_batches=0).fit(SeedModel(n_train=64)) == 1
    assert quiet_trainer(max_epochs=1, limit_val_batches=0).fit(ModernModel(n_train=64)) is None
