"""StochasticWeightAveraging: the average of the last epochs' weights ends up in the module, BatchNorm statistics
are recomputed for it, and the SWA learning-rate schedule takes over at the start epoch."""
from __future__ import annotations

import os

import pytest
import torch

from engine import Callback, MisconfigurationException, Trainer
from plugins import ModelCheckpoint, StochasticWeightAveraging
from tests.callback_support import QUIET, BackboneModel, weights
from tests.models import make_data


class Recorder(Callback):
    """At every epoch start (before SWA's, listed first): the parameters; at every epoch end: the learning rate."""

    def __init__(self):
        self.params, self.lrs, self.steps = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.params.append([p.detach().clone() for p in pl_module.parameters()])
        self.steps.append(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


class StepLRModel(BackboneModel):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def _average(recorded, epochs):
    return [torch.stack([recorded[e][i] for e in epochs]).mean(0) for i in range(len(recorded[0]))]


def test_the_average_of_the_last_epochs_ends_up_in_the_module():
    recorder = Recorder()
    model = BackboneModel(batch_norm=False)
    trainer = Trainer(max_epochs=5, callbacks=[recorder, StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=3)],
                      **QUIET)
    trainer.fit(model)
    # swa_epoch_start=3 (counting from 1): the weights at the start of epochs 2, 3 and 4 (from 0) are averaged.
    for got, expected in zip(model.parameters(), _average(recorder.params, [2, 3, 4])):
        assert torch.allclose(got, expected, atol=1e-6)
    assert trainer.current_epoch == 5 and trainer.max_epochs == 5  # no extra epoch without BatchNorm


def test_batch_norm_statistics_are_recomputed_for_the_averaged_weights():
    recorder = Recorder()
    model = BackboneModel(batch_norm=True)
    trainer = Trainer(max_epochs=4, callbacks=[recorder, StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=0.5)],
                      **QUIET)
    trainer.fit(model)
    # 0.5 * 4 epochs: averaging from the 2nd epoch (1 from 0) to the last; then a forward-only epoch for BatchNorm.
    assert len(recorder.params) == 5 and recorder.steps[4] == trainer.global_step == 16  # no step in epoch 4
    average = _average(recorder.params, [1, 2, 3])
    for got, expected in zip(model.parameters(), average):
        assert torch.allclose(got, expected, atol=1e-6)
    assert trainer.max_epochs == 4  # given back
    bn = model.backbone[1]
    assert bn.momentum == 0.1  # given back too
    # The statistics: the cumulative average over the epoch's 4 batches of each batch's, under the averaged weights.
    x = make_data(128).tensors[0]
    hidden = torch.nn.functional.linear(x, model.backbone[0].weight, model.backbone[0].bias)
    batches = hidden.split(32)
    assert torch.allclose(bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([b.var(0) for b in batches]).mean(0), atol=1e-4)
    assert int(bn.num_batches_tracked) == 4


def test_the_swa_schedule_replaces_the_module_scheduler_at_the_start_epoch():
    recorder = Recorder()
    swa = StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=3, annealing_epochs=2)
    Trainer(max_epochs=6, callbacks=[recorder, swa], **QUIET).fit(StepLRModel(batch_norm=False))
    # StepLR halves 0.1 twice; from epoch 2 SWALR anneals (cosine, 2 epochs) from 0.025 to 0.01 and stays there.
    assert recorder.lrs == pytest.approx([0.1, 0.05, 0.025, 0.0175, 0.01, 0.01])


def test_resume_continues_the_average(tmp_path):
    torch.manual_seed(0)
    initial = weights(BackboneModel(batch_norm=False))

    def model():
        fresh = BackboneModel(batch_norm=False)
        fresh.load_state_dict(initial)
        return fresh

    straight = model()
    Trainer(max_epochs=5, callbacks=[StochasticWeightAveraging(0.05, swa_epoch_start=2)], **QUIET).fit(straight)
    saver = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, filename="{epoch}")
    Trainer(max_epochs=3, callbacks=[StochasticWeightAveraging(0.05, swa_epoch_start=2), saver],
            **{**QUIET, "enable_checkpointing": True}).fit(model())
    resumed = model()
    Trainer(max_epochs=5, callbacks=[StochasticWeightAveraging(0.05, swa_epoch_start=2)], **QUIET).fit(
        resumed, ckpt_path=os.path.join(tmp_path, "epoch=2.ckpt"))
    for got, expected in zip(resumed.parameters(), straight.parameters()):
        assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(swa_lrs=-1.0), "swa_lrs"), (dict(swa_lrs=0.1, swa_epoch_start=0), "swa_epoch_start"),
    (dict(swa_lrs=0.1, annealing_strategy="exp"), "annealing_strategy"), (dict(swa_lrs=0.1, avg_fn=3), "avg_fn"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        StochasticWeightAveraging(**kwargs)


def test_a_failed_fit_gives_max_epochs_back():
    class Failing(BackboneModel):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 1:
                raise RuntimeError("stop here")
            return super().training_step(batch, batch_idx)

    trainer = Trainer(max_epochs=4, callbacks=[StochasticWeightAveraging(swa_lrs=0.05)], **QUIET)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.fit(Failing(batch_norm=True))
    assert trainer.max_epochs == 4
