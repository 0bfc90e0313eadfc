"""Loop flags with Lightning's meaning, the loop state, and bitwise reproducibility."""
from __future__ import annotations

import os

import pytest
import torch

from engine import Callback, MisconfigurationException, seed_everything
from tests.core_support import Recorder, quiet_trainer
from tests.models import SeedModel


class Counts(Callback):
    """Per training batch ``(epoch, batch_idx)``; per validation run ``(epoch, after batch, n batches, sanity)``."""

    def __init__(self):
        self.train, self.val = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append((trainer.current_epoch, batch_idx))

    def on_validation_start(self, trainer, pl_module):
        self.val.append([trainer.current_epoch, trainer.state.batch_idx, 0, trainer.sanity_checking])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx):
        self.val[-1][2] += 1


def run(model=None, **flags):
    """Fit SeedModel (8 training batches of 32, 2 validation batches) with ``flags``; return (trainer, counts)."""
    counts = Counts()
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = quiet_trainer(callbacks=[counts], **flags)
    trainer.fit(model or SeedModel())
    return trainer, counts


def test_max_epochs_and_max_steps():
    trainer, counts = run(max_epochs=2, limit_val_batches=0)
    assert trainer.state.epoch == 2 and trainer.global_step == 16 and len(counts.train) == 16  # epochs run
    trainer, counts = run(max_epochs=5, max_steps=11, limit_val_batches=0)
    assert trainer.global_step == 11 and counts.train[-1] == (1, 2) and trainer.state.epoch == 2
    assert quiet_trainer().max_epochs == 1000 and quiet_trainer(max_steps=5).max_epochs == -1


def test_limit_train_batches_int_and_fraction():
    assert len(run(max_epochs=1, limit_train_batches=3, limit_val_batches=0)[1].train) == 3
    assert len(run(max_epochs=1, limit_train_batches=0.25, limit_val_batches=0)[1].train) == 2
    with pytest.raises(MisconfigurationException, match="limit_train_batches"):
        run(max_epochs=1, limit_train_batches=1.5)


def test_limit_val_batches_int_and_fraction():
    assert run(max_epochs=1, limit_val_batches=1)[1].val == [[0, 7, 1, False]]
    assert run(max_epochs=1, limit_val_batches=0.5)[1].val == [[0, 7, 1, False]]
    assert run(max_epochs=1, limit_val_batches=1.0)[1].val == [[0, 7, 2, False]]
    assert run(max_epochs=1, limit_val_batches=0)[1].val == []


def test_limit_test_batches():
    trainer = quiet_trainer(limit_test_batches=1)
    seen = []

    class Model(SeedModel):
        def test_step(self, batch, batch_idx):
            seen.append(batch_idx)

    trainer.test(Model(), dataloaders=SeedModel().val_dataloader())
    assert seen == [0]
    seen.clear()
    quiet_trainer(limit_test_batches=0.5).test(Model(), dataloaders=SeedModel().train_dataloader())
    assert seen == [0, 1, 2, 3]


def test_val_check_interval_fraction_and_int():
    # a fraction of the epoch: after batches 4 and 8 (indices 3 and 7)
    assert [v[1] for v in run(max_epochs=1, val_check_interval=0.5)[1].val] == [3, 7]
    # an int: every 3 batches, not at the epoch end (as in Lightning)
    assert [v[:2] for v in run(max_epochs=2, val_check_interval=3)[1].val] == [[0, 2], [0, 5], [1, 2], [1, 5]]
    # an int with check_val_every_n_epoch=None counts batches across epochs
    assert [v[:2] for v in run(max_epochs=2, val_check_interval=5, check_val_every_n_epoch=None)[1].val] == \
        [[0, 4], [1, 1], [1, 6]]
    with pytest.raises(MisconfigurationException, match="val_check_interval"):
        run(max_epochs=1, val_check_interval=9)


def test_check_val_every_n_epoch():
    assert [v[0] for v in run(max_epochs=4, limit_train_batches=1, check_val_every_n_epoch=2)[1].val] == [1, 3]


def test_num_sanity_val_steps():
    assert run(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=1)[1].val[0] == [0, 0, 1, True]
    assert run(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=-1)[1].val[0] == [0, 0, 2, True]
    assert all(not v[3] for v in run(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0)[1].val)
    assert run(max_epochs=1, limit_train_batches=1)[1].val[0][3] is False  # run() passes 0 by default
    assert quiet_trainer().num_sanity_val_steps == 2  # Lightning's default


def test_fast_dev_run():
    trainer, counts = run(fast_dev_run=True, max_epochs=10, num_sanity_val_steps=2)
    assert counts.train == [(0, 0)] and counts.val == [[0, 0, 1, False]] and trainer.global_step == 1
    trainer, counts = run(fast_dev_run=3, max_epochs=10)
    assert counts.train == [(0, 0), (0, 1), (0, 2)] and counts.val == [[0, 2, 2, False]]


def test_overfit_batches_trains_on_the_same_unshuffled_batches():
    class Model(SeedModel):
        seen = []

        def training_step(self, batch, batch_idx):
            Model.seen.append((self.current_epoch, batch[0][0, 0].item()))
            return super().training_step(batch, batch_idx)

    trainer, counts = run(Model(), overfit_batches=2, max_epochs=3)
    assert counts.train == [(e, b) for e in range(3) for b in range(2)]
    first = [x for e, x in Model.seen if e == 0]
    assert all([x for e, x in Model.seen if e == epoch] == first for epoch in (1, 2))
    assert [v[2] for v in counts.val] == [2, 2, 2]


def test_default_root_dir(tmp_path):
    assert quiet_trainer().default_root_dir == os.getcwd()
    trainer = quiet_trainer(default_root_dir=tmp_path / "runs")
    assert trainer.default_root_dir == str(tmp_path / "runs") and trainer.log_dir == str(tmp_path / "runs")


def test_callbacks_and_plugins_flags():
    class Plugin:
        def __init__(self):
            self.fits = 0

        from engine import hookimpl

        @hookimpl
        def on_fit_start(self, trainer, pl_module):
            self.fits += 1

    plugin, recorder = Plugin(), Recorder()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[recorder],
                            plugins=[plugin])
    trainer.fit(SeedModel())
    assert plugin.fits == 1 and "on_fit_start" in recorder.names() and recorder in trainer.callbacks


def test_deterministic_runs_give_identical_weights():
    def train():
        seed_everything(1234)
        model = SeedModel()  # shuffled training data: the seed fixes the order too
        quiet_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=1, deterministic=True).fit(model)
        return [p.detach().clone() for p in model.parameters()]

    assert not torch.are_deterministic_algorithms_enabled()
    first, second = train(), train()
    # A process-wide switch: on during the run, given back as it was afterwards.
    assert not torch.are_deterministic_algorithms_enabled()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    seed_everything(4321)
    third = SeedModel()
    assert not torch.equal(third.layer.weight, first[0])


# ---- state ----------------------------------------------------------------------------------


class StopAt(Callback):
    def __init__(self, epoch, batch):
        self.at, self.seen = (epoch, batch), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((trainer.current_epoch, batch_idx, trainer.global_step))
        if (trainer.current_epoch, batch_idx) == self.at:
            trainer.should_stop = True


def test_should_stop_is_honoured_after_the_current_batch():
    stop = StopAt(0, 2)
    trainer = quiet_trainer(max_epochs=5, limit_val_batches=0, callbacks=[stop])
    trainer.fit(SeedModel())
    assert stop.seen == [(0, 0, 1), (0, 1, 2), (0, 2, 3)]
    assert trainer.should_stop and trainer.global_step == 3 and trainer.state.epoch == 1


def test_should_stop_respects_min_epochs():
    stop = StopAt(0, 2)
    trainer = quiet_trainer(max_epochs=5, min_epochs=2, limit_train_batches=4, limit_val_batches=0, callbacks=[stop])
    trainer.fit(SeedModel())
    # Asked to stop in epoch 0: both required epochs run in full, then training stops.
    assert [s[:2] for s in stop.seen] == [(e, b) for e in range(2) for b in range(4)]
    assert trainer.state.epoch == 2 and trainer.global_step == 8


def test_should_stop_validates_before_stopping():
    stop, counts = StopAt(0, 1), Counts()
    quiet_trainer(max_epochs=3, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[stop, counts]).fit(SeedModel())
    assert counts.val == [[0, 1, 1, False]]  # Lightning validates at once when asked to stop


def test_state_counters_and_metric_dicts():
    class Watch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            assert trainer.state.batch_idx == batch_idx
            assert pl_module.global_step == trainer.global_step and pl_module.current_epoch == trainer.current_epoch

    trainer = quiet_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0,
                            callbacks=[Watch()])
    trainer.fit(SeedModel())
    assert trainer.state.epoch == 2 and trainer.global_step == 6
    assert set(trainer.callback_metrics) >= {"train_loss", "val_loss", "eval_loss", "loss"}
    assert set(trainer.logged_metrics) >= {"train_loss", "eval_loss"}
    assert isinstance(trainer.progress_bar_metrics, dict)
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in trainer.callback_metrics.values())


def test_callback_metrics_loss_is_the_latest_epoch_loss_in_a_seed_era_run():
    class Bare(SeedModel):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)["loss"]  # a bare tensor: no seed dict

    plain = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    plain.fit(Bare())
    assert "loss" not in plain.callback_metrics  # Lightning 2.x: only what was logged

    class Last(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.loss = outputs["loss"]

        def on_train_epoch_end(self, trainer, pl_module):
            self.seen = self.loss

        def on_epoch_end(self, trainer, pl_module):
            assert torch.equal(trainer.callback_metrics["loss"], self.seen)

    last = Last()
    trainer = quiet_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[last])
    trainer.fit(SeedModel())  # {'loss': ..., 'log': ...}: a seed-era run, where 0.9 had the step's 'loss'
    assert torch.equal(trainer.callback_metrics["loss"], last.loss)


def test_reload_dataloaders_every_n_epochs():
    class Model(SeedModel):
        calls = []

        def train_dataloader(self):
            Model.calls.append(("train", self.current_epoch))
            return super().train_dataloader()

        def val_dataloader(self):
            Model.calls.append(("val", self.current_epoch))
            return super().val_dataloader()

    quiet_trainer(max_epochs=4, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                  reload_dataloaders_every_n_epochs=2).fit(Model())
    assert Model.calls == [("train", 0), ("val", 0), ("train", 2), ("val", 2)]
    Model.calls.clear()
    quiet_trainer(max_epochs=3, limit_train_batches=1, limit_val_batches=0, reload_dataloaders_every_epoch=True).fit(Model())
    assert Model.calls == [("train", 0), ("train", 1), ("train", 2)]


def test_deterministic_is_on_during_the_run_and_warn_only_with_warn():
    seen = []

    class Probe(Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append((torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled()))

    for flag in (True, "warn"):
        quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, deterministic=flag,
                      callbacks=[Probe()]).fit(SeedModel())
    assert seen == [(True, False), (True, True)]
    assert not torch.are_deterministic_algorithms_enabled()


def test_limit_train_batches_zero_skips_training():
    model = SeedModel()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=0)
    with pytest.warns(UserWarning, match="limit_train_batches=0"):
        trainer.fit(model)
    assert trainer.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---- flag values no loop can run with are errors naming the flag ------------------------------------


@pytest.mark.parametrize("flags, message", [
    (dict(max_epochs=-5), r"Trainer\(max_epochs=-5\): max_epochs must be an int >= -1 or None; -1 means no limit"),
    (dict(max_epochs=2.5), r"Trainer\(max_epochs=2\.5\): max_epochs must be an int"),
    (dict(max_epochs=True), r"Trainer\(max_epochs=True\)"),
    (dict(min_epochs=-1), r"Trainer\(min_epochs=-1\): min_epochs must be an int >= 0"),
    (dict(min_epochs=1.5), r"min_epochs=1\.5"),
    (dict(max_steps=-2), r"Trainer\(max_steps=-2\): max_steps must be an int >= -1 or None; -1 means no limit"),
    (dict(max_steps=10.0), r"max_steps=10\.0"),
    (dict(min_steps=-3), r"Trainer\(min_steps=-3\): min_steps must be an int >= 0"),
    (dict(check_val_every_n_epoch=0), r"check_val_every_n_epoch must be an int >= 1 or None"),
    (dict(check_val_every_n_epoch=1.5), r"check_val_every_n_epoch=1\.5"),
    (dict(num_sanity_val_steps=-2), r"num_sanity_val_steps must be an int >= -1"),
    (dict(num_sanity_val_steps=0.5), r"num_sanity_val_steps=0\.5"),
    (dict(log_every_n_steps=-1), r"log_every_n_steps must be an int >= 0"),
    (dict(log_every_n_steps=2.5), r"log_every_n_steps=2\.5"),
    (dict(reload_dataloaders_every_n_epochs=-1), r"reload_dataloaders_every_n_epochs must be an int >= 0"),
    (dict(limit_train_batches=1.5), r"`limit_train_batches=1\.5` is a fraction above 1\.0"),
    (dict(limit_val_batches=-1), r"`limit_val_batches` must be an int >= 0"),
    (dict(val_check_interval=0), r"`val_check_interval` must be a float in \(0, 1\] or an int > 0"),
    (dict(deterministic="yes"), r"Trainer\(deterministic='yes'\)"),
], ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) if isinstance(v, dict) else None)
def test_bad_loop_flag_values_are_errors_naming_the_flag(flags, message):
    from engine.errors import FlagError

    with pytest.raises(FlagError, match=message) as info:
        quiet_trainer(**flags)
    assert info.value.flag == next(iter(flags))


def test_minus_one_and_none_are_the_no_limit_values():
    trainer, counts = run(max_epochs=-1, max_steps=10, limit_val_batches=0)
    assert trainer.global_step == 10 and counts.train[-1] == (1, 1)  # into the second epoch
    trainer, _ = run(max_epochs=1, max_steps=None, min_epochs=None, min_steps=None, check_val_every_n_epoch=None,
                     num_sanity_val_steps=None, limit_val_batches=0)
    assert trainer.global_step == 8 and trainer.num_sanity_val_steps == 2
