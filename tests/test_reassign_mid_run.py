"""Reassigning ``trainer.accumulate_grad_batches``, ``trainer.optimizers`` or ``trainer.lr_scheduler_configs``
during ``fit`` takes effect from the next batch, as in Lightning (callbacks such as
GradientAccumulationScheduler, learning-rate finders and fine-tuning do it)."""
from __future__ import annotations

import pytest
import torch

from engine import Callback
from engine.errors import MisconfigurationException
from plugins.optimizer_config import LRSchedulerConfig
from tests.optim_support import Regressor, assert_same_weights, fit, hand_accumulation, twin


def _sgd(m, lr=0.1):
    return torch.optim.SGD(m.parameters(), lr=lr)


class SetAtEpoch(Callback):
    """Assigns ``trainer.<attribute> = make(trainer)`` at the start of epoch ``epoch``."""

    def __init__(self, epoch, attribute, make):
        self.epoch, self.attribute, self.make = epoch, attribute, make

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            setattr(trainer, self.attribute, self.make(trainer))


@pytest.mark.parametrize("before,after", [(1, 4), (4, 1), (2, 4)])
def test_accumulate_grad_batches_reassigned_in_a_callback_changes_accumulation(before, after):
    model = Regressor(_sgd)
    reference = twin(model)
    trainer = fit(model, accumulate_grad_batches=before, callbacks=[SetAtEpoch(1, "accumulate_grad_batches",
                                                                               lambda t: after)])
    hand_accumulation(reference, lambda epoch: before if epoch == 0 else after, 2)
    assert_same_weights(model, reference)
    assert trainer.global_step == 8 // before + 8 // after
    assert trainer.accumulate_grad_batches == after


def test_optimizers_reassigned_mid_fit_are_the_ones_stepped():
    made = []

    def new_optimizers(trainer):
        made.append(_sgd(trainer.lightning_module, lr=0.01))
        return made

    model = Regressor(_sgd)
    reference = twin(model)
    trainer = fit(model, callbacks=[SetAtEpoch(1, "optimizers", new_optimizers)])
    hand_accumulation(reference, lambda epoch: 1, 2,
                      optimizer_of_epoch=lambda epoch, opt: _sgd(reference, 0.01) if epoch == 1 else opt)
    assert_same_weights(model, reference)
    assert trainer.optimizers == made
    assert model.optimizers().optimizer is made[0]  # self.optimizers() wraps the new one


def test_lr_scheduler_configs_reassigned_mid_fit_step_from_then_on():
    def configs(trainer):
        scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizers[0], step_size=1, gamma=0.5)
        return [LRSchedulerConfig(scheduler, interval="step")]

    model = Regressor(_sgd)
    trainer = fit(model, callbacks=[SetAtEpoch(1, "lr_scheduler_configs", configs)])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 8)  # epoch 1's 8 steps


def test_a_bad_value_assigned_mid_fit_is_an_error_naming_the_flag():
    with pytest.raises(MisconfigurationException, match="accumulate_grad_batches"):
        fit(Regressor(_sgd), callbacks=[SetAtEpoch(1, "accumulate_grad_batches", lambda t: 0)])


def test_assigning_outside_fit_changes_nothing_but_the_value():
    model = Regressor(_sgd)
    trainer = fit(model, max_epochs=1)
    trainer.accumulate_grad_batches = 3
    trainer.optimizers = []
    assert trainer.accumulate_grad_batches == 3 and trainer.optimizers == []


class ReplaceInPlace(Callback):
    """At the start of epoch 1, changes ``trainer.optimizers`` in place (``[0] = new``) instead of assigning it."""

    def __init__(self):
        self.made = None

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.made = _sgd(pl_module, lr=0.01)
            trainer.optimizers[0] = self.made


def test_optimizers_changed_in_place_mid_fit_are_the_ones_stepped():
    model = Regressor(_sgd)
    reference = twin(model)
    callback = ReplaceInPlace()
    trainer = fit(model, callbacks=[callback])
    hand_accumulation(reference, lambda epoch: 1, 2,
                      optimizer_of_epoch=lambda epoch, opt: _sgd(reference, 0.01) if epoch == 1 else opt)
    assert_same_weights(model, reference)
    assert trainer.optimizers == [callback.made]
    assert model.optimizers().optimizer is callback.made


def test_schedulers_cleared_in_place_mid_fit_stop_stepping():
    def with_scheduler(m):
        opt = _sgd(m)
        return [opt], [{"scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), "interval": "step"}]

    class ClearAtEpoch1(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                trainer.lr_scheduler_configs.clear()

    model = Regressor(with_scheduler)
    trainer = fit(model, callbacks=[ClearAtEpoch1()])
    # Epoch 0's 8 steps halve the rate 8 times; after the clear, nothing steps the scheduler.
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 8)


def test_copies_of_the_trainers_lists_are_plain_lists():
    import copy
    import pickle

    trainer = fit(Regressor(_sgd), max_epochs=1)
    trainer.lr_scheduler_configs.append("a config")  # outside a fit: reported, and nothing rebuilds
    for copied in (copy.copy(trainer.lr_scheduler_configs), copy.deepcopy(trainer.optimizers),
                   pickle.loads(pickle.dumps(trainer.optimizers))):
        assert type(copied) is list and len(copied) == 1
