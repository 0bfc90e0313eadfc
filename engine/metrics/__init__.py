"""Lightning 0.9's ``pytorch_lightning.metrics``: ``pl.metrics.Accuracy()`` becomes ``engine.metrics.Accuracy()``.

As in 0.9, a metric module computes the value of the batch it is called with (``acc = self.accuracy(pred,
y)``), reduced across processes under ``torch.distributed``; the functions are in
:mod:`engine.metrics.functional`. torchmetrics does the counting and the curves (``pip install
torchmetrics``; without it those metrics raise an error naming themselves). For metrics that keep a state
over the epoch (1.0's, and 2.x's ``self.log('acc', metric)``), use torchmetrics' own classes.
"""
from hookloop.engine.metrics.classification import (  # noqa: F401
    AUC,
    AUROC,
    ROC,
    Accuracy,
    AveragePrecision,
    ConfusionMatrix,
    DiceCoefficient,
    F1,
    FBeta,
    IoU,
    MulticlassPrecisionRecallCurve,
    MulticlassROC,
    Precision,
    PrecisionRecallCurve,
    Recall,
)
from hookloop.engine.metrics.metric import Metric, NumpyMetric, TensorMetric, numpy_metric, tensor_metric  # noqa: F401
from hookloop.engine.metrics.nlp import BLEUScore  # noqa: F401
from hookloop.engine.metrics.regression import MAE, MSE, PSNR, RMSE, RMSLE, SSIM  # noqa: F401
from hookloop.engine.metrics.sklearns import SklearnMetric  # noqa: F401

__all__ = [
    "AUC", "AUROC", "Accuracy", "AveragePrecision", "ConfusionMatrix", "DiceCoefficient", "F1", "FBeta",
    "MulticlassPrecisionRecallCurve", "MulticlassROC", "Precision", "PrecisionRecallCurve", "ROC", "Recall", "IoU",
    "MAE", "MSE", "PSNR", "RMSE", "RMSLE", "SSIM", "BLEUScore", "SklearnMetric",
    "Metric", "TensorMetric", "NumpyMetric", "tensor_metric", "numpy_metric",
]
