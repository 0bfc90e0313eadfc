"""LearningRateMonitor (0.8/0.9: LearningRateLogger): learning rates reach the loggers, named as in Lightning."""
from __future__ import annotations

import pytest
import torch

from engine import Trainer
from engine.errors import MisconfigurationException
from plugins import LearningRateLogger, LearningRateMonitor
from tests import core_support
from tests.models import ModernModel

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
             num_sanity_val_steps=0, limit_val_batches=0)


class Recorder(core_support.RecordingLogger):
    """The shared recorder, its values rounded to 6 decimals (learning rates are products of floats)."""

    def with_key(self, key):
        return [(step, round(value, 6)) for step, value in super().with_key(key)]


class EpochScheduled(ModernModel):
    """StepLR halving per epoch (8 batches per epoch)."""

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


class StepScheduled(ModernModel):
    """Two optimizers of one class: a per-step scheduler on the first, none on the second (two groups)."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        for opt in self.optimizers():
            opt.zero_grad()
        self.manual_backward(self._loss(batch)[0])
        for opt in self.optimizers():
            opt.step()
        self.lr_schedulers().step()

    def configure_optimizers(self):
        first = torch.optim.SGD([self.layer.weight], lr=1.0)
        second = torch.optim.SGD([{"params": [self.layer.bias]}, {"params": [], "lr": 0.5}], lr=0.2)
        schedule = torch.optim.lr_scheduler.LambdaLR(first, lambda step: 1.0 / (step + 1))
        return [first, second], [{"scheduler": schedule, "interval": "step"}]


def test_epoch_scheduler_is_logged_at_every_epoch_start():
    logger = Recorder()
    monitor = LearningRateMonitor(log_momentum=True)
    Trainer(max_epochs=3, logger=logger, callbacks=[monitor], **QUIET).fit(EpochScheduled())
    assert logger.with_key("lr-SGD") == [(0, 0.1), (8, 0.05), (16, 0.025)]
    assert logger.with_key("lr-SGD-momentum") == [(0, 0.9), (8, 0.9), (16, 0.9)]  # Lightning 2.x's name
    # What it logged stays on the callback, as both eras keep it.
    assert {k: [round(v, 6) for v in vs] for k, vs in monitor.lrs.items()} == {"lr-SGD": [0.1, 0.05, 0.025]}
    assert monitor.last_momentum_values == {"lr-SGD-momentum": 0.9}


def test_lrs_of_the_seed_learning_rate_logger_hold_each_optimizer_and_group():
    callback = LearningRateLogger()
    Trainer(max_epochs=1, logger=Recorder(), log_every_n_steps=4, callbacks=[callback], **QUIET).fit(StepScheduled())
    assert sorted(callback.lrs) == ["lr-SGD", "lr-SGD-1/pg1", "lr-SGD-1/pg2"]
    assert [round(v, 6) for v in callback.lrs["lr-SGD"]] == [round(1.0 / 3, 6), 0.2, round(1.0 / 7, 6)]
    assert callback.lrs["lr-SGD-1/pg2"][0] == 0.5


def test_step_scheduler_every_log_every_n_steps_and_names_of_same_class_optimizers():
    logger = Recorder()
    trainer = Trainer(max_epochs=1, logger=logger, log_every_n_steps=4, callbacks=[LearningRateMonitor()], **QUIET)
    trainer.fit(StepScheduled())
    # x = optimizer steps taken; the manual loop steps both optimizers, so global_step grows by 2 per batch
    # and every batch that enters a new stretch of 4 steps logs (at 4, 8, 12).
    assert [step for step, _ in logger.with_key("lr-SGD")] == [4, 8, 12]
    assert logger.with_key("lr-SGD")[0] == (4, round(1.0 / 3, 6))  # after two scheduler steps
    # The second SGD, unscheduled, is logged at both intervals, each of its groups apart.
    assert logger.with_key("lr-SGD-1/pg1")[0] == (0, 0.2) and logger.with_key("lr-SGD-1/pg2")[0] == (0, 0.5)
    assert float(trainer.callback_metrics["lr-SGD-1/pg2"]) == 0.5


def test_epoch_interval_registers_no_per_batch_hook_and_seed_name_works():
    callback = LearningRateLogger(logging_interval="epoch")
    assert isinstance(callback, LearningRateMonitor) and "on_train_batch_start" not in callback.__engine_hooks__
    trainer = Trainer(max_epochs=1, logger=Recorder(), callbacks=[callback], **QUIET)
    trainer.fit(EpochScheduled())
    assert trainer.hooks.on_train_batch_start is None


def test_without_a_logger_or_with_a_bad_interval_it_says_so():
    with pytest.raises(MisconfigurationException, match="needs a logger"):
        Trainer(max_epochs=1, logger=False, callbacks=[LearningRateMonitor()], **QUIET).fit(EpochScheduled())
    with pytest.raises(MisconfigurationException, match="logging_interval='batch'"):
        LearningRateMonitor(logging_interval="batch")


def test_one_step_per_batch_logs_where_step_values_go_and_a_named_group_keeps_its_name():
    """As Lightning 2.x: with log_every_n_steps=2, at x = 1, 3, 5, 7; a single named group is ``lr-SGD/<name>``."""

    class NamedGroup(ModernModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD([{"params": self.parameters(), "name": "all"}], lr=0.1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5),
                                                       "interval": "step"}}

    logger = Recorder()
    Trainer(max_epochs=1, logger=logger, log_every_n_steps=2, callbacks=[LearningRateMonitor()], **QUIET).fit(
        NamedGroup())
    assert [step for step, _ in logger.with_key("lr-SGD/all")] == [1, 3, 5, 7]
    assert logger.with_key("lr-SGD/all")[0] == (1, 0.05)
