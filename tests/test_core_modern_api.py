"""The Lightning 2.x API beside the seed-era one: self.log, on_*_epoch_end, validate/test/predict, datamodules."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import LightningDataModule, LightningModule
from tests.core_support import quiet_trainer
from tests.models import ModernModel, make_data, make_loader


class Logs(LightningModule):
    """Logs known values so the reductions can be checked exactly."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.epoch_hooks = []

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("step_only", float(batch_idx))                          # default: on_step
        self.log("both", float(batch_idx), on_step=True, on_epoch=True)  # name_step + name_epoch
        return loss

    def on_train_epoch_end(self):
        self.epoch_hooks.append(("on_train_epoch_end", self.current_epoch))
        self.log("epoch_hook", 7.0)                                      # default: on_epoch

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.log("val_size", float(len(x)), batch_size=len(x))           # default: on_epoch, weighted mean
        self.log("val_idx", float(batch_idx), batch_size=len(x), prog_bar=True)

    def on_validation_epoch_end(self):
        self.epoch_hooks.append(("on_validation_epoch_end", self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_self_log_defaults_per_hook():
    model = Logs()
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    # 3 training batches; validation batches of 32 and 8 samples
    trainer.fit(model, make_loader(96, 32), make_loader(40, 32, seed=1))
    lm, cm, pm = trainer.logged_metrics, trainer.callback_metrics, trainer.progress_bar_metrics
    assert lm["step_only"] == 2.0 and "step_only_epoch" not in lm and "step_only_step" not in lm
    assert lm["both_step"] == 2.0 and lm["both_epoch"] == pytest.approx(1.0) and "both" not in lm
    assert cm["both"] == pytest.approx(1.0)  # the epoch value, once the epoch ended
    assert lm["epoch_hook"] == 7.0
    # epoch mean weighted by batch_size: (32*32 + 8*8) / 40 and (0*32 + 1*8) / 40
    assert lm["val_size"] == pytest.approx(27.2) and lm["val_idx"] == pytest.approx(0.2)
    assert pm["val_idx"] == pytest.approx(0.2) and "val_size" not in pm
    assert model.epoch_hooks == [("on_validation_epoch_end", 0), ("on_train_epoch_end", 0)]


def test_reduce_fx_and_step_values_at_each_step():
    class Model(Logs):
        def training_step(self, batch, batch_idx):
            self.log("mx", float(batch_idx), on_epoch=True, on_step=False, reduce_fx="max")
            self.log("sm", 1.0, on_epoch=True, on_step=False, reduce_fx="sum")
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(Model(), make_loader(128, 32))
    assert trainer.logged_metrics["mx"] == 3.0 and trainer.logged_metrics["sm"] == 4.0


def test_validate_test_predict():
    model = ModernModel()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0)
    trainer.fit(model)
    val = trainer.validate(model)
    test = trainer.test(model)
    assert len(val) == 1 and set(val[0]) == {"val_loss", "val_acc"}
    assert len(test) == 1 and set(test[0]) == {"test_loss", "test_acc"}
    assert all(isinstance(v, float) for v in test[0].values())
    x = torch.randn(10, 8)
    predictions = trainer.predict(model, dataloaders=DataLoader(x, batch_size=4))
    assert [p.shape for p in predictions] == [(4, 2), (4, 2), (2, 2)]
    model.eval()
    assert torch.allclose(torch.cat(predictions), model(x))


def test_seed_era_test_epoch_end_result():
    class Model(ModernModel):
        def test_step(self, batch, batch_idx):
            x, y = batch
            return {"correct": (self(x).argmax(-1) == y).sum(), "n": torch.tensor(len(y))}

        def test_epoch_end(self, outputs):
            acc = torch.stack([o["correct"] for o in outputs]).sum() / torch.stack([o["n"] for o in outputs]).sum()
            return {"test_acc": acc, "log": {"test_acc": acc}}

    result = quiet_trainer().test(Model())
    assert set(result[0]) == {"test_acc"} and 0.0 <= result[0]["test_acc"] <= 1.0


def test_fit_takes_dataloaders_as_arguments():
    class NoData(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(8, 2)
            self.val_batches = 0

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.val_batches += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = NoData()
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, make_loader(64, 16), make_loader(32, 16))
    assert trainer.global_step == 4 and model.val_batches == 2
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, train_dataloaders=make_loader(32, 16), val_dataloaders=[make_loader(32, 16)])
    assert trainer.global_step == 2 and model.val_batches == 4


class DigitsLikeData(LightningDataModule):
    def __init__(self):
        super().__init__()
        self.calls = []

    def prepare_data(self):
        self.calls.append("prepare_data")

    def setup(self, stage=None):
        self.calls.append(f"setup:{stage}")
        self.train, self.val = make_data(64), make_data(32, seed=1)

    def teardown(self, stage=None):
        self.calls.append(f"teardown:{stage}")

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=16)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=16)

    def test_dataloader(self):
        return DataLoader(self.val, batch_size=8)


def test_fit_and_test_with_a_datamodule():
    class NoData(ModernModel):
        train_dataloader = val_dataloader = test_dataloader = None

    dm = DigitsLikeData()
    model = NoData()
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 4 and "val_loss" in trainer.callback_metrics
    assert trainer.datamodule is dm and dm.trainer is trainer
    result = trainer.test(model, datamodule=dm)
    assert "test_acc" in result[0]
    assert dm.calls == ["prepare_data", "setup:fit", "teardown:fit", "prepare_data", "setup:test", "teardown:test"]


def test_datamodule_wins_over_module_loaders():
    model = ModernModel()  # has its own loaders of 256 samples
    dm = DigitsLikeData()
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, dm)  # a datamodule passed positionally, as Lightning allows
    assert trainer.global_step == 4


def test_manual_optimization():
    class Manual(ModernModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss, _ = self._loss(batch)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    model = Manual()
    before = model.layer.weight.detach().clone()
    quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0).fit(model)
    assert not torch.equal(before, model.layer.weight)


def test_epoch_values_are_readable_by_callbacks_of_the_epoch_end_event():
    """As in Lightning, a callback's ``on_*_epoch_end`` sees this epoch's reduced ``self.log`` values."""
    from engine import Callback

    class Reads(Callback):
        seen = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.seen.append(("train", float(trainer.callback_metrics["both_epoch"])))

        def on_validation_epoch_end(self, trainer, pl_module):
            self.seen.append(("val", float(trainer.callback_metrics["val_size"])))

    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[Reads()])
    trainer.fit(Logs(), make_loader(96, 32), make_loader(40, 32, seed=1))
    assert Reads.seen == [("val", pytest.approx(27.2)), ("train", 1.0)] * 2
    assert trainer.logged_metrics["epoch_hook"] == 7.0  # logged by the module after the callbacks, still sent


class TwoLoaderLogging(ModernModel):
    """Logs per batch (suffixed per dataloader), one value unsuffixed, and one at epoch end."""

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.log("mean_y", y.float().mean())
        self.log("seen", float(len(y)), reduce_fx="sum", add_dataloader_idx=False)

    def on_test_epoch_end(self):
        self.log("epoch_value", 7.0)


class ReturnNaming(ModernModel):
    """One value logged per step and per epoch, one kept from loggers, one plain."""

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.log("both", float(batch_idx), on_step=True, on_epoch=True)
        self.log("hidden", 1.0, logger=False)
        self.log("plain", 2.0)


def test_test_returns_what_went_to_loggers_at_the_end_as_lightning_does():
    """Lightning 2.x returns the logger-bound epoch values: ``both_epoch``, not ``both``; no ``logger=False`` value
    (which monitors still read in callback_metrics). With several dataloaders the suffix goes after ``_epoch``."""
    loader = DataLoader(TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long)), batch_size=2)
    trainer = quiet_trainer()
    assert trainer.test(ReturnNaming(), dataloaders=loader) == [{"both_epoch": 1.5, "plain": 2.0}]
    assert float(trainer.callback_metrics["hidden"]) == 1.0 and float(trainer.callback_metrics["both"]) == 1.5
    two = quiet_trainer()
    results = two.test(ReturnNaming(), dataloaders=[loader, loader])
    assert results == [{"both_epoch/dataloader_idx_0": 1.5, "plain/dataloader_idx_0": 2.0},
                       {"both_epoch/dataloader_idx_1": 1.5, "plain/dataloader_idx_1": 2.0}]
    assert {"both_step/dataloader_idx_1", "both_epoch/dataloader_idx_1"} <= set(two.logged_metrics)


def test_several_dataloaders_give_one_result_dict_each():
    zeros = TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long))
    ones = TensorDataset(torch.randn(4, 8), torch.ones(4, dtype=torch.long))
    trainer = quiet_trainer()
    results = trainer.test(TwoLoaderLogging(), dataloaders=[DataLoader(zeros, batch_size=4),
                                                            DataLoader(ones, batch_size=4)])
    # As in Lightning: names logged in a step get `/dataloader_idx_N`; each loader's dict has its own
    # values plus everything logged without a suffix.
    assert results == [
        {"mean_y/dataloader_idx_0": 0.0, "seen": 12.0, "epoch_value": 7.0},
        {"mean_y/dataloader_idx_1": 1.0, "seen": 12.0, "epoch_value": 7.0},
    ]
    # One dataloader: no suffix.
    single = quiet_trainer().test(TwoLoaderLogging(), dataloaders=DataLoader(ones, batch_size=4))
    assert single == [{"mean_y": 1.0, "seen": 4.0, "epoch_value": 7.0}]
