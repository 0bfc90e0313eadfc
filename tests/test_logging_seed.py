"""0.8/0.9's logger API: a LightningLoggerBase subclass as a logger, LoggerCollection as trainer.logger."""
from __future__ import annotations

import argparse
import pickle

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine import Trainer
from plugins import CSVLogger, LightningLoggerBase, LoggerCollection, TensorBoardLogger, rank_zero_only
from plugins.logger_base import DummyExperiment
from tests.core_support import RecordingLogger, SecondRank, fit_for_logs
from tests.models import ModernModel, SeedModel


class SeedHparamsModel(SeedModel):
    """A 0.9 module: hyperparameters arrive as a Namespace and are assigned to ``self.hparams``."""

    def __init__(self, hparams):
        super().__init__(lr=hparams.lr, n_train=64)
        self.hparams = hparams


class Experiment:
    """What the 0.9 logger below writes to."""

    def __init__(self):
        self.rows, self.params = [], None


class SeedLogger(LightningLoggerBase):
    """Written as 0.9's docs show: every method decorated with rank_zero_only, ``save`` calling super()."""

    def __init__(self):
        super().__init__()
        self._experiment = Experiment()
        self.saves, self.status = 0, None

    @property
    def name(self):
        return "seed_logger"

    @property
    def experiment(self):
        return self._experiment

    @property
    def version(self):
        return "0.1"

    @rank_zero_only
    def log_hyperparams(self, params):
        self.experiment.params = (params.lr, self._convert_params(params))  # an attribute dict, as in 0.9

    @rank_zero_only
    def log_metrics(self, metrics, step):
        self.experiment.rows.append((step, dict(metrics)))

    @rank_zero_only
    def save(self):
        super().save()
        self.saves += 1

    @rank_zero_only
    def finalize(self, status):
        self.status = status


class BareLogger(LightningLoggerBase):
    """No ``__init__`` and no ``save``: 0.9's smallest logger."""

    rows: list

    @property
    def experiment(self):
        return None

    @property
    def name(self):
        return "bare"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params):
        pass

    def log_metrics(self, metrics, step=None):
        self.__dict__.setdefault("rows", []).append((step, dict(metrics)))


def test_the_seed_names_are_where_0_9_users_look():
    import plugins.logger_base as base
    import plugins.rank_zero as rank_zero
    import plugins.seed_loggers as seed

    assert base.LightningLoggerBase is LightningLoggerBase is seed.LightningLoggerBase
    assert base.LoggerCollection is LoggerCollection is seed.LoggerCollection
    assert base.rank_zero_only is rank_zero_only is rank_zero.rank_zero_only
    assert base.rank_zero_experiment is seed.rank_zero_experiment


def test_a_0_9_logger_subclass_gets_metrics_hyperparameters_saves_and_the_final_status():
    logger = SeedLogger()
    model = SeedHparamsModel(argparse.Namespace(lr=0.05, hidden=4))
    trainer = fit_for_logs(model, logger=logger, log_every_n_steps=1)
    assert trainer.logger is logger and model.logger is logger
    assert logger.experiment.params == (0.05, {"lr": 0.05, "hidden": 4})
    steps = [step for step, _ in logger.experiment.rows]
    # 2 batches per epoch, logged at steps 0, 1 | 2, 3; each epoch's validation values at its last step
    assert steps == [0, 1, 1, 2, 3, 3]
    assert all("train_loss" in row for _, row in logger.experiment.rows[0::3])
    assert set(logger.experiment.rows[2][1]) == {"eval_loss", "epoch"}
    # 0.9's trainer: save() after the hyperparameters and after every log_metrics
    assert logger.saves == 1 + len(steps)
    assert logger.status == "success"


def test_a_logger_with_no_init_and_no_save_works_too():
    logger = BareLogger()
    fit_for_logs(ModernModel(n_train=64), max_epochs=1, logger=logger, log_every_n_steps=1)
    assert [step for step, _ in logger.rows] == [0, 1, 1]


def test_the_0_9_contract_is_abstract():
    class NoName(LightningLoggerBase):
        experiment = None

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params):
            pass

        @property
        def version(self):
            return 0

    with pytest.raises(TypeError, match="name"):
        NoName()


def test_agg_and_log_metrics_merges_the_values_of_one_step():
    logger = BareLogger()
    logger.update_agg_funcs({"acc": max})
    logger.agg_and_log_metrics({"loss": 1.0, "acc": 0.5}, step=3)
    logger.agg_and_log_metrics({"loss": 3.0, "acc": 0.75}, step=3)
    assert getattr(logger, "rows", []) == []  # step 3 may still get values
    logger.agg_and_log_metrics({"loss": 5.0}, step=4)
    assert logger.rows == [(3, {"loss": 2.0, "acc": 0.75})]  # mean by default, max for acc
    logger.save()
    assert logger.rows[-1] == (4, {"loss": 5.0})


def test_on_other_ranks_nothing_is_logged_and_the_experiment_does_nothing():
    from plugins.logger_base import rank_zero_experiment

    class Guarded(SeedLogger):
        @property
        @rank_zero_experiment
        def experiment(self):
            return self._experiment

    logger = Guarded()
    fit_for_logs(SeedHparamsModel(argparse.Namespace(lr=0.05)), plugins=[SecondRank()], logger=logger,
                 log_every_n_steps=1)
    assert isinstance(logger.experiment, DummyExperiment)
    assert logger._experiment.rows == [] and logger._experiment.params is None


def test_several_loggers_are_one_collection_as_trainer_logger_and_a_list_as_trainer_loggers():
    tb, csv_logger = TensorBoardLogger("."), CSVLogger(".", name="csv")

    class UsesExperiment(ModernModel):
        def on_train_epoch_end(self):
            assert self.logger.experiment[1] is csv_logger.experiment  # 0.9: one experiment per logger
            self.logger.experiment.add_text("note", "first logger's", 0)  # 2.x: the first logger's writer

    model = UsesExperiment(n_train=64)
    trainer = fit_for_logs(model, max_epochs=1, logger=[tb, csv_logger], log_every_n_steps=1)
    collection = trainer.logger
    assert isinstance(collection, LoggerCollection) and model.logger is collection
    assert trainer.loggers == [tb, csv_logger] and list(collection) == [tb, csv_logger]
    assert collection[0] is tb and len(collection) == 2
    assert collection.experiment[0] is tb.experiment
    assert collection.name == "lightning_logs_csv" and collection.version == "0"
    assert collection.log_dir == tb.log_dir == trainer.log_dir
    acc = EventAccumulator(tb.log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    assert "note/text_summary" in acc.Tags()["tensors"]


def test_a_logger_collection_passed_to_the_trainer_is_trainer_logger_and_each_logger_is_called():
    first, second = RecordingLogger(), RecordingLogger()
    collection = LoggerCollection([first, second])
    trainer = fit_for_logs(ModernModel(n_train=64), max_epochs=1, logger=collection, log_every_n_steps=1)
    assert trainer.logger is collection and trainer.loggers == [first, second]
    assert [s for s, _ in first.rows] == [s for s, _ in second.rows] == [0, 1, 1]
    collection.log_metrics({"direct": 1.0}, 7)  # 0.9 code calling the collection itself
    assert first.rows[-1] == second.rows[-1] == (7, {"direct": 1.0})


def test_trainer_logger_follows_trainer_loggers_and_one_logger_is_itself():
    a, b, c = RecordingLogger(), RecordingLogger(), RecordingLogger()
    trainer = Trainer(logger=[a], enable_progress_bar=False)
    assert trainer.logger is a  # a list of one is that logger
    trainer.loggers = [b, c]
    assert list(trainer.logger) == [b, c]
    trainer.loggers = [c]
    assert trainer.logger is c


def test_the_collection_travels_with_the_trainer_to_spawned_processes():
    from plugins.distributed import dumps_for_spawn

    trainer = Trainer(logger=[CSVLogger("a"), CSVLogger("b")], enable_progress_bar=False)
    copy = pickle.loads(dumps_for_spawn(trainer))  # what strategy="ddp_spawn" sends each process
    assert isinstance(copy.logger, LoggerCollection)
    assert [logger.save_dir for logger in copy.logger] == ["a", "b"] and list(copy.logger) == copy.loggers
    assert copy.logger.log_dir == copy.loggers[0].log_dir


def test_a_0_9_logger_may_implement_hookloop_finalize_logging_event_too():
    class Events(BareLogger):
        def finalize_logging(self, trainer, status):
            self.ended = (type(trainer).__name__, status)

    logger = Events()
    fit_for_logs(ModernModel(n_train=64), max_epochs=1, logger=logger)
    assert logger.ended == ("Trainer", "success")
