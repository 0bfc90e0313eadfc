"""Lightning 0.9's Results API (``TrainResult``/``EvalResult``) with modules written as 0.9's docs wrote them.

The data's losses are recorded by the modules themselves, so each expected value (an epoch's mean, the
monitored ``checkpoint_on``) is worked out from what the steps saw.
"""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from engine import EvalResult, LightningModule, Trainer, TrainResult
from engine.errors import MisconfigurationException
from tests.core_support import RecordingLogger
from tests.models import make_loader


class LitResults(LightningModule):
    """0.9's results.rst example: TrainResult(minimize=loss) and EvalResult(checkpoint_on=loss)."""

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.lr = lr
        self.train_losses, self.val_losses = [], []

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.train_losses.append(loss.detach())
        result = TrainResult(minimize=loss)
        result.log("train_loss", loss, prog_bar=True)
        return result

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.val_losses.append(loss)
        result = EvalResult(checkpoint_on=loss)
        result.log("val_loss", loss)
        return result

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return make_loader(96, 32)  # 3 batches

    def val_dataloader(self):
        return make_loader(40, 16, seed=1)  # batches of 16, 16 and 8


def trainer_for(**flags):
    flags.setdefault("logger", RecordingLogger())
    flags.setdefault("num_sanity_val_steps", 0)
    flags.setdefault("default_root_dir", ".")
    return Trainer(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, **flags)


def weighted(values, sizes=(16, 16, 8)):
    return float(sum(v * s for v, s in zip(values, sizes)) / sum(sizes))


def test_a_train_result_trains_and_logs_per_step_and_an_eval_result_per_epoch():
    model = LitResults()
    before = model.layer.weight.detach().clone()
    trainer = trainer_for(max_epochs=2)
    trainer.fit(model)
    assert not torch.equal(before, model.layer.weight) and trainer.global_step == 6
    logged = trainer.logger
    assert [float(v) for _, v in logged.with_key("train_loss")] == pytest.approx([float(v) for v in model.train_losses])
    assert "train_loss" in trainer.progress_bar_metrics
    # EvalResult.log defaults to the epoch's mean, weighted by batch size (16, 16, 8).
    last_run = [float(v) for v in model.val_losses[-3:]]
    assert [float(v) for _, v in logged.with_key("val_loss")][-1] == pytest.approx(weighted(last_run))
    assert float(trainer.callback_metrics["val_loss"]) == pytest.approx(weighted(last_run))
    # checkpoint_on: the run's plain mean, as 0.9 averaged it; never sent to loggers.
    assert float(trainer.callback_metrics["val_checkpoint_on"]) == pytest.approx(sum(last_run) / 3)
    assert not logged.with_key("val_checkpoint_on") and not logged.with_key("checkpoint_on")
    # A training step's checkpoint_on (the loss, by default) is the epoch's mean of its steps.
    assert float(trainer.callback_metrics["checkpoint_on"]) == pytest.approx(
        float(torch.stack(model.train_losses[-3:]).mean()))


def test_the_default_checkpoint_ranks_by_checkpoint_on_and_keeps_tensors():
    model = LitResults()
    trainer = trainer_for(max_epochs=3, logger=False)
    trainer.fit(model)
    checkpoint = trainer.checkpoint_callback
    assert checkpoint.monitor == "val_checkpoint_on"
    runs = [float(torch.stack(model.val_losses[i:i + 3]).mean()) for i in (0, 3, 6)]
    assert float(checkpoint.best_model_score) == pytest.approx(min(runs))
    (score,) = checkpoint.best_k_models.values()
    assert isinstance(score, torch.Tensor) and float(score) == pytest.approx(min(runs))  # 0.9 kept tensors
    assert os.path.isfile(checkpoint.best_model_path)


def test_without_validation_the_default_checkpoint_ranks_by_the_training_checkpoint_on():
    model = LitResults()
    trainer = trainer_for(max_epochs=2, logger=False, limit_val_batches=0)
    trainer.fit(model)
    assert trainer.checkpoint_callback.monitor == "checkpoint_on"
    means = [float(torch.stack(model.train_losses[i:i + 3]).mean()) for i in (0, 3)]
    assert float(trainer.checkpoint_callback.best_model_score) == pytest.approx(min(means))


def test_on_step_and_on_epoch_split_the_name_as_0_9_did():
    class Both(LitResults):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.train_losses.append(loss.detach())
            result = TrainResult(loss)
            result.log("train_loss", loss, on_epoch=True)
            assert torch.equal(result["train_loss"], result["step_train_loss"])  # 0.9.0's look-up
            return result

    model = Both()
    trainer = trainer_for(max_epochs=1, limit_val_batches=0)
    trainer.fit(model)
    losses = [float(v) for v in model.train_losses]
    assert [float(v) for _, v in trainer.logger.with_key("step_train_loss")] == pytest.approx(losses)
    assert [float(v) for _, v in trainer.logger.with_key("epoch_train_loss")] == pytest.approx([sum(losses) / 3])
    assert not trainer.logger.with_key("train_loss")


def test_validation_epoch_end_gets_the_gathered_result_and_what_it_returns_is_logged():
    seen = {}

    class EpochEnd(LitResults):
        def validation_step(self, batch, batch_idx):
            result = super().validation_step(batch, batch_idx)
            result.predictions = batch[1]  # 0.9's docs: keep data for the epoch end
            return result

        def validation_epoch_end(self, outputs):
            seen["type"], seen["val_loss"] = type(outputs), outputs.val_loss
            seen["predictions"], seen["checkpoint_on"] = outputs.predictions, outputs.checkpoint_on
            avg = outputs.val_loss.mean()
            result = EvalResult(checkpoint_on=avg)
            result.log("avg_val_loss", avg, prog_bar=True)
            return result

    model = EpochEnd()
    trainer = trainer_for(max_epochs=1)
    trainer.fit(model)
    losses = torch.stack(model.val_losses)
    assert seen["type"] is EvalResult
    assert torch.allclose(seen["val_loss"], losses)  # one value per step, stacked
    assert seen["predictions"].shape == (40,)  # per-sample tensors concatenated
    assert float(seen["checkpoint_on"]) == pytest.approx(float(losses.mean()))  # 0.9: averaged for the epoch end
    assert [float(v) for _, v in trainer.logger.with_key("avg_val_loss")] == pytest.approx([float(losses.mean())])
    assert not trainer.logger.with_key("val_loss")  # the epoch end reduces; the steps' epoch values are not sent
    assert float(trainer.callback_metrics["val_checkpoint_on"]) == pytest.approx(float(losses.mean()))
    assert "avg_val_loss" in trainer.progress_bar_metrics


def test_returning_the_gathered_result_reduces_each_value_with_its_reduce_fx():
    class Returned(LitResults):
        def validation_step(self, batch, batch_idx):
            result = super().validation_step(batch, batch_idx)
            result.log("worst", result.val_loss, reduce_fx=torch.max)
            return result

        def validation_epoch_end(self, outputs):
            return outputs  # 0.9's docs: "return validation_step_output_result"

    model = Returned()
    trainer = trainer_for(max_epochs=1)
    trainer.fit(model)
    losses = torch.stack(model.val_losses)
    assert float(trainer.callback_metrics["val_loss"]) == pytest.approx(float(losses.mean()))
    assert float(trainer.callback_metrics["worst"]) == pytest.approx(float(losses.max()))


def test_training_epoch_end_gets_the_gathered_train_result():
    seen = {}

    class TrainEpochEnd(LitResults):
        def training_epoch_end(self, outputs):
            seen["minimize"], seen["train_loss"] = outputs.minimize, outputs["train_loss"]
            result = TrainResult()
            result.log("epoch_mean_loss", outputs.train_loss.mean())
            return result

    model = TrainEpochEnd()
    trainer = trainer_for(max_epochs=1, limit_val_batches=0)
    trainer.fit(model)
    losses = torch.stack(model.train_losses)
    assert torch.allclose(seen["minimize"], losses) and not seen["minimize"].requires_grad
    assert torch.allclose(seen["train_loss"], losses)
    assert [float(v) for _, v in trainer.logger.with_key("epoch_mean_loss")] == pytest.approx([float(losses.mean())])


def test_custom_and_builtin_reduce_fx_of_epoch_values():
    def spread(values):
        return values.max() - values.min()

    class Reduced(LitResults):
        def training_step(self, batch, batch_idx):
            result = super().training_step(batch, batch_idx)
            loss = result.minimize.detach()
            result.log("loss_sum", loss, on_step=False, on_epoch=True, reduce_fx=torch.sum)
            result.log("loss_spread", loss, on_step=False, on_epoch=True, reduce_fx=spread)
            return result

    model = Reduced()
    trainer = trainer_for(max_epochs=1, limit_val_batches=0)
    trainer.fit(model)
    losses = torch.stack(model.train_losses)
    assert float(trainer.callback_metrics["loss_sum"]) == pytest.approx(float(losses.sum()))
    assert float(trainer.callback_metrics["loss_spread"]) == pytest.approx(float(losses.max() - losses.min()))


def test_rename_keys_and_log_dict():
    class Renamed(LitResults):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            result = EvalResult()
            result.log_dict({"loss": loss, "acc": (self(x).argmax(-1) == y).float().mean()})
            result.rename_keys({"loss": "val_loss", "acc": "val_acc"})
            return result

    trainer = trainer_for(max_epochs=1)
    trainer.fit(Renamed())
    assert {"val_loss", "val_acc"} <= set(trainer.callback_metrics)
    assert "loss" not in trainer.callback_metrics and "acc" not in trainer.callback_metrics


def test_eval_result_early_stop_on_drives_the_seed_early_stopping():
    class Plateau(LitResults):
        def validation_step(self, batch, batch_idx):
            return EvalResult(early_stop_on=torch.tensor(1.0))  # never improves after the first run

    trainer = trainer_for(max_epochs=20, logger=False, early_stop_callback=True)
    trainer.fit(Plateau())
    assert trainer.early_stopping_callback.monitor == "val_early_stop_on"
    # The first run sets the best; three more without improvement stop it in epoch 3 (0.9's current_epoch after fit).
    assert trainer.current_epoch == trainer.early_stopping_callback.stopped_epoch == 3


def test_train_result_early_stop_on_stops_a_run_without_validation():
    class Rising(LitResults):
        def training_step(self, batch, batch_idx):
            result = super().training_step(batch, batch_idx)
            result.early_stop_on = torch.tensor(float(self.current_epoch))  # gets worse every epoch
            return result

    trainer = trainer_for(max_epochs=20, logger=False, limit_val_batches=0, early_stop_callback=True)
    trainer.fit(Rising())
    assert trainer.early_stopping_callback.monitor == "early_stop_on"
    assert trainer.current_epoch == trainer.early_stopping_callback.stopped_epoch == 3


def test_an_explicit_monitor_is_kept():
    from plugins import ModelCheckpoint

    checkpoint = ModelCheckpoint(monitor="val_loss", dirpath="ckpts")
    trainer = trainer_for(max_epochs=1, logger=False, callbacks=[checkpoint])
    trainer.fit(LitResults())
    assert checkpoint.monitor == "val_loss" and checkpoint.best_model_path


def test_test_step_results_are_returned_and_predictions_written():
    class Tested(LitResults):
        def test_step(self, batch, batch_idx):
            x, y = batch
            preds = self(x).argmax(-1)
            result = EvalResult(checkpoint_on=F.cross_entropy(self(x), y))
            result.log("test_acc", (preds == y).float().mean())
            result.write("preds", preds)
            result.write_dict({"target": y, "name": [f"s{batch_idx}"] * len(y)}, filename="out/extra.pt")
            return result

        def test_dataloader(self):
            return make_loader(40, 16, seed=2)

    model = Tested()
    trainer = trainer_for(logger=False)
    (results,) = trainer.test(model, verbose=False)
    assert set(results) == {"test_acc"}  # no monitored values in test results, as in 0.9
    rows = torch.load("predictions.pt", weights_only=False)
    assert len(rows) == 40 and set(rows[0]) == {"preds"}
    extra = torch.load(os.path.join("out", "extra.pt"), weights_only=False)
    loader_targets = torch.cat([y for _, y in make_loader(40, 16, seed=2)]).tolist()
    assert [r["target"] for r in extra] == loader_targets and extra[-1]["name"] == "s2"


def test_prediction_columns_of_different_lengths_are_an_error_naming_the_file():
    class Uneven(LitResults):
        def test_step(self, batch, batch_idx):
            result = EvalResult()
            result.write("ids", list(range(len(batch[1]))))
            result.write("twice", torch.cat([batch[1], batch[1]]))
            return result

        def test_dataloader(self):
            return make_loader(16, 16)

    with pytest.raises(MisconfigurationException, match=r"predictions.pt.*different lengths"):
        trainer_for(logger=False).test(Uneven(), verbose=False)


def test_result_mistakes_are_errors_naming_the_culprit():
    class TrainResultInValidation(LitResults):
        def validation_step(self, batch, batch_idx):
            return TrainResult()

    with pytest.raises(MisconfigurationException, match="`validation_step` returned a TrainResult.*EvalResult"):
        trainer_for(max_epochs=1, logger=False).fit(TrainResultInValidation())

    with pytest.raises(MisconfigurationException, match=r"TrainResult\(minimize=...\) must be the loss tensor"):
        TrainResult(minimize=torch.tensor(1.0))

    class NoMinimize(LitResults):
        def training_step(self, batch, batch_idx):
            return TrainResult()

    with pytest.raises(MisconfigurationException, match="without `minimize`"):
        trainer_for(max_epochs=1, logger=False).fit(NoMinimize())


def test_a_result_reads_like_0_9s():
    loss = (torch.ones(2, requires_grad=True) * 3).mean()
    result = TrainResult(loss, early_stop_on=torch.tensor(2.0))
    result.log("acc", torch.tensor(0.5), prog_bar=True)
    assert result.minimize is loss and float(result.checkpoint_on) == 3.0 and not result.checkpoint_on.requires_grad
    assert result.missing is None and result.acc == torch.tensor(0.5)
    assert result.batch_log_metrics == {"acc": torch.tensor(0.5)} and result.epoch_log_metrics == {}
    assert set(result.callback_metrics) == {"early_stop_on", "checkpoint_on"}
    assert set(EvalResult(checkpoint_on=torch.tensor(1.0)).callback_metrics) == {"val_early_stop_on", "val_checkpoint_on"}
    assert TrainResult(loss, checkpoint_on=False).checkpoint_on is None
    assert "meta" not in result and "acc" in repr(result)
