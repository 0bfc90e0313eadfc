"""``trainer.state.fn`` (TrainerFn), ``state.stage`` (RunningStage) and ``state.status`` as in Lightning."""
from __future__ import annotations

import pytest

from engine import Callback
from engine.state import RunningStage, TrainerFn, TrainerStatus
from tests.core_support import quiet_trainer
from tests.models import ModernModel


class StageLog(Callback):
    """Records ``(hook, fn, stage, status, training, validating, testing, predicting, sanity_checking)``."""

    def __init__(self):
        self.seen = []

    def _note(self, hook, trainer):
        s = trainer.state
        entry = (hook, s.fn, s.stage, s.status, trainer.training, trainer.validating, trainer.testing,
                 trainer.predicting, trainer.sanity_checking)
        if not self.seen or self.seen[-1][1:] != entry[1:] or self.seen[-1][0] != hook:
            self.seen.append(entry)

    def setup(self, trainer, pl_module, stage):
        self._note("setup", trainer)

    def on_sanity_check_start(self, trainer, pl_module):
        self._note("on_sanity_check_start", trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._note("on_validation_batch_end", trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._note("on_train_batch_end", trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._note("on_train_epoch_end", trainer)

    def on_fit_end(self, trainer, pl_module):
        self._note("on_fit_end", trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._note("on_test_batch_end", trainer)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._note("on_predict_batch_end", trainer)

    def teardown(self, trainer, pl_module, stage):
        self._note("teardown", trainer)


FIT, RUN = TrainerFn.FITTING, TrainerStatus.RUNNING


def test_fn_and_stage_through_a_fit():
    log = StageLog()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
                            callbacks=[log])
    assert (trainer.state.fn, trainer.state.stage, trainer.state.status) == (None, None, TrainerStatus.INITIALIZING)
    trainer.fit(ModernModel(n_train=64))
    #      hook                       fn   stage                          status train  val    test   pred   sanity
    assert [e[:3] for e in log.seen] == [
        ("setup", FIT, RunningStage.TRAINING),
        ("on_sanity_check_start", FIT, RunningStage.SANITY_CHECKING),
        ("on_validation_batch_end", FIT, RunningStage.SANITY_CHECKING),
        ("on_train_batch_end", FIT, RunningStage.TRAINING),
        ("on_validation_batch_end", FIT, RunningStage.VALIDATING),
        ("on_train_epoch_end", FIT, RunningStage.TRAINING),
        ("on_fit_end", FIT, RunningStage.TRAINING),
        ("teardown", FIT, RunningStage.TRAINING),
    ]
    assert all(e[3] is RUN for e in log.seen)
    flags = {e[0]: e[4:] for e in log.seen}
    assert flags["on_train_batch_end"] == (True, False, False, False, False)
    assert flags["on_validation_batch_end"] == (False, True, False, False, False)
    assert flags["on_sanity_check_start"] == (False, False, False, False, True)
    # After the run, as in Lightning: fn stays, stage is None, status finished.
    assert (trainer.state.fn, trainer.state.stage, trainer.state.status) == (FIT, None, TrainerStatus.FINISHED)
    assert trainer.state.finished and trainer.state.stopped and not trainer.training


@pytest.mark.parametrize("entry, fn, stage, hook", [
    ("validate", TrainerFn.VALIDATING, RunningStage.VALIDATING, "on_validation_batch_end"),
    ("test", TrainerFn.TESTING, RunningStage.TESTING, "on_test_batch_end"),
    ("predict", TrainerFn.PREDICTING, RunningStage.PREDICTING, "on_predict_batch_end"),
])
def test_fn_and_stage_of_the_evaluation_entry_points(entry, fn, stage, hook):
    log = StageLog()
    trainer = quiet_trainer(limit_val_batches=1, limit_test_batches=1, limit_predict_batches=1, callbacks=[log])
    model = ModernModel()
    if entry == "predict":
        trainer.predict(model, dataloaders=[x for x, _ in model.test_dataloader()])
    else:
        getattr(trainer, entry)(model, verbose=False)
    assert [e[:3] for e in log.seen] == [("setup", fn, stage), (hook, fn, stage), ("teardown", fn, stage)]
    assert log.seen[1][5:8] == (entry == "validate", entry == "test", entry == "predict")
    assert trainer.state.stage is None and trainer.state.fn == fn


def test_the_enums_compare_with_lightnings_strings():
    assert TrainerFn.FITTING == "fit" and "FIT" == TrainerFn.FITTING and TrainerFn.FITTING != "test"
    assert RunningStage.SANITY_CHECKING == "sanity_check" and str(RunningStage.TRAINING) == "train"
    assert {TrainerFn.TESTING: 1}["test"] == 1
    assert RunningStage.VALIDATING.evaluating and RunningStage.TESTING.evaluating
    assert not RunningStage.TRAINING.evaluating and not RunningStage.SANITY_CHECKING.evaluating
    assert [s.dataloader_prefix for s in RunningStage] == ["train", "val", "val", "test", "predict"]
    assert TrainerStatus.INTERRUPTED.stopped and not TrainerStatus.RUNNING.stopped


class Exploding(ModernModel):
    def training_step(self, batch, batch_idx):
        raise RuntimeError("boom")


class StatusOnException(Callback):
    def on_exception(self, trainer, pl_module, exception):
        self.status = trainer.state.status


def test_a_failed_run_is_interrupted():
    seen = StatusOnException()
    trainer = quiet_trainer(max_epochs=1, callbacks=[seen])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Exploding())
    assert seen.status is TrainerStatus.INTERRUPTED  # already when on_exception runs, as in Lightning
    assert trainer.state.status is TrainerStatus.INTERRUPTED and trainer.state.stopped and not trainer.state.finished
    assert trainer.state.stage is None


def test_seed_testing_flag_follows_the_test_stage():
    log = StageLog()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1,
                            num_sanity_val_steps=0, callbacks=[log])
    model = ModernModel(n_train=64)
    trainer.fit(model)
    assert not any(e[6] for e in log.seen)
    trainer.test(model, verbose=False)
    assert all(e[6] for e in log.seen if e[1] == TrainerFn.TESTING) and not trainer.testing
