"""Lightning 0.9's ``pytorch_lightning.metrics`` as ``engine.metrics``: the values 0.9's docs printed, its
metric modules in a 0.9-style module, and the error without torchmetrics."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import engine as pl
from engine.metrics import MSE, Accuracy, NumpyMetric, SklearnMetric, TensorMetric, numpy_metric, tensor_metric
from engine.metrics.functional import (accuracy, auc, auroc, average_precision, bleu_score, confusion_matrix,
                                       dice_score, f1_score, fbeta_score, iou, mae, mse, precision,
                                       precision_recall, psnr, recall, rmse, roc, ssim, stat_scores,
                                       stat_scores_multiple_classes, to_categorical, to_onehot)
from engine.metrics.functional.classification import accuracy as accuracy_from_its_module
from tests.core_support import quiet_trainer
from tests.models import SeedModel

X = torch.tensor([0, 1, 2, 3])
Y = torch.tensor([0, 1, 2, 2])


def test_classification_functions_give_the_values_of_0_9s_docstrings():
    assert float(accuracy(X, Y)) == pytest.approx(0.75)
    assert float(precision(X, Y)) == pytest.approx(0.75)
    assert float(recall(X, Y)) == pytest.approx(0.625)
    assert [float(v) for v in precision_recall(X, Y)] == pytest.approx([0.75, 0.625])
    assert float(fbeta_score(X, Y, 0.2)) == pytest.approx(0.7407, abs=1e-4)
    assert float(f1_score(X, Y)) == pytest.approx(0.6667, abs=1e-4)
    assert float(auc(X, Y)) == pytest.approx(4.0)
    assert float(auroc(X.float(), Y)) == pytest.approx(1 / 3, abs=1e-4)
    assert float(average_precision(X.float(), Y)) == pytest.approx(1 / 3, abs=1e-4)
    fpr, tpr, _ = roc(X.float(), Y)
    assert fpr.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 2 / 3, 1.0]) and tpr.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(confusion_matrix(torch.tensor([1, 2, 3]), torch.tensor([0, 2, 3])),
                       torch.tensor([[0., 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    assert [int(v) for v in stat_scores(torch.tensor([1, 2, 3]), torch.tensor([0, 2, 3]), class_index=1)] == [0, 1, 2, 0, 0]
    tps, fps, tns, fns, sups = stat_scores_multiple_classes(torch.tensor([1, 2, 3]), torch.tensor([0, 2, 3]))
    assert (tps.tolist(), fps.tolist(), tns.tolist(), fns.tolist(), sups.tolist()) == (
        [0, 0, 1, 1], [0, 1, 0, 0], [2, 2, 2, 2], [1, 0, 0, 0], [1, 0, 1, 1])
    assert to_onehot(torch.tensor([1, 2, 3])).tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert to_categorical(torch.tensor([[0.2, 0.5], [0.9, 0.1]])).tolist() == [1, 0]
    scores = torch.tensor([[0.85, 0.05, 0.05, 0.05], [0.05, 0.85, 0.05, 0.05],
                           [0.05, 0.05, 0.85, 0.05], [0.05, 0.05, 0.05, 0.85]])
    assert float(dice_score(scores, torch.tensor([0, 1, 3, 2]))) == pytest.approx(1 / 3, abs=1e-4)
    assert accuracy_from_its_module is accuracy


def test_reductions_per_class_and_probabilities_by_their_argmax():
    assert recall(X, Y, reduction="none").tolist() == [1.0, 1.0, 0.5, 0.0]
    assert float(precision(X, Y, reduction="sum")) == pytest.approx(3.0)
    probabilities = nn.functional.one_hot(X, 4).float()
    assert float(accuracy(probabilities, Y)) == pytest.approx(0.75)
    # IoU by hand: class 0 {0}∩{0}/{0}=1, class 1: pred {1,2} target {1} -> 1/2
    assert float(iou(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))) == pytest.approx((1 / 2 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="reduction='mean' is not one of"):
        precision(X, Y, reduction="mean")


def test_regression_and_text_functions():
    pred, target = torch.tensor([2.5, 0.0, 2.0, 8.0]), torch.tensor([3.0, -0.5, 2.0, 7.0])
    assert float(mse(pred, target)) == pytest.approx((0.25 + 0.25 + 0 + 1) / 4)
    assert float(rmse(pred, target)) == pytest.approx(((0.25 + 0.25 + 1) / 4) ** 0.5)
    assert float(mae(pred, target)) == pytest.approx(2 / 4)
    assert float(psnr(pred, target)) == pytest.approx(10 * torch.log10(torch.tensor(7.5 ** 2 / 0.375)).item(), rel=1e-5)
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(ssim(image, image, data_range=1.0)) == pytest.approx(1.0, abs=1e-4)
    assert float(bleu_score([["a", "cat"]], [[["a", "cat"]]], n_gram=2)) == pytest.approx(1.0)


def test_metric_modules_in_a_0_9_module():
    class WithMetric(SeedModel):
        def __init__(self):
            super().__init__()
            self.accuracy = pl.metrics.Accuracy()  # `import pytorch_lightning as pl` ... `pl.metrics.Accuracy()`
            self.seen = []

        def validation_step(self, batch, batch_idx):
            x, y = batch
            preds = self(x).argmax(-1)
            self.seen.append((preds, y))
            return {"val_loss": nn.functional.cross_entropy(self(x), y), "val_acc": self.accuracy(preds, y)}

        def validation_epoch_end(self, outputs):
            return {"val_acc": torch.stack([o["val_acc"] for o in outputs]).mean()}

    model = WithMetric()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0)
    trainer.fit(model)
    by_hand = [float((p == y).float().mean()) for p, y in model.seen]
    assert float(trainer.callback_metrics["val_acc"]) == pytest.approx(sum(by_hand) / len(by_hand))
    assert isinstance(model.accuracy, nn.Module) and model.accuracy.name == "accuracy"


def test_a_0_9_custom_tensor_metric_and_sklearn_metric():
    class Sum(TensorMetric):
        def forward(self, a, b):
            return (a + b).sum().item()  # a number: returned as a tensor

    assert torch.equal(Sum("sum")(torch.ones(3), 1.0), torch.tensor(6.0))

    class NumpyMax(NumpyMetric):
        def forward(self, a):
            assert type(a).__name__ == "ndarray"
            return a.max()

    assert float(NumpyMax("max")(torch.tensor([1.0, 5.0]))) == 5.0

    @numpy_metric()
    def numpy_mean(a):
        return a.mean()

    @tensor_metric()
    def tensor_first(a):
        return a[0]

    assert float(numpy_mean(torch.tensor([1.0, 2.0]))) == 1.5 and isinstance(numpy_mean(torch.ones(1)), torch.Tensor)
    assert tensor_first([3.0]) == 3.0 and numpy_mean.__name__ == "numpy_mean"
    assert float(SklearnMetric("accuracy_score")(Y, X)) == pytest.approx(0.75)
    assert float(Accuracy(reduction="elementwise_mean")(X, Y)) == pytest.approx(0.75) and float(MSE()(X, Y)) == 0.25


def test_without_torchmetrics_a_metric_that_needs_it_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    monkeypatch.setitem(sys.modules, "torchmetrics.functional", None)
    with pytest.raises(ModuleNotFoundError, match=r"`accuracy` is computed by torchmetrics.*pip install torchmetrics"):
        Accuracy()(X, Y)
    with pytest.raises(ModuleNotFoundError, match="`auroc`"):
        auroc(X.float(), Y)
    assert float(mse(X, Y)) == 0.25 and float(auc(X, Y)) == 4.0  # plain torch: no torchmetrics needed


def test_import_engine_and_engine_metrics_import_no_torchmetrics():
    code = ("import sys, engine, engine.metrics, engine.metrics.functional\n"
            "print('torchmetrics' in sys.modules, engine.metrics.Accuracy.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "Accuracy"]
