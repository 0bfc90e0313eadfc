"""``trainer.fit_loop`` / ``validate_loop`` / ``test_loop`` / ``predict_loop``: the progress counters 2.x callbacks
read, derived from the loop state (no per-batch counting), and ``trainer.estimated_stepping_batches``."""
from __future__ import annotations

import math

import pytest
import torch

from engine import Callback, MisconfigurationException, Trainer
from tests.core_support import quiet_trainer
from tests.models import ModernModel, make_loader


def counts(tracker):
    return (tracker.ready, tracker.started, tracker.processed, tracker.completed)


class ProgressLog(Callback):
    """What a Lightning 2.x callback reads on the loops, at each hook."""

    def __init__(self):
        self.seen = []

    def _note(self, hook, trainer):
        epoch_loop = trainer.fit_loop.epoch_loop
        batches, val = epoch_loop.batch_progress, epoch_loop.val_loop.batch_progress
        self.seen.append((hook, counts(trainer.fit_loop.epoch_progress.current), counts(batches.current),
                          counts(batches.total), batches.is_last_batch, counts(val.current), counts(val.total)))

    def on_train_epoch_start(self, trainer, pl_module):
        self._note("epoch_start", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._note(f"batch_start {batch_idx}", trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._note(f"batch_end {batch_idx}", trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._note(f"val_batch_end {batch_idx}", trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._note("epoch_end", trainer)

    def on_train_end(self, trainer, pl_module):
        self._note("train_end", trainer)


def test_fit_progress_counters_follow_lightnings_meaning():
    log = ProgressLog()
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=0,
                            callbacks=[log])
    trainer.fit(ModernModel(n_train=128))
    seen = {(e, entry[0]): entry[1:] for e, entry in
            [(0, x) for x in log.seen[:10]] + [(1, x) for x in log.seen[10:20]]}
    # epoch progress: ready at epoch start, started in its batches, processed at its end hooks.
    assert seen[0, "epoch_start"][0] == (1, 0, 0, 0) and seen[1, "epoch_start"][0] == (2, 1, 1, 1)
    assert seen[0, "batch_end 0"][0] == (1, 1, 0, 0) and seen[0, "val_batch_end 1"][0] == (1, 1, 0, 0)
    assert seen[0, "epoch_end"][0] == (1, 1, 1, 0) and seen[1, "epoch_end"][0] == (2, 2, 2, 1)
    # Training batches: inside a batch's hooks it is counted, but not completed; totals run over epochs.
    assert seen[0, "batch_start 0"][1:4] == ((1, 1, 1, 0), (1, 1, 1, 0), False)
    assert seen[0, "batch_end 1"][1:4] == ((2, 2, 2, 1), (2, 2, 2, 1), False)
    assert seen[0, "batch_end 2"][1:4] == ((3, 3, 3, 2), (3, 3, 3, 2), True)
    assert seen[1, "batch_end 0"][1:3] == ((1, 1, 1, 0), (4, 4, 4, 3))
    assert seen[0, "epoch_end"][1:3] == ((3, 3, 3, 3), (3, 3, 3, 3))
    assert seen[1, "epoch_start"][1:3] == ((3, 3, 3, 3), (3, 3, 3, 3))  # the last epoch's, until batches run
    # Validation inside fit: the epoch's training batches are done; validation batches counted per run.
    assert seen[0, "val_batch_end 0"][1] == (3, 3, 3, 3)
    assert seen[0, "val_batch_end 0"][4:] == ((1, 1, 1, 0), (1, 1, 1, 0))
    assert seen[1, "val_batch_end 1"][4:] == ((2, 2, 2, 1), (4, 4, 4, 3))
    assert log.seen[-1][0] == "train_end" and log.seen[-1][1] == (2, 2, 2, 2)
    # After the fit, as Lightning leaves them.
    fit_loop = trainer.fit_loop
    assert counts(fit_loop.epoch_progress.current) == (2, 2, 2, 2) == counts(fit_loop.epoch_progress.total)
    assert counts(fit_loop.epoch_loop.batch_progress.current) == (3, 3, 3, 3)
    assert counts(fit_loop.epoch_loop.batch_progress.total) == (6, 6, 6, 6)
    assert (fit_loop.batch_idx, fit_loop.total_batch_idx, fit_loop.epoch_loop.global_step) == (2, 5, 6)
    assert fit_loop.epoch_loop._batches_that_stepped == 6  # what loggers in callbacks use as the step
    assert counts(fit_loop.epoch_loop.val_loop.batch_progress.total) == (4, 4, 4, 4)
    assert fit_loop.epoch_loop.val_loop.max_batches == [2] and fit_loop.epoch_loop.val_loop.num_dataloaders == 1


def test_counters_are_read_only_snapshots():
    trainer = quiet_trainer(max_epochs=1)
    progress = trainer.fit_loop.epoch_loop.batch_progress
    with pytest.raises(AttributeError):
        progress.current.completed = 5


def test_loop_bounds_are_the_trainers_flags_and_assignable():
    trainer = quiet_trainer(max_epochs=3, min_epochs=1, max_steps=50, min_steps=2)
    fit_loop = trainer.fit_loop
    assert (fit_loop.max_epochs, fit_loop.min_epochs, fit_loop.max_steps, fit_loop.min_steps) == (3, 1, 50, 2)
    fit_loop.max_epochs = 5  # Lightning's way to train on with another fit()
    fit_loop.epoch_loop.max_steps = -1
    assert (trainer.max_epochs, trainer.max_steps) == (5, -1)


def test_the_sanity_check_is_left_out_of_the_validation_totals():
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=2, num_sanity_val_steps=1)
    trainer.fit(ModernModel(n_train=64))
    val = trainer.fit_loop.epoch_loop.val_loop.batch_progress
    assert counts(val.current) == (2, 2, 2, 2) and counts(val.total) == (2, 2, 2, 2)


class EvalLog(Callback):
    def __init__(self):
        self.seen = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        loop = trainer.validate_loop
        self.seen.append((dataloader_idx, counts(loop.batch_progress.current), loop.current_dataloader_idx))

    def on_test_end(self, trainer, pl_module):
        self.test_end = counts(trainer.test_loop.batch_progress.current)


def test_validate_and_test_loops_count_their_runs():
    log = EvalLog()
    trainer = quiet_trainer(callbacks=[log], limit_test_batches=2)
    model = ModernModel()
    loaders = [make_loader(64, 32), make_loader(96, 32)]  # 2 and 3 batches
    trainer.validate(model, dataloaders=loaders, verbose=False)
    assert log.seen == [(0, (1, 1, 1, 0), 0), (0, (2, 2, 2, 1), 0),
                        (1, (3, 3, 3, 2), 1), (1, (4, 4, 4, 3), 1), (1, (5, 5, 5, 4), 1)]
    trainer.validate(model, dataloaders=loaders, verbose=False)
    progress = trainer.validate_loop.batch_progress
    assert counts(progress.current) == (5, 5, 5, 5) and counts(progress.total) == (10, 10, 10, 10)
    assert trainer.validate_loop.max_batches == [2, 3] and trainer.validate_loop.num_dataloaders == 2
    assert counts(trainer.fit_loop.epoch_loop.val_loop.batch_progress.total) == (0, 0, 0, 0)  # no fit ran
    trainer.test(model, verbose=False)
    assert log.test_end == (2, 2, 2, 2)


class Predictor(ModernModel):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0]).argmax(-1)


class PredictionsAtEpochEnd(Callback):
    """What Lightning's BasePredictionWriter reads at the end of a predict epoch."""

    def on_predict_epoch_end(self, trainer, pl_module):
        self.predictions = trainer.predict_loop.predictions
        self.progress = counts(trainer.predict_loop.batch_progress.current)


@pytest.mark.parametrize("n_loaders", [1, 2])
def test_predict_loop_predictions(n_loaders):
    writer = PredictionsAtEpochEnd()
    trainer = quiet_trainer(callbacks=[writer])
    loaders = [make_loader(64, 32) for _ in range(n_loaders)]
    returned = trainer.predict(Predictor(), dataloaders=loaders if n_loaders > 1 else loaders[0])
    assert writer.predictions == returned and trainer.predict_loop.predictions == returned
    expected_batches = [2] * n_loaders
    if n_loaders == 1:
        assert len(returned) == 2 and isinstance(returned[0], torch.Tensor)
    else:
        assert [len(p) for p in returned] == expected_batches
    assert writer.progress == (2 * n_loaders,) * 4 and trainer.predict_loop.return_predictions


def test_total_training_batches_survive_a_checkpoint(tmp_path):
    first = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0)
    model = ModernModel(n_train=128)
    first.fit(model)
    path = str(tmp_path / "after_epoch_0.ckpt")
    first.save_checkpoint(path)
    second = quiet_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0)
    second.fit(ModernModel(n_train=128), ckpt_path=path)
    progress = second.fit_loop.epoch_loop.batch_progress
    assert counts(progress.current) == (3, 3, 3, 3) and counts(progress.total) == (6, 6, 6, 6)
    assert counts(second.fit_loop.epoch_progress.current) == (2, 2, 2, 2)


class OneCycle(ModernModel):
    """Lightning's documented use: the scheduler's length from ``estimated_stepping_batches``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.loads = 0
        self.estimate = None

    def train_dataloader(self):
        self.loads += 1
        return super().train_dataloader()

    def configure_optimizers(self):
        self.estimate = self.trainer.estimated_stepping_batches
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        # OneCycleLR raises when stepped more often than total_steps: an estimate too low fails the fit.
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=self.estimate)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_estimated_stepping_batches_in_configure_optimizers():
    model = OneCycle(n_train=64, batch_size=16)  # 4 batches per epoch
    trainer = quiet_trainer(max_epochs=3, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(model)
    assert model.estimate == 6 == trainer.global_step  # ceil(4 / 2) * 3
    assert model.loads == 1  # the loop trains on the loader the estimate loaded
    assert trainer.estimated_stepping_batches == 6


@pytest.mark.parametrize("flags, expected", [
    (dict(max_epochs=3), 12),
    (dict(max_epochs=3, limit_train_batches=3), 9),
    (dict(max_epochs=3, accumulate_grad_batches={0: 1, 2: 3}), 4 + 4 + 2),
    (dict(max_epochs=3, max_steps=5), 5),
    (dict(max_epochs=-1, max_steps=7), 7),
])
def test_estimated_stepping_batches(flags, expected):
    model = OneCycle(n_train=64, batch_size=16)
    quiet_trainer(limit_val_batches=0, **flags).fit(model)
    assert model.estimate == expected


def test_estimated_stepping_batches_without_bounds_or_model():
    assert Trainer(max_epochs=-1, logger=False).estimated_stepping_batches == math.inf
    with pytest.raises(MisconfigurationException, match="read it during `fit`"):
        Trainer(max_epochs=2, logger=False).estimated_stepping_batches
