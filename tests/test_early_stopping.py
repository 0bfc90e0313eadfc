"""EarlyStopping: patience, min_delta, mode, strict, check_finite, thresholds, state across a resume."""
from __future__ import annotations

import math

import pytest
import torch

from engine import Trainer
from plugins import EarlyStopping, ModelCheckpoint
from tests.models import ModernModel, SeedModel

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, checkpoint_callback=False)


class Scripted(ModernModel):
    """Logs ``score`` from a script, one value per epoch (no validation)."""

    def __init__(self, scores):
        super().__init__(n_train=64)
        self.scores = list(scores)

    def on_train_epoch_end(self):
        self.log("score", self.scores[self.current_epoch])

    val_dataloader = None
    validation_step = None


def _fit(scores, max_epochs=None, **es):
    es.setdefault("monitor", "score")
    stopper = EarlyStopping(**es)
    trainer = Trainer(max_epochs=max_epochs or len(scores), callbacks=[stopper], **QUIET)
    trainer.fit(Scripted(scores))
    return trainer, stopper


def test_patience_counts_checks_without_improvement():
    trainer, es = _fit([5, 4, 4, 4.5, 4.2, 1, 0], patience=3)
    assert trainer.current_epoch == 5  # stopped after epoch index 4: three checks without improvement
    assert es.stopped_epoch == 4 and es.wait_count == 3 and float(es.best_score) == 4
    assert "did not improve" in es.stopping_reason


def test_min_delta_and_mode_max():
    trainer, es = _fit([1.0, 1.05, 1.08, 1.09, 3.0], patience=2, mode="max", min_delta=0.1)
    assert trainer.current_epoch == 3 and float(es.best_score) == 1.0
    trainer, _ = _fit([1.0, 1.2, 1.4, 1.6, 1.8], patience=2, mode="max", min_delta=0.1)
    assert trainer.current_epoch == 5  # every step beats min_delta: never stops


def test_check_finite_stopping_and_divergence_thresholds():
    trainer, es = _fit([3.0, math.nan, 1.0, 0.5], patience=10)
    assert trainer.current_epoch == 2 and "not finite" in es.stopping_reason
    trainer, es = _fit([3.0, 0.4, 0.3, 0.2], patience=10, stopping_threshold=0.5)
    assert trainer.current_epoch == 2 and "Stopping threshold" in es.stopping_reason
    trainer, es = _fit([3.0, 2.0, 50.0, 0.2], patience=10, divergence_threshold=10.0)
    assert trainer.current_epoch == 3 and "Divergence threshold" in es.stopping_reason
    trainer, _ = _fit([3.0, math.nan, 1.0, 0.5], patience=10, check_finite=False)
    assert trainer.current_epoch == 4


def test_strict_missing_metric_lists_the_metrics_that_exist():
    with pytest.raises(RuntimeError, match=r"'nope'.*score, train_loss"):
        _fit([1.0, 2.0], monitor="nope")
    with pytest.warns(UserWarning, match="nope"):
        trainer, _ = _fit([1.0, 2.0], monitor="nope", strict=False)
    assert trainer.current_epoch == 2


def test_seed_era_early_stop_callback_true_stops_on_val_loss():
    class Worsening(SeedModel):
        def validation_epoch_end(self, outputs):
            return {"val_loss": torch.tensor(float(self.current_epoch))}

    trainer = Trainer(max_epochs=20, early_stop_callback=True, **QUIET)
    es = trainer.early_stopping_callback
    assert (es.monitor, es.patience, es.mode) == ("val_loss", 3, "min")
    trainer.fit(Worsening())
    # Best at epoch 0, then 3 validations without improvement: stopped in epoch 3, where 0.9 leaves current_epoch.
    assert trainer.current_epoch == es.stopped_epoch == 3 and trainer.state.epoch == 4


def test_respects_min_epochs():
    trainer, _ = _fit([1, 2, 3, 4, 5, 6, 7], patience=1, max_epochs=7)
    assert trainer.current_epoch == 2
    es = EarlyStopping(monitor="score", patience=1)
    trainer = Trainer(max_epochs=7, min_epochs=5, callbacks=[es], **QUIET)
    trainer.fit(Scripted([1, 2, 3, 4, 5, 6, 7]))
    assert trainer.current_epoch == 5


def test_state_is_saved_and_restored(tmp_path):
    es = EarlyStopping(monitor="score", patience=3)
    ckpt = ModelCheckpoint(dirpath=str(tmp_path), save_last=True, monitor=None)
    flags = dict(QUIET, checkpoint_callback=None)
    Trainer(max_epochs=3, callbacks=[es, ckpt], **flags).fit(Scripted([5, 6, 7, 8, 9, 1, 1]))
    assert es.wait_count == 2
    saved = torch.load(ckpt.last_model_path, weights_only=True)["callbacks"][es.state_key]
    assert saved["wait_count"] == 2 and float(saved["best_score"]) == 5
    resumed_es = EarlyStopping(monitor="score", patience=3)
    trainer = Trainer(max_epochs=7, callbacks=[resumed_es], **flags)
    trainer.fit(Scripted([5, 6, 7, 8, 9, 1, 1]), ckpt_path=ckpt.last_model_path)
    assert trainer.current_epoch == 4 and resumed_es.stopped_epoch == 3  # one more bad epoch was enough


def test_two_instances_keep_separate_states(tmp_path):
    a, b = EarlyStopping(monitor="score", patience=9), EarlyStopping(monitor="score", mode="max", patience=9)
    trainer = Trainer(max_epochs=2, callbacks=[a, b], **QUIET)
    trainer.fit(Scripted([2, 1]))
    trainer.save_checkpoint("two.ckpt")
    states = torch.load("two.ckpt", weights_only=True)["callbacks"]
    assert a.state_key != b.state_key
    assert states[a.state_key]["wait_count"] == 0 and states[b.state_key]["wait_count"] == 1
