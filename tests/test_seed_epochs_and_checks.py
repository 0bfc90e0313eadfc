"""Seed-era (0.9) odds: ``on_pre/post_performance_check`` around every validation and test run, and what
``trainer.current_epoch`` holds during and after ``fit``: the epoch's index during it in both eras; after it
0.9's last trained index for a run that used a 0.8/0.9-only API, 2.x's count of epochs run otherwise (the
README's "current_epoch after fit")."""
from __future__ import annotations

import contextlib
import os

import pytest
import torch

from engine import Callback, EvalResult, TrainResult
from tests.core_support import quiet_trainer
from tests.models import ModernModel, SeedModel


class Checked(SeedModel):
    """Records the performance-check hooks and the validation events between them, with the module's mode."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_pre_performance_check(self):
        self.calls.append(("pre", self.training, torch.is_grad_enabled()))

    def on_post_performance_check(self):
        self.calls.append(("post", self.training, torch.is_grad_enabled()))

    def on_validation_start(self):
        self.calls.append(("validation_start", self.training, torch.is_grad_enabled()))

    def on_validation_end(self):
        self.calls.append(("validation_end", self.training, torch.is_grad_enabled()))

    def test_step(self, batch, batch_idx):
        return self.validation_step(batch, batch_idx)

    def on_test_start(self):
        self.calls.append(("test_start", self.training, torch.is_grad_enabled()))

    def test_dataloader(self):
        return self.val_dataloader()


def test_performance_checks_wrap_every_validation_and_test_run_in_train_mode():
    model = Checked()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1)
    trainer.fit(model)
    run = [("pre", True, True), ("validation_start", False, False), ("validation_end", False, False),
           ("post", True, True)]
    assert model.calls == run * 3  # the sanity check and one run per epoch
    model.calls.clear()
    trainer.test(model, verbose=False)
    assert [c[0] for c in model.calls] == ["pre", "test_start", "post"]


def test_performance_checks_are_module_hooks_only():
    assert not hasattr(Callback, "on_pre_performance_check") and not hasattr(Callback, "on_post_performance_check")


class EpochWatch(Callback):
    """Records ``trainer.current_epoch`` at each epoch start and at ``on_train_end``."""

    def __init__(self):
        self.seen = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(trainer.current_epoch)

    def on_train_end(self, trainer, pl_module):
        self.seen.append(("end", trainer.current_epoch))


class PlainSteps(ModernModel):
    """2.x-style steps (a tensor loss, no dicts) for the variants below to add one seed-era piece to."""

    def validation_step(self, batch, batch_idx):
        return {"val_loss": self._loss(batch)[0]}


class LogDictInValidationEpochEnd(PlainSteps):
    def validation_epoch_end(self, outputs):
        return {"progress_bar": {"val_loss": torch.stack([o["val_loss"] for o in outputs]).mean()}}


class TrainResultSteps(PlainSteps):
    def training_step(self, batch, batch_idx):
        result = TrainResult(self._loss(batch)[0])
        result.log("train_loss", result.minimize)
        return result


class EvalResultSteps(PlainSteps):
    def validation_step(self, batch, batch_idx):
        return EvalResult(checkpoint_on=self._loss(batch)[0])


class BatchHookWithoutOutputs(PlainSteps):
    def on_train_batch_end(self, batch, batch_idx, dataloader_idx):  # 0.9's signature
        pass


SEED_ERA_RUNS = {
    "training_step 'log' dict": (SeedModel, {}),
    "validation_epoch_end 'progress_bar' dict": (LogDictInValidationEpochEnd, {}),
    "TrainResult": (TrainResultSteps, {}),
    "EvalResult": (EvalResultSteps, {}),
    "0.7 flag train_percent_check": (PlainSteps, {"train_percent_check": 1.0}),
    "0.9 on_train_batch_end(batch, batch_idx, dataloader_idx)": (BatchHookWithoutOutputs, {}),
}


@pytest.mark.parametrize("what", list(SEED_ERA_RUNS))
def test_a_seed_era_fit_leaves_the_last_trained_epochs_index_in_current_epoch(what):
    model_class, flags = SEED_ERA_RUNS[what]
    watch = EpochWatch()
    with pytest.warns(DeprecationWarning) if flags else contextlib.nullcontext():
        trainer = quiet_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                                callbacks=[watch], **flags)
    model = model_class()
    trainer.fit(model)
    assert trainer.state.seed_era
    assert watch.seen == [0, 1, 2, ("end", 2)]  # 0.9: set at each epoch's start, never after
    assert trainer.current_epoch == 2 and model.current_epoch == 2 and trainer.state.epoch == 3


def test_a_2x_fit_holds_the_number_of_epochs_run_in_current_epoch():
    watch = EpochWatch()
    trainer = quiet_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                            callbacks=[watch])
    trainer.fit(PlainSteps())  # dicts from validation_step without 'log' are 2.x too
    assert not trainer.state.seed_era
    assert watch.seen == [0, 1, 2, ("end", 3)] and trainer.current_epoch == 3


def test_after_a_seed_era_fit_the_index_stays_through_test_and_a_second_fit_trains_on():
    watch = EpochWatch()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, limit_test_batches=1,
                            num_sanity_val_steps=0, callbacks=[watch])
    model = SeedModel()
    model.test_step, model.test_dataloader = model.validation_step, model.val_dataloader
    trainer.fit(model)
    trainer.test(model, verbose=False)
    assert trainer.current_epoch == 1  # 0.9 left it alone in test()
    watch.seen.clear()
    trainer.fit_loop.max_epochs = 4
    trainer.fit(model)
    assert watch.seen == [2, 3, ("end", 3)] and trainer.current_epoch == 3  # no epoch trained twice


def test_an_early_stopped_seed_era_fit_leaves_the_stopping_epochs_index():
    class StopAtEpochOne(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                trainer.should_stop = True

    trainer = quiet_trainer(max_epochs=5, limit_train_batches=2, limit_val_batches=0, callbacks=[StopAtEpochOne()])
    trainer.fit(SeedModel())
    assert trainer.current_epoch == 1  # 2.x: 2 (epochs run)


def test_a_checkpoint_saved_after_a_seed_era_fit_resumes_at_the_next_epoch(tmp_path):
    flags = dict(limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0)
    trainer = quiet_trainer(max_epochs=2, **flags)
    trainer.fit(SeedModel())
    path = os.path.join(tmp_path, "after_fit.ckpt")
    trainer.save_checkpoint(path)
    watch = EpochWatch()
    resumed = quiet_trainer(max_epochs=3, callbacks=[watch], **flags)
    resumed.fit(SeedModel(), ckpt_path=path)
    assert watch.seen == [2, ("end", 2)] and resumed.current_epoch == 2


def test_an_interrupted_seed_era_fit_leaves_the_interrupted_epochs_index():
    class Boom(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1:
                raise RuntimeError("boom")

    trainer = quiet_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(SeedModel())
    assert trainer.current_epoch == 1  # both eras: the epoch that was running


def test_disabling_the_seed_epoch_plugin_keeps_2x_current_epoch_for_a_seed_era_run():
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=1, limit_val_batches=0,
                            disable_plugins=["seed_epoch"])
    trainer.fit(SeedModel())
    assert trainer.state.seed_era and trainer.current_epoch == 2
