"""0.9's tuning: the auto_lr_find/auto_scale_batch_size flags, trainer.lr_find() and trainer.scale_batch_size()."""
from __future__ import annotations

import argparse

import pytest
import torch

from engine import Callback, Trainer
from engine.errors import MisconfigurationException
from tests.models import SeedModel
from tests.tuner_support import MemoryBound, same_weights, temporary_checkpoints, weights

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


class AtTrainStart(Callback):
    def on_train_start(self, trainer, pl_module):
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.batch_size = trainer.train_dataloader.batch_size
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_auto_lr_find_sets_the_rate_at_the_start_of_fit(tmp_path):
    start = AtTrainStart()
    model = SeedModel(lr=0.05)
    initial = weights(model)
    trainer = Trainer(max_epochs=1, auto_lr_find=True, callbacks=[start], default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model)
    found = trainer.plugin("lr_finder").optimal_lr.suggestion()
    assert start.lr == model.lr == found != 0.05 and same_weights(start.weights, initial)
    assert trainer.auto_lr_find is True and temporary_checkpoints(str(tmp_path)) == []


def test_auto_lr_find_names_the_attribute(tmp_path):
    class OwnName(SeedModel):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"my_lr": 0.05})

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.my_lr)

    model = OwnName()
    Trainer(max_epochs=1, auto_lr_find="my_lr", default_root_dir=str(tmp_path), **QUIET).fit(model)
    assert model.hparams.my_lr != 0.05 and model.lr == 0.05
    with pytest.raises(MisconfigurationException, match=r"Trainer\(auto_lr_find='rate'\): OwnName has no `rate`"):
        Trainer(max_epochs=1, auto_lr_find="rate", default_root_dir=str(tmp_path), **QUIET).fit(OwnName())


@pytest.mark.parametrize("flag, found", [(True, 64), ("power", 64), ("binsearch", 100)])
def test_auto_scale_batch_size_sizes_the_training_data_at_the_start_of_fit(tmp_path, flag, found):
    start = AtTrainStart()
    model = MemoryBound(limit=100)
    trainer = Trainer(max_epochs=1, auto_scale_batch_size=flag, callbacks=[start], limit_val_batches=0,
                      default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model)
    assert model.batch_size == start.batch_size == found


def test_both_flags_scale_the_batch_first_then_find_the_rate(tmp_path):
    class Both(MemoryBound):
        def __init__(self):
            super().__init__(limit=100)
            self.lr = 0.1
            self.lr_sweep_sizes = set()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

        def on_train_start(self):
            if self.trainer.max_steps == 100:  # the rate's sweep (100 steps)
                self.lr_sweep_sizes.add(self.batch_size)

    model = Both()
    Trainer(max_epochs=1, auto_lr_find=True, auto_scale_batch_size="binsearch", limit_val_batches=0,
            default_root_dir=str(tmp_path), **QUIET).fit(model)
    assert model.batch_size == 100 and model.lr_sweep_sizes == {100} and model.lr != 0.1


def test_the_seed_flags_scale_at_fit_only_and_check_their_values(tmp_path):
    model = MemoryBound(limit=100, batch_size=16)
    Trainer(auto_scale_batch_size=True, default_root_dir=str(tmp_path), **QUIET).validate(model, verbose=False)
    assert model.batch_size == 16 and set(model.sizes_seen) == {16}  # 0.9 scaled at fit only
    with pytest.raises(MisconfigurationException, match=r"auto_scale_batch_size='powr'\).*Did you mean `power`"):
        Trainer(auto_scale_batch_size="powr")
    with pytest.raises(MisconfigurationException, match=r"auto_lr_find=3\): pass True"):
        Trainer(auto_lr_find=3)
    trainer = Trainer(auto_lr_find=True, disable_plugins=["lr_finder"], **QUIET)
    assert "lr_finder" not in trainer.registry.names()


def test_the_flags_parse_from_the_command_line():
    parser = Trainer.add_argparse_args(argparse.ArgumentParser())
    args = Trainer.parse_argparser(parser.parse_args(["--auto_lr_find", "--auto_scale_batch_size", "binsearch"]))
    trainer = Trainer.from_argparse_args(args, **QUIET)
    assert (trainer.auto_lr_find, trainer.auto_scale_batch_size) == (True, "binsearch")
    assert {"lr_finder", "batch_size_finder"} <= set(trainer.registry.names())


def test_trainer_lr_find_returns_the_sweep_and_leaves_the_model_alone(tmp_path):
    model = SeedModel(lr=0.05)
    before = weights(model)
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    finder = trainer.lr_find(model, num_training=30)
    assert len(finder.results["lr"]) == 30 and finder.suggestion() > 0
    assert model.lr == 0.05 and same_weights(weights(model), before)  # 0.9: the caller sets the rate
    model.lr = finder.suggestion()
    trainer.fit(model)


def test_trainer_scale_batch_size_sets_and_returns_the_size(tmp_path):
    model = MemoryBound(limit=100)
    assert Trainer(default_root_dir=str(tmp_path), **QUIET).scale_batch_size(model, mode="binsearch",
                                                                             steps_per_trial=1) == 100
    assert model.batch_size == 100
