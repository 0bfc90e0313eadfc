"""Lightning 0.9's functional metrics: ``from pytorch_lightning.metrics.functional import accuracy`` becomes
``from engine.metrics.functional import accuracy``. Computed through torchmetrics where it does the work
(installed separately: ``pip install torchmetrics``); without it those raise an error naming the metric.
"""
from hookloop.engine.metrics.functional.classification import (  # noqa: F401
    accuracy,
    auc,
    auroc,
    average_precision,
    confusion_matrix,
    dice_score,
    f1_score,
    fbeta_score,
    get_num_classes,
    iou,
    multiclass_precision_recall_curve,
    multiclass_roc,
    precision,
    precision_recall,
    precision_recall_curve,
    recall,
    roc,
    stat_scores,
    stat_scores_multiple_classes,
    to_categorical,
    to_onehot,
)
from hookloop.engine.metrics.functional.nlp import bleu_score  # noqa: F401
from hookloop.engine.metrics.functional.regression import mae, mse, psnr, rmse, rmsle, ssim  # noqa: F401
