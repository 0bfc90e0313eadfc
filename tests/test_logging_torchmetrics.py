"""torchmetrics ``Metric`` objects in ``self.log`` and ``MetricCollection`` in ``self.log_dict``, as Lightning 2.x.

The expected values are worked out by hand from the data: the "classifier" predicts ``x[:, 0] > 0``
(its weights never move the predictions), so every batch's and epoch's accuracy is known in advance.
"""
from __future__ import annotations

import pytest
import torch
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy, BinaryConfusionMatrix, BinaryPrecision, BinaryRecall

from engine import LightningModule, Trainer
from engine.errors import MisconfigurationException
from tests.core_support import RecordingLogger

# Ten samples, batches of 4, 4 and 2 (an uneven last batch: an epoch's accuracy is not the mean of its batches').
X0 = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
Y = torch.tensor([1, 1, 1, 0, 0, 0, 1, 1, 1, 0])
PRED = (X0 > 0).long()
CORRECT = (PRED == Y).float()  # 1,0,1,0 | 1,1,1,0 | 1,0
BATCH_ACC = [0.5, 0.75, 0.5]
EPOCH_ACC = 6 / 10  # not (0.5 + 0.75 + 0.5) / 3


def loader():
    x = torch.stack([X0, torch.zeros(10)], dim=1)
    return DataLoader(TensorDataset(x, Y), batch_size=4)


class Classifier(LightningModule):
    """Predicts ``x[:, 0] > 0``; in epochs >= 1 with ``flip_after_first_epoch`` it predicts everything wrong."""

    def __init__(self, flip_after_first_epoch: bool = False):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.flip = flip_after_first_epoch
        self.train_acc = BinaryAccuracy()
        self.val_acc = BinaryAccuracy()

    def predictions(self, x):
        pred = (x[:, 0] > 0).long()
        return 1 - pred if self.flip and self.current_epoch >= 1 and self.training else pred

    def loss(self, x, y):
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(1), y.float())

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_acc(self.predictions(x), y)  # forward: the batch's value, and the epoch's state
        self.log("train_acc", self.train_acc, on_step=True, on_epoch=True)
        return self.loss(x, y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_acc.update(self.predictions(x), y)  # update only: the epoch value is what counts
        self.log("val_acc", self.val_acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return loader()

    def val_dataloader(self):
        return loader()


def fit(model, max_epochs=1, **flags):
    flags.setdefault("logger", RecordingLogger())
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = Trainer(max_epochs=max_epochs, log_every_n_steps=1, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **flags)
    trainer.fit(model)
    return trainer


def test_a_metric_logs_its_forward_value_per_step_and_its_compute_per_epoch():
    trainer = fit(Classifier())
    rows = trainer.logger
    assert [round(float(v), 4) for _, v in rows.with_key("train_acc_step")] == BATCH_ACC
    assert [float(v) for _, v in rows.with_key("train_acc_epoch")] == pytest.approx([EPOCH_ACC])
    assert float(trainer.callback_metrics["train_acc_epoch"]) == pytest.approx(EPOCH_ACC)
    # Validation: update() in every step, the epoch value is compute() over the whole run.
    assert [float(v) for _, v in rows.with_key("val_acc")] == pytest.approx([EPOCH_ACC])
    assert float(trainer.callback_metrics["val_acc"]) == pytest.approx(EPOCH_ACC)


def test_a_metric_is_reset_after_every_epoch_and_every_validation_run():
    model = Classifier(flip_after_first_epoch=True)  # epoch 1 predicts everything wrong
    trainer = fit(model, max_epochs=2)
    epochs = [float(v) for _, v in trainer.logger.with_key("train_acc_epoch")]
    assert epochs == pytest.approx([EPOCH_ACC, 1 - EPOCH_ACC])  # not the two epochs pooled (0.5)
    # Each validation run computed its own 10 samples, not 20, 30... (and the states are empty after fit).
    assert [float(v) for _, v in trainer.logger.with_key("val_acc")] == pytest.approx([EPOCH_ACC, EPOCH_ACC])
    assert not model.train_acc.update_called and not model.val_acc.update_called


def test_validate_and_test_return_a_metrics_compute():
    class Tested(Classifier):
        def test_step(self, batch, batch_idx):
            self.validation_step(batch, batch_idx)

        def test_dataloader(self):
            return loader()

    model = Tested()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    assert trainer.validate(model, verbose=False) == [{"val_acc": pytest.approx(EPOCH_ACC)}]
    assert trainer.test(model, verbose=False) == [{"val_acc": pytest.approx(EPOCH_ACC)}]  # fresh state each run


def test_the_sanity_check_leaves_the_metric_empty():
    trainer = fit(Classifier(), num_sanity_val_steps=1)  # one validation batch before training
    assert [float(v) for _, v in trainer.logger.with_key("val_acc")] == pytest.approx([EPOCH_ACC])


def test_an_update_only_metric_logged_per_step_gives_its_current_value():
    class UpdateOnly(Classifier):
        def training_step(self, batch, batch_idx):
            x, y = batch
            self.train_acc.update(self.predictions(x), y)
            self.log("running_acc", self.train_acc, on_step=True, on_epoch=False)
            return self.loss(x, y)

    trainer = fit(UpdateOnly(), limit_val_batches=0)
    # The running accuracy over the batches seen so far: 2/4, 5/8, 6/10.
    assert [float(v) for _, v in trainer.logger.with_key("running_acc")] == pytest.approx([2 / 4, 5 / 8, 6 / 10])


def test_a_metric_logged_in_on_train_epoch_end_is_computed_then_reset():
    """The torchmetrics documentation's example: the step value from training_step, the epoch one from the hook."""
    class EpochHook(Classifier):
        def training_step(self, batch, batch_idx):
            x, y = batch
            self.train_acc(self.predictions(x), y)
            self.log("train_acc_step", self.train_acc)
            return self.loss(x, y)

        def on_train_epoch_end(self):
            self.log("train_acc_epoch", self.train_acc)

    model = EpochHook(flip_after_first_epoch=True)
    trainer = fit(model, max_epochs=2, limit_val_batches=0)
    assert [round(float(v), 4) for _, v in trainer.logger.with_key("train_acc_step")][:3] == BATCH_ACC
    assert [float(v) for _, v in trainer.logger.with_key("train_acc_epoch")] == pytest.approx(
        [EPOCH_ACC, 1 - EPOCH_ACC])


def test_a_metric_collection_with_a_prefix_logs_each_metric_under_its_name():
    class WithCollection(Classifier):
        def __init__(self):
            super().__init__()
            self.val_metrics = torchmetrics.MetricCollection(
                {"acc": BinaryAccuracy(), "precision": BinaryPrecision(), "recall": BinaryRecall()}, prefix="val_")

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.val_metrics.update(self.predictions(x), y)
            self.log_dict(self.val_metrics, prog_bar=True)

    trainer = fit(WithCollection())
    tp = int(((PRED == 1) & (Y == 1)).sum())  # 4
    expected = {"val_acc": EPOCH_ACC, "val_precision": tp / int(PRED.sum()), "val_recall": tp / int(Y.sum())}
    assert expected["val_precision"] == pytest.approx(4 / 6) and expected["val_recall"] == pytest.approx(4 / 6)
    for name, value in expected.items():
        assert float(trainer.callback_metrics[name]) == pytest.approx(value)
        assert float(trainer.progress_bar_metrics[name]) == pytest.approx(value)
        assert [float(v) for _, v in trainer.logger.with_key(name)] == pytest.approx([value])


def test_a_metric_collection_forward_gives_step_values_too():
    class StepCollection(Classifier):
        def __init__(self):
            super().__init__()
            self.metrics = torchmetrics.MetricCollection([BinaryAccuracy()], prefix="train_")

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.metrics(self.predictions(x), y)
            self.log_dict(self.metrics, on_step=True, on_epoch=True)
            return self.loss(x, y)

    trainer = fit(StepCollection(), limit_val_batches=0)
    assert [round(float(v), 4) for _, v in trainer.logger.with_key("train_BinaryAccuracy_step")] == BATCH_ACC
    assert [float(v) for _, v in trainer.logger.with_key("train_BinaryAccuracy_epoch")] == pytest.approx([EPOCH_ACC])


def test_a_metric_with_a_non_scalar_value_is_an_error_naming_it():
    class Matrix(Classifier):
        def __init__(self):
            super().__init__()
            self.cm = BinaryConfusionMatrix()

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.cm.update(self.predictions(x), y)
            self.log("cm", self.cm)

    with pytest.raises(MisconfigurationException, match=r"self.log\('cm', BinaryConfusionMatrix\).*\(2, 2\).*scalars"):
        fit(Matrix())


def test_self_log_of_a_metric_collection_points_to_log_dict():
    class Wrong(Classifier):
        def validation_step(self, batch, batch_idx):
            self.log("all", torchmetrics.MetricCollection([BinaryAccuracy()]))

    with pytest.raises(MisconfigurationException, match="log_dict"):
        fit(Wrong())
