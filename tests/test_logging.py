"""CSVLogger, several loggers, no logger, third-party loggers, rank zero and the cost of logging."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine import Trainer, hookimpl
from engine.errors import MisconfigurationException
from plugins import CSVLogger, TensorBoardLogger
from plugins.logger_base import DummyLogger, Logger
from plugins.rank_zero import is_rank_zero, rank_zero_only
from tests.core_support import SecondRank
from tests.models import ModernModel


def fit(model, **flags):
    flags.setdefault("max_epochs", 2)
    flags.setdefault("enable_progress_bar", False)
    flags.setdefault("weights_summary", None)
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = Trainer(**flags)
    trainer.fit(model)
    return trainer


def written_files(root: str = "."):
    """Every file under ``root``, relative paths."""
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def read_csv(path: str):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_csv_logger_rows_per_logging_step_union_of_columns_and_hparams():
    model = ModernModel(lr=0.03, n_train=128, batch_size=32)  # 4 batches per epoch
    trainer = fit(model, logger=CSVLogger("."), log_every_n_steps=2)
    log_dir = os.path.join(".", "lightning_logs", "version_0")
    assert trainer.logger.log_dir == log_dir
    columns, rows = read_csv(os.path.join(log_dir, "metrics.csv"))
    assert columns[:2] == ["step", "epoch"]
    assert set(columns) == {"step", "epoch", "train_loss", "val_loss", "val_acc"}
    # one row per logging step: train values at 1, 3 | 5, 7; validation + epoch join the row of steps 3 and 7
    assert [int(r["step"]) for r in rows] == [1, 3, 5, 7]
    assert [r["epoch"] for r in rows] == ["0", "0", "1", "1"]  # every row carries its epoch (Lightning's setdefault)
    assert rows[0]["val_acc"] == "" and rows[1]["val_acc"] != ""
    assert float(rows[-1]["val_acc"]) == pytest.approx(trainer.callback_metrics["val_acc"].item())
    assert all(r["train_loss"] for r in rows)
    with open(os.path.join(log_dir, "hparams.yaml")) as fh:
        assert yaml.safe_load(fh) == {"lr": 0.03, "n_train": 128, "batch_size": 32}


def test_csv_logger_flushes_during_training_and_widens_the_header():
    logger = CSVLogger("out", name="csv", version="a", flush_logs_every_n_steps=1)
    logger.log_metrics({"a": 1.0}, 0)
    path = os.path.join("out", "csv", "a", "metrics.csv")
    assert read_csv(path) == (["step", "a"], [{"step": "0", "a": "1.0"}])
    logger.log_metrics({"b": 2.0}, 1)  # a new column: the file is rewritten with the wider header
    logger.log_metrics({"a": 3.0}, 2)
    assert read_csv(path) == (["step", "a", "b"], [{"step": "0", "a": "1.0", "b": ""},
                                                   {"step": "1", "a": "", "b": "2.0"},
                                                   {"step": "2", "a": "3.0", "b": ""}])


def test_csv_logger_needs_only_the_standard_library(tmp_path):
    code = (
        "import sys\n"
        "from plugins.csv_logger import CSVLogger\n"
        f"log = CSVLogger({str(tmp_path)!r})\n"
        "log.log_hyperparams({'lr': 0.1}); log.log_metrics({'x': 1.0}, 0); log.finalize('success')\n"
        "print(sorted(m for m in ('yaml', 'pandas', 'tensorboardX', 'tensorboard', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # numpy comes with torch (the engine); nothing else is loaded for CSV logging
    assert out.stdout.strip() in ("[]", "['numpy']")


def test_logger_false_writes_nothing():
    trainer = fit(ModernModel(n_train=64), logger=False, enable_checkpointing=False)
    assert trainer.logger is None and trainer.loggers == []
    assert trainer.lightning_module.logger is None
    assert written_files() == []


def test_two_loggers_both_write():
    tb, csv_logger = TensorBoardLogger("."), CSVLogger(".", name="csv_logs")
    trainer = fit(ModernModel(n_train=64), logger=[tb, csv_logger], log_every_n_steps=1)
    assert trainer.loggers == [tb, csv_logger]
    assert list(trainer.logger) == [tb, csv_logger] and trainer.logger.log_dir == tb.log_dir == trainer.log_dir
    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    _, rows = read_csv(os.path.join(csv_logger.log_dir, "metrics.csv"))
    tb_steps = [e.step for e in acc.Scalars("train_loss")]
    assert tb_steps == [int(r["step"]) for r in rows if r["train_loss"]] == [0, 1, 2, 3]
    assert [e.value for e in acc.Scalars("train_loss")] == pytest.approx([float(r["train_loss"]) for r in rows])


class RecordingLogger:
    """A third-party logger: no base class, no decorator — Lightning's logger methods only."""

    def __init__(self):
        self.metrics, self.params, self.status = [], None, None

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params):
        self.params = dict(params)

    def finalize(self, status):
        self.status = status


class HookLogger:
    """A plugin implementing the logging hooks with @hookimpl, attached with Trainer(plugins=...)."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def log_metrics(self, trainer, metrics, step):
        assert all(isinstance(v, float) for v in metrics.values())
        self.calls.append(step)

    @hookimpl
    def finalize_logging(self, trainer, status):
        self.calls.append(status)


class SubclassLogger(Logger):
    """A Logger subclass: its overrides are hooks without @hookimpl."""

    def __init__(self):
        self.steps = []

    def log_metrics(self, metrics, step):
        self.steps.append(step)


def test_third_party_loggers_receive_the_logging_hooks():
    duck, sub, hooked = RecordingLogger(), SubclassLogger(), HookLogger()
    trainer = fit(ModernModel(n_train=64), max_epochs=1, logger=[duck, sub], plugins=[hooked], log_every_n_steps=1)
    assert trainer.logger[0] is duck and trainer.loggers == [duck, sub]
    assert duck.params == {"lr": 0.05, "n_train": 64, "batch_size": 32}
    assert [s for s, _ in duck.metrics] == [0, 1, 1]  # two steps, then the epoch's values
    assert set(duck.metrics[-1][1]) == {"val_loss", "val_acc", "epoch"}
    assert duck.status == "success"
    assert sub.steps == [0, 1, 1]
    assert hooked.calls == [0, 1, 1, "success"]


def test_finalize_reports_failure_and_files_are_flushed():
    class Boom(ModernModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    duck = RecordingLogger()
    csv_logger = CSVLogger(".")
    with pytest.raises(RuntimeError, match="boom"):
        fit(Boom(n_train=128), logger=[duck, csv_logger], log_every_n_steps=1)
    assert duck.status == "failed"
    _, rows = read_csv(os.path.join(csv_logger.log_dir, "metrics.csv"))
    assert [r["step"] for r in rows] == ["0", "1"]  # what was logged before the error is kept


def test_not_a_logger_is_a_clear_error():
    with pytest.raises(MisconfigurationException, match="no logger.*TensorBoardLogger"):
        Trainer(logger="tensorboard")


def test_fast_dev_run_disables_loggers_but_experiment_calls_still_work():
    class UsesExperiment(ModernModel):
        def on_train_epoch_end(self):
            self.logger.experiment.add_scalar("x", 1.0, 0)

    trainer = Trainer(fast_dev_run=True, enable_progress_bar=False, weights_summary=None)
    trainer.fit(UsesExperiment(n_train=64))
    assert isinstance(trainer.logger, DummyLogger)
    assert not os.path.exists("lightning_logs")


def test_only_rank_zero_writes_logs_draws_bars_and_prints(capsys):
    model = ModernModel(n_train=64)
    csv_logger = CSVLogger(".", name="csv")
    trainer = fit(model, plugins=[SecondRank()], logger=[TensorBoardLogger("."), csv_logger],
                  enable_progress_bar=True, weights_summary="top", log_every_n_steps=1, enable_checkpointing=False)
    assert not trainer.is_global_zero
    model.logger.experiment.add_scalar("ignored", 1.0, 0)  # a do-nothing writer on other ranks
    assert written_files() == []
    out = capsys.readouterr().out
    assert "Epoch" not in out and "Trainable params" not in out


def test_rank_zero_helpers(monkeypatch):
    class T:
        is_global_zero = False

    calls = []

    @rank_zero_only
    def write(trainer, value):
        calls.append(value)
        return value

    assert write(T(), 1) is None and calls == []
    T.is_global_zero = True
    assert write(trainer=T(), value=2) == 2 and calls == [2]
    monkeypatch.setenv("RANK", "3")
    assert not is_rank_zero()
    assert is_rank_zero(T())  # the trainer's rank wins over the environment


def test_logging_converts_values_only_at_the_logging_interval(monkeypatch):
    """No per-step ``.item()``/``float()``: the number of conversions does not grow with the steps."""
    counts = {"n": 0}
    item, to_float = torch.Tensor.item, torch.Tensor.__float__

    def counting_item(self):
        counts["n"] += 1
        return item(self)

    def counting_float(self):
        counts["n"] += 1
        return to_float(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    monkeypatch.setattr(torch.Tensor, "__float__", counting_float)

    def conversions(n_train):
        counts["n"] = 0
        fit(ModernModel(n_train=n_train, batch_size=8), max_epochs=1, logger=CSVLogger("."),
            log_every_n_steps=1000, enable_progress_bar=True, enable_checkpointing=False)
        return counts["n"]

    assert conversions(64) == conversions(640)  # 8 vs 80 training steps


def test_disabling_the_logger_plugin_removes_it_from_trainer_loggers(tmp_path):
    from engine import Trainer

    trainer = Trainer(default_root_dir=tmp_path, disable_plugins=["logger"], enable_progress_bar=False)
    assert trainer.loggers == [] and trainer.logger is None
    assert "logger" not in trainer.registry.names()


@pytest.mark.parametrize("stage", ["test", "validate"])
def test_a_test_or_validate_run_alone_logs_the_hyperparameters(tmp_path, stage):
    csv_logger = CSVLogger(str(tmp_path))
    trainer = Trainer(logger=csv_logger, enable_progress_bar=False, enable_model_summary=False)
    getattr(trainer, stage)(ModernModel(lr=0.25))
    with open(os.path.join(csv_logger.log_dir, "hparams.yaml")) as fh:
        assert yaml.safe_load(fh)["lr"] == 0.25


def test_hyperparameters_are_sent_once_per_fit_not_at_every_validation(tmp_path):
    sent = []

    class Recorder(Logger):
        @property
        def name(self):
            return "recorder"

        @property
        def version(self):
            return 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params):
            sent.append(dict(params))

    Trainer(max_epochs=3, logger=Recorder(), enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False).fit(ModernModel(lr=0.25))
    assert [p["lr"] for p in sent] == [0.25]


def test_epoch_means_are_weighted_by_the_batch_size_inferred_from_the_batch():
    """Batches of 2, 2 and 1 samples: the mean over the epoch is per sample, as in Lightning."""
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(5.0).unsqueeze(1), torch.zeros(5, dtype=torch.long))

    class Weighted(ModernModel):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 2)

        def training_step(self, batch, batch_idx):
            x, _ = batch
            self.log("train_batch_index", float(batch_idx), on_step=False, on_epoch=True)
            return self.layer(x).sum()

        def validation_step(self, batch, batch_idx):
            self.log("inferred", float(batch_idx))
            self.log("explicit", float(batch_idx), batch_size=len(batch[0]))

        def on_validation_epoch_end(self):
            self.log("at_epoch_end", 3.0)  # no batch: weight 1

        def train_dataloader(self):
            return DataLoader(data, batch_size=2)

        def val_dataloader(self):
            return DataLoader(data, batch_size=2)

    trainer = Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(Weighted())
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
    # (0*2 + 1*2 + 2*1) / 5 = 0.8; unweighted it would be 1.0
    assert metrics["inferred"] == metrics["explicit"] == 0.8
    assert metrics["train_batch_index"] == 0.8 and metrics["at_epoch_end"] == 3.0


@pytest.mark.parametrize("batch, size", [
    (torch.zeros(7, 3), 7.0),
    ((torch.zeros(4, 2), torch.zeros(4)), 4.0),
    ({"text": ["a", "b"], "ids": torch.zeros(6, 2)}, 6.0),
    ([[], (torch.zeros(3),)], 3.0),
    (torch.tensor(1.0), 1.0),
    (["no", "tensors"], 1.0),
    (None, 1.0),
])
def test_the_inferred_batch_size_is_the_first_tensors_first_dimension(batch, size):
    from engine.results import _batch_size

    assert _batch_size(batch) == size


def test_test_and_validate_print_their_results_unless_verbose_is_false(capsys):
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    results = trainer.test(ModernModel())
    printed = capsys.readouterr().out
    assert "Test metric" in printed and "DataLoader 0" in printed
    assert f"{results[0]['test_acc']:.6g}" in printed and "test_loss" in printed
    trainer.validate(ModernModel(), verbose=False)
    assert "metric" not in capsys.readouterr().out


def test_the_results_table_has_a_column_per_dataloader():
    from engine.results import format_eval_results

    table = format_eval_results("validate", [{"val_loss/dataloader_idx_0": 0.5, "shared": 1.0},
                                             {"val_loss/dataloader_idx_1": 0.25, "shared": 2.0}]).splitlines()
    assert "Validate metric" in table[1] and "DataLoader 0" in table[1] and "DataLoader 1" in table[1]
    shared = next(line for line in table if line.strip().startswith("shared")).split()
    assert shared == ["shared", "1", "2"]
    assert format_eval_results("test", [{}]) == ""


def test_logging_step_sets_the_x_axis_instead_of_a_scalar_named_step(tmp_path):
    class StepAxis(ModernModel):
        def training_step(self, batch, batch_idx):
            self.log("step", 100 + batch_idx)
            self.log("m", float(batch_idx))
            return super().training_step(batch, batch_idx)

    csv_logger = CSVLogger(str(tmp_path))
    Trainer(max_epochs=1, limit_train_batches=3, logger=csv_logger, log_every_n_steps=1, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0).fit(StepAxis())
    with open(os.path.join(csv_logger.log_dir, "metrics.csv")) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("m")]
    assert [(r["step"], r["m"]) for r in rows] == [("100", "0.0"), ("101", "1.0"), ("102", "2.0")]


# ---- self.log mistakes are errors, not silence ---------------------------------------------------


def _logging_model(step=None, epoch_end=None, val_epoch_start=None, val_epoch_end=None):
    """A ModernModel whose hooks call the given functions with (module, batch_idx) / (module,)."""

    class Logging(ModernModel):
        def training_step(self, batch, batch_idx):
            if step is not None:
                step(self, batch_idx)
            return super().training_step(batch, batch_idx)

        def on_train_epoch_end(self):
            if epoch_end is not None:
                epoch_end(self)

        def on_validation_epoch_start(self):
            if val_epoch_start is not None:
                val_epoch_start(self)

        def on_validation_epoch_end(self):
            if val_epoch_end is not None:
                val_epoch_end(self)

    return Logging(n_train=64)


def test_a_self_log_keyword_typo_is_an_error_with_the_closest_keyword():
    from engine.errors import UnknownFlagError

    model = _logging_model(step=lambda m, i: m.log("acc", 1.0, prog_barr=True))
    with pytest.raises(UnknownFlagError, match=r"self\.log\('acc', \.\.\., prog_barr=\.\.\.\) got an unknown keyword "
                                               r"`prog_barr`\. Did you mean `prog_bar`\?"):
        fit(model)
    with pytest.raises(TypeError, match="`on_epochs`. Did you mean `on_epoch`"):
        ModernModel().log("acc", 1.0, on_epochs=True)  # outside a run too
    with pytest.raises(UnknownFlagError, match="`sync_dsit`. Did you mean `sync_dist`"):
        fit(_logging_model(step=lambda m, i: m.log_dict({"a": 1.0}, sync_dsit=True)))


def test_lightning_1x_keywords_of_self_log_are_accepted():
    def step(module, batch_idx):
        module.log("a", 1.0, on_epoch=True, tbptt_reduce_fx=torch.mean, tbptt_pad_token=0, rank_zero_only=True,
                   metric_attribute="a_metric")
        module.log("total", 2.0, on_step=False, on_epoch=True, sync_dist_op="sum", sync_dist=True)

    with pytest.warns(DeprecationWarning, match=r"sync_dist_op='sum'\) is Lightning 1\.x's spelling; use reduce_fx='sum'"):
        trainer = fit(_logging_model(step=step), max_epochs=1, logger=False)
    assert trainer.callback_metrics["a_epoch"].item() == 1.0
    assert trainer.callback_metrics["total"].item() == 4.0  # 2 batches, summed (sync_dist_op is the reduction)
    with pytest.warns(UserWarning, match="sync_dist_group=...\\) is ignored"):
        fit(_logging_model(step=lambda m, i: m.log("g", 1.0, sync_dist_group=object())), max_epochs=1, logger=False)


def test_one_name_logged_with_different_options_in_an_epoch_is_an_error():
    def flip(module, batch_idx):
        module.log("acc", 1.0, prog_bar=batch_idx == 0)

    with pytest.raises(MisconfigurationException, match=r"You called `self\.log\('acc', \.\.\.\)` twice in "
                                                        r"`training_step \(or a training batch hook\)` with different "
                                                        r"arguments \(prog_bar=True then prog_bar=False\)"):
        fit(_logging_model(step=flip))
    # training_step logs per step, on_train_epoch_end per epoch (Lightning keeps one entry per hook): each is
    # written, the epoch end's value is the one monitors read afterwards
    both = _logging_model(step=lambda m, i: m.log("loss2", 1.0), epoch_end=lambda m: m.log("loss2", 2.0))
    trainer = fit(both)
    assert trainer.callback_metrics["loss2"].item() == 2.0
    # the same options each time, over several epochs and reduce_fx spellings: fine
    same = _logging_model(step=lambda m, i: m.log("acc", float(i), reduce_fx="max" if i else max))
    assert fit(same, max_epochs=2).callback_metrics["acc"].item() == 1.0


@pytest.mark.parametrize("hooks, message", [
    (dict(epoch_end=lambda m: m.log("x", 1.0, on_step=True)),
     r"You can't `self\.log\('x', \.\.\., on_step=True\)` inside `training_epoch_end/on_train_epoch_end`"),
    (dict(val_epoch_start=lambda m: m.log("x", 1.0, on_step=True)),
     r"inside `on_validation_start/on_validation_epoch_start`"),
    (dict(val_epoch_end=lambda m: m.log("x", 1.0, on_epoch=False)),
     r"`self\.log\('x', \.\.\., on_epoch=False\)` inside `validation_epoch_end/on_validation_epoch_end`"),
], ids=["on_train_epoch_end", "on_validation_epoch_start", "on_validation_epoch_end"])
def test_per_step_logging_in_an_epoch_level_hook_is_an_error(hooks, message):
    with pytest.raises(MisconfigurationException, match=message):
        fit(_logging_model(**hooks))


def test_per_step_logging_in_steps_and_per_epoch_in_epoch_hooks_is_fine():
    model = _logging_model(step=lambda m, i: m.log("s", 1.0, on_step=True, on_epoch=False),
                           epoch_end=lambda m: m.log("e", 2.0, on_step=False, on_epoch=True),
                           val_epoch_end=lambda m: m.log("v", 3.0))
    metrics = fit(model, max_epochs=1).callback_metrics
    assert (metrics["s"].item(), metrics["e"].item(), metrics["v"].item()) == (1.0, 2.0, 3.0)


def test_each_run_starts_with_empty_metrics_as_in_2x_and_a_seed_trainer_keeps_them():
    from tests.core_support import quiet_trainer
    from tests.models import ModernModel, SeedModel, make_loader

    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(ModernModel(n_train=64))
    assert {"train_loss", "val_loss"} <= set(trainer.callback_metrics)
    trainer.test(ModernModel(n_train=64), dataloaders=make_loader(32, 16), verbose=False)
    assert set(trainer.callback_metrics) == {"test_loss", "test_acc"} == set(trainer.logged_metrics)
    assert "val_acc" not in trainer.progress_bar_metrics

    class SeedTest(SeedModel):
        def test_step(self, batch, batch_idx):
            return {"test_loss": self.validation_step(batch, batch_idx)["val_loss"]}

        def test_epoch_end(self, outputs):
            return {"log": {"test_loss": torch.stack([o["test_loss"] for o in outputs]).mean()}}

    seed = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    seed.fit(SeedTest(n_train=64))
    seed.test(SeedTest(n_train=64), dataloaders=make_loader(32, 16), verbose=False)
    assert {"val_loss", "test_loss", "loss"} <= set(seed.callback_metrics)  # 0.9 kept them
