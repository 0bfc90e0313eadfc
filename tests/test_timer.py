"""Trainer(max_time=...) stops training once the time budget is spent."""
import time
from datetime import timedelta

import pytest

from engine import Callback, MisconfigurationException, Trainer
from plugins.timer import parse_max_time
from tests.models import ModernModel


@pytest.mark.parametrize("value, seconds", [
    ("00:01:00:30", 3630.0), ({"minutes": 2}, 120.0), (timedelta(seconds=5), 5.0), (1.5, 1.5),
])
def test_every_max_time_form(value, seconds):
    assert parse_max_time(value) == seconds


@pytest.mark.parametrize("value", ["1:00", "aa:bb:cc:dd", {"fortnights": 1}, -3, True])
def test_bad_max_time_is_a_clear_error(value):
    with pytest.raises(MisconfigurationException, match="max_time"):
        Trainer(max_time=value)


def test_max_time_stops_training_after_the_budget():
    class SlowBatches(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            time.sleep(0.05)

    trainer = Trainer(max_time={"seconds": 0.3}, max_epochs=100, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, num_sanity_val_steps=0, callbacks=[SlowBatches()])
    started = time.monotonic()
    trainer.fit(ModernModel())
    assert time.monotonic() - started < 5
    # 8 batches an epoch at >= 50 ms each: the budget ends training inside the first epoch.
    assert trainer.current_epoch <= 1 and 0 < trainer.global_step < 16


def test_no_timer_without_max_time():
    trainer = Trainer(logger=False, enable_progress_bar=False)
    assert "timer" not in trainer.registry.names()
