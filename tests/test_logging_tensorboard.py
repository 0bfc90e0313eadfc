"""TensorBoardLogger: what lands in the event files, read back with TensorBoard's own reader."""
from __future__ import annotations

import os

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboardX import SummaryWriter
from torch import nn

from engine import Trainer
from plugins import TensorBoardLogger
from tests.models import ModernModel, SeedModel


def read_events(log_dir: str) -> EventAccumulator:
    """All event files of ``log_dir``, loaded with nothing dropped."""
    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str):
    """``[(step, value), ...]`` of one scalar tag."""
    return [(e.step, pytest.approx(e.value, abs=1e-5)) for e in acc.Scalars(tag)]


class CountingModel(ModernModel):
    """Logs known values: ``idx`` (step and epoch), the loss, and a validation accuracy."""

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("idx", float(batch_idx), on_step=True, on_epoch=True)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._loss(batch)
        self.log("val_acc", acc)


def fit(model, **flags):
    flags.setdefault("max_epochs", 2)
    flags.setdefault("enable_progress_bar", False)
    flags.setdefault("weights_summary", None)
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = Trainer(**flags)
    trainer.fit(model)
    return trainer


def test_default_logger_writes_self_log_values_with_step_and_epoch_names():
    # 8 batches per epoch, logging every 3 steps: step values at x = 2, 5 | 8, 11, 14.
    trainer = fit(CountingModel(n_train=256), log_every_n_steps=3)
    assert isinstance(trainer.logger, TensorBoardLogger)
    log_dir = os.path.join(os.getcwd(), "lightning_logs", "version_0")
    assert trainer.logger.log_dir == log_dir == trainer.log_dir
    acc = read_events(log_dir)
    tags = set(acc.Tags()["scalars"])
    assert {"idx_step", "idx_epoch", "train_loss", "val_acc", "epoch", "hp_metric"} <= tags
    assert "idx" not in tags  # with on_step and on_epoch only the suffixed names go to loggers
    # batch_idx of the logged step: x = global_step - 1, batch_idx = x mod 8
    assert scalars(acc, "idx_step") == [(x, float(x % 8)) for x in (2, 5, 8, 11, 14)]
    # the epoch means of 0..7, at each epoch's last step
    assert scalars(acc, "idx_epoch") == [(7, 3.5), (15, 3.5)]
    assert [e.step for e in acc.Scalars("val_acc")] == [7, 15]
    assert [e.step for e in acc.Scalars("train_loss")] == [2, 5, 8, 11, 14]
    final = trainer.callback_metrics["val_acc"].item()
    assert acc.Scalars("val_acc")[-1].value == pytest.approx(final)


def test_log_every_n_steps_defaults_to_50():
    trainer = fit(CountingModel(n_train=32 * 60), max_epochs=1)
    acc = read_events(trainer.logger.log_dir)
    assert [e.step for e in acc.Scalars("idx_step")] == [49]


class SeedLogModel(SeedModel):
    """Seed-era dict returns: a step 'log' dict, an epoch-end one with an explicit 'step' x-axis."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        return {"loss": loss, "log": {"train_loss": loss, "batch": batch_idx}}

    def training_epoch_end(self, outputs):
        self.logger.experiment.add_histogram("weights", self.layer.weight, self.current_epoch)
        return {"log": {"epoch_marker": 10.0 + self.current_epoch, "step": self.current_epoch}}

    def validation_epoch_end(self, outputs):
        avg = torch.stack([o["val_loss"] for o in outputs]).mean()
        return {"val_loss": avg, "log": {"eval_loss": avg}}


def test_seed_log_dicts_explicit_step_and_experiment_histogram():
    trainer = fit(SeedLogModel(n_train=128), log_every_n_steps=2)  # 4 batches per epoch
    acc = read_events(trainer.logger.log_dir)
    assert scalars(acc, "batch") == [(1, 1.0), (3, 3.0), (5, 1.0), (7, 3.0)]
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 3, 5, 7]
    # the explicit 'step' key is the x-axis, and is not itself a metric
    assert scalars(acc, "epoch_marker") == [(0, 10.0), (1, 11.0)]
    assert "step" not in acc.Tags()["scalars"]
    # validation_epoch_end's 'log' at the epoch's last step, equal to the returned val_loss
    assert [e.step for e in acc.Scalars("eval_loss")] == [3, 7]
    assert acc.Scalars("eval_loss")[-1].value == pytest.approx(trainer.callback_metrics["val_loss"].item())
    # self.logger.experiment is the SummaryWriter
    assert isinstance(trainer.logger.experiment, SummaryWriter)
    assert "weights" in acc.Tags()["histograms"]
    assert [e.step for e in acc.Histograms("weights")] == [0, 1]


def test_explicit_step_in_a_training_step_log_dict():
    class StepModel(SeedModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            out["log"] = {"custom": float(batch_idx), "step": 100 + batch_idx}
            return out

    trainer = fit(StepModel(n_train=96), max_epochs=1, log_every_n_steps=50)
    acc = read_events(trainer.logger.log_dir)
    assert scalars(acc, "custom") == [(100, 0.0), (101, 1.0), (102, 2.0)]


def test_hyperparameters_go_to_hparams_view_and_yaml():
    trainer = fit(ModernModel(lr=0.02, n_train=64, batch_size=16), max_epochs=1)
    log_dir = trainer.logger.log_dir
    with open(os.path.join(log_dir, "hparams.yaml")) as fh:
        assert yaml.safe_load(fh) == {"lr": 0.02, "n_train": 64, "batch_size": 16}
    acc = read_events(log_dir)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = {k: v.number_value for k, v in start.session_start_info.hparams.items()}
    assert values == {"lr": pytest.approx(0.02), "n_train": 64.0, "batch_size": 16.0}
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hp_metric"]
    assert scalars(acc, "hp_metric") == [(0, -1.0)]


def test_hparams_assigned_directly_nested_and_non_scalar():
    class Assigned(ModernModel):
        def __init__(self):
            super().__init__(n_train=32)
            self.hparams = {"lr": 0.05, "n_train": 32, "batch_size": 32,
                            "optim": {"name": "sgd", "momentum": 0.0}, "layers": [8, 2], "act": nn.ReLU}

    trainer = fit(Assigned(), max_epochs=1, logger=TensorBoardLogger(".", default_hp_metric=False),
                  enable_checkpointing=False)
    with open(os.path.join(trainer.logger.log_dir, "hparams.yaml")) as fh:
        saved = yaml.safe_load(fh)
    assert saved["optim"] == {"name": "sgd", "momentum": 0.0} and saved["layers"] == [8, 2]
    acc = read_events(trainer.logger.log_dir)
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim/name"].string_value == "sgd"
    assert start.hparams["layers"].string_value == "[8, 2]"
    assert "hp_metric" not in acc.Tags()["scalars"]


def test_version_counts_up_and_name_version_arguments():
    for expected in ("version_0", "version_1"):
        trainer = fit(ModernModel(n_train=32), max_epochs=1)
        assert os.path.basename(trainer.logger.log_dir) == expected
        assert trainer.logger.version == int(expected[-1])
    assert sorted(os.listdir("lightning_logs")) == ["version_0", "version_1"]

    named = fit(ModernModel(n_train=32), max_epochs=1, logger=TensorBoardLogger("logs", name="exp", version="run_a"))
    assert named.logger.log_dir == os.path.join("logs", "exp", "run_a")
    numbered = fit(ModernModel(n_train=32), max_epochs=1, logger=TensorBoardLogger("logs", name="exp", version=7))
    assert numbered.logger.log_dir == os.path.join("logs", "exp", "version_7")
    assert read_events(numbered.logger.log_dir).Tags()["scalars"]
    after = TensorBoardLogger("logs", name="exp")
    assert after.version == 8
    root = fit(ModernModel(n_train=32), max_epochs=1, default_root_dir="elsewhere")
    assert root.logger.log_dir == os.path.join("elsewhere", "lightning_logs", "version_0")


def test_module_logger_and_test_metrics_after_fit():
    model = ModernModel(n_train=32)
    trainer = fit(model, max_epochs=1)
    assert model.logger is trainer.logger and model.loggers == trainer.loggers
    trainer.test(model)  # within the same second as fit: event file names must not collide
    acc = read_events(trainer.logger.log_dir)
    assert {"epoch", "val_acc", "hp_metric", "test_loss", "test_acc"} <= set(acc.Tags()["scalars"])
    assert acc.Scalars("test_acc")[0].value == pytest.approx(trainer.callback_metrics["test_acc"].item())


def test_scalars_are_written_in_the_loop_without_a_writer_thread_and_flushed_each_epoch():
    # tensorboardX's SummaryWriter queues events to a thread; scalars go to the file directly, and
    # each epoch's values are readable (flushed) before the next epoch starts.
    import threading

    from engine import Callback

    seen = {}
    before = set(threading.enumerate())  # writers other tests left open are not this run's

    class Probe(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                seen["threads"] = [t.name for t in set(threading.enumerate()) - before
                                   if "EventLogger" in type(t).__name__]
                seen["epoch_0"] = scalars(read_events(trainer.logger.log_dir), "idx_epoch")

    trainer = fit(CountingModel(n_train=256), log_every_n_steps=3, callbacks=[Probe()])
    assert seen["threads"] == []
    assert seen["epoch_0"] == [(7, 3.5)]
    assert scalars(read_events(trainer.logger.log_dir), "idx_epoch") == [(7, 3.5), (15, 3.5)]


def test_histograms_of_fit_survive_a_test_run_that_also_uses_the_experiment():
    class Histograms(ModernModel):
        def on_train_epoch_end(self):
            self.logger.experiment.add_histogram("fit_weights", self.layer.weight, self.current_epoch)

        def on_test_epoch_end(self):
            self.logger.experiment.add_histogram("test_weights", self.layer.weight, 0)

    model = Histograms(n_train=32)
    trainer = fit(model, max_epochs=2)
    trainer.test(model)  # a new SummaryWriter, within the same second: its file must not replace fit's
    tags = read_events(trainer.logger.log_dir).Tags()["histograms"]
    assert {"fit_weights", "test_weights"} <= set(tags)


# ---- open files: a kept trainer holds none ---------------------------------------------------------


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts this process's descriptors in /proc")
def test_many_kept_trainers_do_not_keep_event_files_open():
    kept = [fit(CountingModel(n_train=64), max_epochs=1)]  # the first run imports and opens what stays open
    before = _open_descriptors()
    for _ in range(20):
        trainer = fit(CountingModel(n_train=64), max_epochs=1)
        trainer.test(trainer.lightning_module, verbose=False)
        kept.append(trainer)
    assert _open_descriptors() == before
    assert all(read_events(t.logger.log_dir).Scalars("val_acc") for t in kept)  # each wrote its scalars


def test_a_second_fit_through_the_same_logger_appends_to_its_event_file():
    class Run(CountingModel):
        def __init__(self, run):
            super().__init__(n_train=64)
            self.run = run

        def training_step(self, batch, batch_idx):
            self.log("run", float(self.run), on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

    logger = TensorBoardLogger(".", name="shared")
    fit(Run(1), max_epochs=1, logger=logger)
    files = sorted(os.listdir(logger.log_dir))
    fit(Run(2), max_epochs=2, logger=logger)
    assert sorted(os.listdir(logger.log_dir)) == files  # no new event file: the same one, appended to
    acc = read_events(logger.log_dir)
    # the first fit's epoch at step 1, then the second fit's two epochs (steps 1 and 3)
    assert scalars(acc, "run") == [(1, 1.0), (1, 2.0), (3, 2.0)]
    assert len(acc.Scalars("hp_metric")) == 2  # both fits' hyperparameters were written
