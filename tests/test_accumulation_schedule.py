"""GradientAccumulationScheduler (Lightning's callback) and the seed-era ``accumulate_grad_batches={epoch: k}``."""
from __future__ import annotations

import pytest
import torch

import hookloop.plugins
from engine import Trainer
from engine.errors import MisconfigurationException
from plugins import GradientAccumulationScheduler
from tests.optim_support import QUIET, Regressor, assert_same_weights, fit, hand_accumulation, twin


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.1)


def _schedule(epoch):
    return 1 if epoch < 1 else (4 if epoch < 3 else 2)


def test_importable_where_the_other_callbacks_are():
    assert hookloop.plugins.GradientAccumulationScheduler is GradientAccumulationScheduler


def test_the_callback_changes_accumulation_by_epoch_like_a_torch_loop():
    model = Regressor(_sgd)
    reference = twin(model)
    callback = GradientAccumulationScheduler(scheduling={1: 4, 3: 2})
    trainer = fit(model, max_epochs=4, callbacks=[callback])
    hand_accumulation(reference, _schedule, 4)
    assert_same_weights(model, reference)
    assert trainer.global_step == 8 + 2 + 2 + 4
    assert callback.scheduling == {0: 1, 1: 4, 3: 2}
    assert [callback.get_accumulate_grad_batches(e) for e in range(5)] == [1, 4, 4, 2, 2]


def test_the_seed_era_dict_flag_does_the_same():
    model = Regressor(_sgd)
    via_callback = twin(model)
    trainer = fit(model, max_epochs=4, accumulate_grad_batches={1: 4, 3: 2})
    fit(via_callback, max_epochs=4, callbacks=[GradientAccumulationScheduler({1: 4, 3: 2})])
    assert_same_weights(model, via_callback)
    assert trainer.global_step == 16


@pytest.mark.parametrize("scheduling,error,match", [
    ({}, TypeError, "empty"),
    ({-1: 2}, MisconfigurationException, "Epoch should be an int greater than or equal to 0"),
    ({"1": 2}, MisconfigurationException, "Epoch should be an int"),
    ({0: 0}, MisconfigurationException, "Accumulation factor should be an int greater than 0"),
    ({0: 1.5}, MisconfigurationException, "Accumulation factor"),
])
def test_bad_schedules_are_refused_as_lightning_does(scheduling, error, match):
    with pytest.raises(error, match=f"(?i){match}"):
        GradientAccumulationScheduler(scheduling=scheduling)


def test_refused_with_an_accumulate_grad_batches_flag():
    with pytest.raises(ValueError, match="remove `accumulate_grad_batches` from the Trainer or remove the callback"):
        fit(Regressor(_sgd), accumulate_grad_batches=2, callbacks=[GradientAccumulationScheduler({0: 4})])


def test_refused_under_manual_optimization():
    class Manual(Regressor):
        def __init__(self):
            super().__init__(_sgd)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            self.manual_backward(super().training_step(batch, batch_idx))
            opt.step()
            opt.zero_grad()

    with pytest.raises(RuntimeError, match="not supported for manual optimization"):
        fit(Manual(), callbacks=[GradientAccumulationScheduler({0: 2})])


def test_a_second_fit_of_the_same_trainer_is_not_taken_for_a_flag():
    callback = GradientAccumulationScheduler({0: 2})
    trainer = Trainer(**{**QUIET, "max_epochs": 1}, callbacks=[callback])
    trainer.fit(Regressor(_sgd))
    assert trainer.accumulate_grad_batches == 2
    trainer.fit(Regressor(_sgd), ckpt_path=None)
    assert trainer.global_step == 4
