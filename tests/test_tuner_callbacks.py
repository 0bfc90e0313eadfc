"""LearningRateFinder and BatchSizeFinder: the same searches at the start of a run, before it builds anything."""
from __future__ import annotations

import pytest
import torch

from engine import Callback, Trainer
from engine.errors import MisconfigurationException
from plugins import BatchSizeFinder, LearningRateFinder
from tests.core_support import Recorder, quiet_trainer
from tests.models import ModernModel
from tests.tuner_support import MemoryBound, same_weights, temporary_checkpoints, weights


class AtTrainStart(Callback):
    """What the real training starts from: the optimizer's rate, the weights, the loader's batch size."""

    def on_train_start(self, trainer, pl_module):
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.weights = weights(pl_module)
        self.batch_size = trainer.train_dataloader.batch_size


def test_the_learning_rate_finder_sets_the_rate_before_the_optimizers_are_built(tmp_path):
    finder, start, recorder = LearningRateFinder(num_training_steps=40), AtTrainStart(), Recorder()
    model = ModernModel(lr=0.05)
    initial = weights(model)
    trainer = quiet_trainer(max_epochs=1, default_root_dir=str(tmp_path), callbacks=[finder, start, recorder])
    trainer.fit(model)
    suggested = finder.optimal_lr.suggestion()
    assert len(finder.optimal_lr.results["lr"]) == 40
    assert start.lr == suggested == model.hparams.lr != 0.05  # configure_optimizers read the rate found
    assert same_weights(start.weights, initial)  # training started from the initial weights
    names = recorder.names()
    assert names.count("setup") == names.count("on_train_start") == 1
    assert names.count("on_train_batch_end") == 8 == trainer.global_step  # the real epoch's batches only
    assert temporary_checkpoints(str(tmp_path)) == []


def test_the_batch_size_finder_sizes_the_training_dataloader(tmp_path):
    finder, start = BatchSizeFinder(mode="binsearch", steps_per_trial=1), AtTrainStart()
    model = MemoryBound(limit=100)
    trainer = quiet_trainer(max_epochs=1, default_root_dir=str(tmp_path), callbacks=[finder, start],
                            limit_val_batches=0)
    trainer.fit(model)
    assert finder.optimal_batch_size == model.batch_size == start.batch_size == 100
    assert trainer.global_step == 6  # 512 samples in batches of 100


def test_the_batch_size_finder_sizes_validate_too(tmp_path):
    finder = BatchSizeFinder(mode="binsearch", steps_per_trial=1)
    model = MemoryBound(limit=1, eval_limit=30)
    results = quiet_trainer(default_root_dir=str(tmp_path), callbacks=[finder]).validate(model, verbose=False)
    assert finder.optimal_batch_size == model.batch_size == 30 and results == [{}]


def test_a_subclass_may_search_during_training(tmp_path):
    class AtEpochOne(LearningRateFinder):
        def setup(self, trainer, pl_module, stage):
            pass  # not at the start

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                self.lr_find(trainer, pl_module)

    class Rates(Callback):
        def __init__(self):
            self.rates = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    finder, rates = AtEpochOne(num_training_steps=30), Rates()
    model = ModernModel(lr=0.05)
    trainer = quiet_trainer(max_epochs=2, default_root_dir=str(tmp_path), callbacks=[finder, rates])
    trainer.fit(model)
    assert rates.rates == [0.05, finder.optimal_lr.suggestion()] and trainer.global_step == 16
    assert model.trainer is trainer


def test_an_error_in_the_search_fails_the_fit_naming_the_finder(tmp_path):
    trainer = quiet_trainer(default_root_dir=str(tmp_path), callbacks=[LearningRateFinder(attr_name="rate")])
    with pytest.raises(MisconfigurationException, match=r"LearningRateFinder: ModernModel has no `rate`"):
        trainer.fit(ModernModel())
    assert torch.is_grad_enabled() and temporary_checkpoints(str(tmp_path)) == []


def test_a_trainer_without_finders_registers_none():
    trainer = Trainer(logger=False)
    assert not {"lr_finder", "batch_size_finder"} & set(trainer.registry.names())
