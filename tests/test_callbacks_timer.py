"""Timer (Lightning's callback, and what Trainer(max_time=...) registers), on a clock the test moves by hand."""
from __future__ import annotations

import os

import pytest
import torch

from engine import Callback, MisconfigurationException, Trainer
from plugins import Timer
from tests.callback_support import QUIET
from tests.models import ModernModel


class Clock:
    """Stands in for the ``time`` module the timer reads: each training batch takes one second."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now


class Tick(Callback):
    def __init__(self, clock, seconds=1.0):
        self.clock, self.seconds = clock, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.clock.now += self.seconds

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.clock.now += 0.5


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr("hookloop.plugins.timer.time", fake)
    return fake


def _trainer(clock, *callbacks, **flags):
    return Trainer(callbacks=[Tick(clock), *callbacks], **{**QUIET, "limit_val_batches": 0, "max_epochs": 10, **flags})


def test_step_interval_stops_after_the_batch_that_spends_the_budget(clock):
    trainer = _trainer(clock, Timer(duration={"seconds": 5}, verbose=False))
    trainer.fit(ModernModel())
    assert trainer.global_step == 5  # inside the first epoch (8 batches)


def test_epoch_interval_stops_at_the_end_of_the_epoch(clock):
    trainer = _trainer(clock, Timer(duration="00:00:00:10", interval="epoch", verbose=False))
    trainer.fit(ModernModel())
    assert trainer.global_step == 16  # 8 s after epoch 0, 16 s after epoch 1


def test_each_stage_is_timed(clock):
    timer = Timer()
    trainer = _trainer(clock, timer, max_epochs=2, limit_val_batches=2)
    trainer.fit(ModernModel())
    assert timer.time_elapsed("train") == 16 + 2 * 2 * 0.5  # training includes its validations
    assert timer.time_elapsed("validate") == 1.0  # the last validation run
    assert timer.time_remaining() is None and timer.end_time("train") == clock.now
    trainer.test(ModernModel(), verbose=False)
    assert timer.time_elapsed("test") == 0.0 and timer.start_time("test") == clock.now
    assert timer.start_time("predict") is None and timer.time_elapsed("predict") == 0.0


def test_the_budget_carries_over_a_resume(clock, tmp_path):
    first = _trainer(clock, Timer(), max_epochs=1)
    first.fit(ModernModel())
    path = os.path.join(tmp_path, "one.ckpt")
    first.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["callbacks"]["Timer"]["time_elapsed"]["train"] == 8.0
    timer = Timer(duration=10, verbose=False)
    resumed = _trainer(clock, timer)
    resumed.fit(ModernModel(), ckpt_path=path)
    assert resumed.global_step == 10 and timer.time_remaining() == 0.0


def test_max_time_is_a_timer_and_a_spent_budget_stops_a_resumed_run_at_once(clock, tmp_path):
    trainer = _trainer(clock, max_time={"seconds": 3})
    assert isinstance(trainer.plugin("timer"), Timer) and trainer.plugin("timer").time_remaining() == 3
    trainer.fit(ModernModel())
    assert trainer.global_step == 3
    path = os.path.join(tmp_path, "spent.ckpt")
    trainer.save_checkpoint(path)
    again = _trainer(clock, max_time={"seconds": 3})
    again.fit(ModernModel(), ckpt_path=path)
    assert again.global_step == 3  # on_fit_start found the budget spent: not one more batch


def test_a_timer_in_callbacks_wins_over_max_time(clock):
    trainer = _trainer(clock, Timer(duration=2, verbose=False), max_time=100)
    assert "timer" not in trainer.registry.names()
    trainer.fit(ModernModel())
    assert trainer.global_step == 2


def test_without_a_duration_nothing_runs_per_batch_or_epoch():
    timer = Timer()
    trainer = Trainer(callbacks=[timer], **QUIET)
    for event in ("on_train_batch_end", "on_train_epoch_end", "on_fit_start"):
        assert all(impl.plugin is not timer for impl in trainer.registry.implementations(event))
    assert any(impl.plugin is timer for impl in trainer.registry.implementations("on_train_start"))


@pytest.mark.parametrize("kwargs, match", [(dict(interval="batch"), "interval"), (dict(duration="1:00"), "duration"),
                                           (dict(duration=-1), "duration")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        Timer(**kwargs)
