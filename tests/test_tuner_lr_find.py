"""Tuner.lr_find: the learning-rate sweep, its result object and plot, and what it leaves as it was."""
from __future__ import annotations

import copy
import glob
import math
import os
import sys

import pytest
import torch
from torch import nn

from engine import Callback, Trainer, hookimpl
from engine.errors import MisconfigurationException
from plugins import CSVLogger, LearningRateFinder, Tuner
from tests.core_support import Recorder, quiet_trainer
from tests.models import ModernModel, SeedModel
from tests.tuner_support import files_under, same_weights, temporary_checkpoints, weights


def test_an_exponential_sweep_records_the_curve_and_suggests_a_sane_rate(tmp_path):
    # Seeded: with some initial weights (one seed in four) 80 steps of this sweep end above where they began.
    torch.manual_seed(0)
    model = ModernModel(lr=0.05)
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(model, num_training=80)
    lrs, losses = result.results["lr"], result.results["loss"]
    assert len(lrs) == len(losses) == 80
    assert lrs[0] == pytest.approx(1e-8) and lrs[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] > 1  # evenly spaced on a log scale
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0] - 0.02  # it learnt at the end
    suggested = result.suggestion()
    assert 1e-3 < suggested <= 1.0 and model.hparams.lr == suggested  # update_attr is on by default
    at = lrs.index(suggested)
    assert losses[at + 1] < losses[at - 1]  # the loss falls there


def test_a_linear_sweep_spaces_the_rates_evenly(tmp_path):
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(
        ModernModel(), min_lr=0.01, max_lr=0.5, num_training=15, mode="linear", update_attr=False)
    steps = [b - a for a, b in zip(result.results["lr"], result.results["lr"][1:])]
    assert len(steps) == 14 and max(steps) == pytest.approx(min(steps)) == pytest.approx(0.49 / 14)


class LearningRateModel(SeedModel):
    """The rate in ``self.learning_rate`` (and a custom name in ``self.my_lr``)."""

    def __init__(self):
        super().__init__()
        del self.lr
        self.learning_rate = 0.05
        self.my_lr = 0.05

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate)


@pytest.mark.parametrize("make, attr_name, read", [
    (SeedModel, "", lambda m: m.lr),
    (LearningRateModel, "", lambda m: m.learning_rate),
    (ModernModel, "", lambda m: m.hparams.lr),
    (LearningRateModel, "my_lr", lambda m: m.my_lr),
])
def test_update_attr_sets_the_models_learning_rate(tmp_path, make, attr_name, read):
    model = make()
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(model, num_training=30, attr_name=attr_name)
    assert read(model) == result.suggestion() != 0.05


def test_both_holders_of_the_rate_are_set_and_update_attr_false_sets_none(tmp_path):
    class Both(ModernModel):
        def __init__(self):
            super().__init__()
            self.lr = 0.05

    model = Both()
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(model, num_training=30)
    assert model.lr == model.hparams.lr == result.suggestion()
    untouched = ModernModel(lr=0.05)
    Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(untouched, num_training=30, update_attr=False)
    assert untouched.hparams.lr == 0.05


class AdamModel(ModernModel):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class LrAtTrainStart(Callback):
    def on_train_start(self, trainer, pl_module):
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]


def test_tuning_after_a_fit_leaves_the_weights_optimizer_loop_callbacks_and_files_as_they_were(tmp_path):
    torch.manual_seed(0)
    recorder = Recorder()
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), callbacks=[recorder],
                      logger=CSVLogger(str(tmp_path)), enable_progress_bar=False, enable_model_summary=False)
    model = AdamModel(lr=1e-3)
    trainer.fit(model)
    before = dict(weights=weights(model), optimizer=copy.deepcopy(trainer.optimizers[0].state_dict()),
                  step=trainer.global_step, epoch=trainer.current_epoch, events=len(recorder.events),
                  best=trainer.checkpoint_callback.best_model_path, files=files_under(str(tmp_path)),
                  rng=torch.get_rng_state())

    result = Tuner(trainer).lr_find(model, num_training=40)

    assert same_weights(weights(model), before["weights"])
    assert trainer.optimizers[0].state_dict()["param_groups"] == before["optimizer"]["param_groups"]
    for key, state in before["optimizer"]["state"].items():
        assert all(torch.equal(state[k], trainer.optimizers[0].state_dict()["state"][key][k]) for k in state)
    assert (trainer.global_step, trainer.current_epoch) == (before["step"], before["epoch"]) == (8, 1)
    assert len(recorder.events) == before["events"]  # the callback never heard of the sweep
    assert trainer.checkpoint_callback.best_model_path == before["best"]
    assert files_under(str(tmp_path)) == before["files"]  # no log, checkpoint or temporary file left or changed
    assert torch.equal(torch.get_rng_state(), before["rng"])  # the sweep used none of the run's randomness
    assert model.trainer is trainer and model.training
    # A normal fit follows, with the rate found.
    lr_seen = LrAtTrainStart()
    Trainer(max_epochs=1, logger=False, callbacks=[lr_seen], enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=str(tmp_path / "again")).fit(model)
    assert lr_seen.lr == result.suggestion() == model.hparams.lr
    assert not same_weights(weights(model), before["weights"])


class Peeking(ModernModel):
    """Looks for the sweep's temporary checkpoint while the sweep trains."""

    def __init__(self, fail_at=None):
        super().__init__()
        self.fail_at, self.seen = fail_at, []

    def training_step(self, batch, batch_idx):
        found = glob.glob(os.path.join(self.trainer.default_root_dir, ".lr_find_*.ckpt"))
        self.seen.append([sorted(torch.load(path, weights_only=True)["state_dict"]) for path in found])
        if self.global_step == self.fail_at:
            raise ValueError("the model broke mid-sweep")
        return super().training_step(batch, batch_idx)


def test_the_temporary_checkpoint_exists_during_the_sweep_and_is_gone_after(tmp_path):
    model = Peeking()
    Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(model, num_training=5, update_attr=False)
    assert model.seen[0] == [sorted(model.state_dict())]  # one file, holding the model's weights
    assert temporary_checkpoints(str(tmp_path)) == []


def test_a_failing_sweep_loses_nothing(tmp_path):
    model = Peeking(fail_at=3)
    before = weights(model)
    with pytest.raises(ValueError, match="broke mid-sweep"):
        Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(model, num_training=10)
    assert same_weights(weights(model), before) and model.hparams.lr == 0.05
    assert temporary_checkpoints(str(tmp_path)) == [] and model.trainer is None


class Quadratic(ModernModel):
    """Least squares on large inputs: plain SGD diverges once the rate passes about 1e-3."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x * 20).sum(-1), y.float())


def test_a_diverging_loss_stops_the_sweep_early(tmp_path, capsys):
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(Quadratic(), max_lr=10.0, num_training=60)
    assert 10 < len(result.results["lr"]) < 60 and result.results["lr"][-1] < 1.0
    out = capsys.readouterr().out
    assert "the sweep stopped after" in out and "(the loss diverged)" in out
    full = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(
        Quadratic(), max_lr=10.0, num_training=60, early_stop_threshold=None, update_attr=False)
    assert len(full.results["lr"]) == 60


def test_plot_returns_a_figure_with_the_curve_and_the_suggestion(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(ModernModel(), num_training=40)
    figure = result.plot(suggest=True)
    try:
        axes = figure.axes[0]
        curve, marker = axes.lines
        assert list(curve.get_xdata()) == result.results["lr"] and list(curve.get_ydata()) == result.results["loss"]
        assert list(marker.get_xdata()) == [result.suggestion()] and axes.get_xscale() == "log"
        assert axes.get_xlabel() == "Learning rate" and axes.get_ylabel() == "Loss"
        assert len(result.plot().axes[0].lines) == 1  # no suggestion marked by default, as in Lightning
    finally:
        matplotlib.pyplot.close("all")


def test_plot_without_matplotlib_names_the_package(tmp_path, monkeypatch):
    result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(ModernModel(), num_training=5,
                                                                          update_attr=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ModuleNotFoundError, match="matplotlib, which is not installed.*pip install matplotlib"):
        result.plot()


def test_too_short_a_sweep_suggests_nothing(tmp_path):
    model = ModernModel(lr=0.05)
    with pytest.warns(UserWarning, match="No learning rate can be suggested"):
        result = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).lr_find(model, num_training=8)
    assert len(result.results["lr"]) == 8 and result.suggestion(skip_begin=0, skip_end=0) is not None
    assert model.hparams.lr == 0.05  # nothing suggested, nothing set


class SmoothedLoss:
    """A code plugin replacing training_step (label smoothing): the sweep must train through it."""

    def __init__(self):
        self.calls = 0

    @hookimpl(tryfirst=True)
    def training_step(self, trainer, pl_module, batch, batch_idx):
        self.calls += 1
        x, y = batch
        return nn.functional.cross_entropy(pl_module(x), y, label_smoothing=0.1)


def test_the_sweep_steps_as_the_trainer_does_and_only_callbacks_are_left_out(tmp_path):
    plugin, recorder = SmoothedLoss(), Recorder()
    trainer = quiet_trainer(default_root_dir=str(tmp_path), plugins=[plugin], callbacks=[recorder],
                            accumulate_grad_batches=2)
    heard = len(recorder.events)  # on_init_start/_end, of the trainer's own construction
    result = Tuner(trainer).lr_find(ModernModel(), num_training=12, update_attr=False)
    assert len(result.results["lr"]) == 12 and plugin.calls == 24  # 12 steps of 2 accumulated batches each
    assert len(recorder.events) == heard


def test_bad_arguments_name_the_culprit(tmp_path):
    tuner = Tuner(quiet_trainer(default_root_dir=str(tmp_path)))
    model = ModernModel()
    with pytest.raises(MisconfigurationException, match=r"Tuner.lr_find\(mode='exponentail'\).*Did you mean "
                                                        r"`exponential`"):
        tuner.lr_find(model, mode="exponentail")
    with pytest.raises(MisconfigurationException, match=r"Tuner.lr_find: ModernModel has no `rate`, the attribute named"):
        tuner.lr_find(model, attr_name="rate")
    with pytest.raises(MisconfigurationException, match="has neither `lr` nor `learning_rate`"):
        tuner.lr_find(nn_model_without_rate())
    with pytest.raises(MisconfigurationException, match="max_lr must exceed min_lr"):
        tuner.lr_find(model, min_lr=0.1, max_lr=0.01)
    with pytest.raises(MisconfigurationException, match="only method='fit' works"):
        tuner.lr_find(model, method="validate")
    with pytest.raises(MisconfigurationException, match=r"mode='lin'\).*Did you mean `linear`"):
        LearningRateFinder(mode="lin")
    with pytest.raises(MisconfigurationException, match="expects a LightningModule, got Linear"):
        tuner.lr_find(nn.Linear(2, 2))

    class TwoOptimizers(ModernModel):
        def configure_optimizers(self):
            return [torch.optim.SGD([self.layer.weight], lr=0.1), torch.optim.SGD([self.layer.bias], lr=0.1)]

        def training_step(self, batch, batch_idx, optimizer_idx):
            return super().training_step(batch, batch_idx)

    with pytest.raises(MisconfigurationException, match="one optimizer, but TwoOptimizers.configure_optimizers built 2"):
        tuner.lr_find(TwoOptimizers())
    assert temporary_checkpoints(str(tmp_path)) == []


def nn_model_without_rate():
    class NoRate(SeedModel):
        def __init__(self):
            super().__init__()
            del self.lr

    return NoRate()
