"""OnExceptionCheckpoint: a real exception mid-epoch saves a checkpoint; resuming from it trains as if uninterrupted."""
from __future__ import annotations

import os

import pytest
import torch

from engine import Trainer, seed_everything
from plugins import OnExceptionCheckpoint
from tests.callback_support import QUIET, weights
from tests.models import ModernModel


class Flaky(ModernModel):
    """Raises in ``training_step`` at one (epoch, batch) of the run, or never."""

    def __init__(self, fail_at=None):
        super().__init__()
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if (self.current_epoch, batch_idx) == self.fail_at:
            raise RuntimeError("the data source went away")
        return super().training_step(batch, batch_idx)


def _fit(model, **kwargs):
    ckpt_path = kwargs.pop("ckpt_path", None)
    trainer = Trainer(**{**QUIET, "max_epochs": 3, "limit_val_batches": 0, **kwargs})
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("fail_at", [(1, 3), (1, 0)])
def test_an_exception_mid_epoch_saves_a_checkpoint_that_resumes_exactly(tmp_path, fail_at):
    seed_everything(1)
    initial = weights(ModernModel())

    def model(fail=None):
        fresh = Flaky(fail)
        fresh.load_state_dict(initial)
        return fresh

    seed_everything(7)
    straight = model()
    _fit(straight)

    seed_everything(7)
    callback = OnExceptionCheckpoint(tmp_path / "ckpts")
    with pytest.raises(RuntimeError, match="went away"):
        _fit(model(fail_at), callbacks=[callback])
    path = os.path.join(tmp_path, "ckpts", "on_exception.ckpt")
    assert callback.ckpt_path == path and os.path.isfile(path)
    saved = torch.load(path, weights_only=True)
    assert (saved["loop"]["resume_epoch"], saved["loop"]["resume_batch"]) == fail_at  # the failed batch runs again

    resumed = model()
    trainer = _fit(resumed, ckpt_path=path, callbacks=[OnExceptionCheckpoint(tmp_path / "ckpts")])
    assert trainer.global_step == 24
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), straight.parameters()))
    assert not os.path.exists(path)  # the run ended well: the file has served (as in Lightning)


def test_custom_filename_and_nothing_saved_without_an_error(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path, filename="crash")
    _fit(ModernModel(), callbacks=[callback], max_epochs=1)
    assert callback.ckpt_path == os.path.join(tmp_path, "crash.ckpt") and os.listdir(tmp_path) == []
