"""The ``lr_scheduler_step`` module hook: how a scheduler steps, replaceable by the module (2.x and 1.x forms)."""
from __future__ import annotations

import pytest
import torch

from engine import LightningModule, hookspecs
from engine.catalogue import module_hooks
from tests.optim_support import Regressor, fit


def _with_scheduler(make_scheduler, **config):
    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": make_scheduler(opt), **config}}
    return make


def _step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


def test_the_hook_is_in_the_catalogue_as_a_module_behaviour_hook():
    assert module_hooks()["lr_scheduler_step"] == ("scheduler", "metric", "optimizer_idx")
    assert hookspecs.lr_scheduler_step.engine_spec["firstresult"]
    assert "lr_scheduler_step" in (hookspecs.lr_scheduler_step.__doc__ or "")
    assert LightningModule.lr_scheduler_step.__doc__


class Modern(Regressor):
    """2.x: ``lr_scheduler_step(self, scheduler, metric)``."""

    def __init__(self, make_optim, step=True):
        super().__init__(make_optim, n=32)
        self.calls, self.step = [], step

    def lr_scheduler_step(self, scheduler, metric):
        self.calls.append((self.trainer.global_step, scheduler, metric))
        if self.step:
            scheduler.step()


def test_default_steps_each_epoch_scheduler():
    model = Regressor(_with_scheduler(_step_lr), n=32)
    trainer = fit(model, max_epochs=3)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_a_2x_override_is_called_per_interval_and_frequency_and_replaces_the_default():
    model = Modern(_with_scheduler(_step_lr, interval="step", frequency=2))
    trainer = fit(model, max_epochs=1)  # 4 optimizer steps
    assert [step for step, _, _ in model.calls] == [2, 4]
    assert all(s is trainer.lr_scheduler_configs[0].scheduler and m is None for _, s, m in model.calls)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 2)

    quiet = Modern(_with_scheduler(_step_lr), step=False)
    trainer = fit(quiet, max_epochs=2)
    assert len(quiet.calls) == 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1)  # the override did not step


def test_a_1x_override_gets_scheduler_optimizer_idx_metric():
    class Seed(Regressor):
        def __init__(self):
            super().__init__(_with_scheduler(_step_lr), n=32)
            self.calls = []

        def lr_scheduler_step(self, scheduler, optimizer_idx, metric):
            self.calls.append((scheduler, optimizer_idx, metric))
            scheduler.step()

    model = Seed()
    trainer = fit(model, max_epochs=2)
    assert [(idx, metric) for _, idx, metric in model.calls] == [(0, None), (0, None)]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)


def test_a_monitored_scheduler_gets_its_metric():
    def plateau(opt):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)

    model = Modern(_with_scheduler(plateau, monitor="val_loss"))
    model.validation_step = model._validation_step
    model.step = False
    trainer = fit(model, max_epochs=2, limit_val_batches=2)
    assert len(model.calls) == 2
    metric = model.calls[-1][2]
    assert isinstance(metric, torch.Tensor) and float(metric) == pytest.approx(float(trainer.callback_metrics["val_loss"]))


def test_the_default_steps_a_plateau_scheduler_with_the_metric():
    def plateau(opt):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.5)

    model = Regressor(_with_scheduler(plateau, monitor="val_loss"), n=32, val=True)
    trainer = fit(model, max_epochs=3, limit_val_batches=2)
    # mode='max' on a falling loss: no improvement after the first epoch, halved twice
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)
