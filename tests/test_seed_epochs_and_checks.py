"""Seed-era (0.9) odds: ``on_pre/post_performance_check`` around every validation and test run, and what
``trainer.current_epoch`` holds during and after ``fit`` (the README's "current_epoch after fit")."""
from __future__ import annotations

import torch

from engine import Callback
from tests.core_support import quiet_trainer
from tests.models import SeedModel


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


def test_current_epoch_counts_from_zero_during_fit_and_holds_the_epochs_run_after_it():
    """Decision: 2.x's meaning after ``fit`` (epochs run), 0.9's and 2.x's shared one during it (the index)."""
    seen = []

    class Watch(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(trainer.current_epoch)

        def on_train_end(self, trainer, pl_module):
            seen.append(("end", trainer.current_epoch))

    trainer = quiet_trainer(max_epochs=3, limit_train_batches=1, limit_val_batches=0, callbacks=[Watch()])
    trainer.fit(SeedModel())
    assert seen == [0, 1, 2, ("end", 3)]
    assert trainer.current_epoch == 3  # 0.9 left 2 (the last index) here; 1.6+ and 2.x leave 3
