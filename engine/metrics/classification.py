"""Lightning 0.9's classification metric modules (``pl.metrics.Accuracy()``...): each computes its
functional metric (:mod:`hookloop.engine.metrics.functional`) of the batch it is called with."""
from __future__ import annotations

from typing import Any, Optional

import torch

from hookloop.engine.metrics.functional import classification as F
from hookloop.engine.metrics.metric import TensorMetric


class _Functional(TensorMetric):
    """A :class:`TensorMetric` whose ``forward(*inputs)`` is ``function(*inputs, **options)``."""

    function: Any = None

    def __init__(self, name: str, options: dict, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__(name, reduce_group=reduce_group, reduce_op=reduce_op)
        self.options = options

    def forward(self, *inputs: Any) -> Any:
        """The metric of ``inputs`` (e.g. ``pred, target``)."""
        return type(self).function(*inputs, **self.options)


class Accuracy(_Functional):
    """:func:`~hookloop.engine.metrics.functional.accuracy` of ``(pred, target)``."""

    function = staticmethod(F.accuracy)

    def __init__(self, num_classes: Optional[int] = None, reduction: str = "elementwise_mean",
                 reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("accuracy", dict(num_classes=num_classes, reduction=reduction), reduce_group, reduce_op)


class Precision(_Functional):
    """:func:`~hookloop.engine.metrics.functional.precision` of ``(pred, target)``."""

    function = staticmethod(F.precision)

    def __init__(self, num_classes: Optional[int] = None, reduction: str = "elementwise_mean",
                 reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("precision", dict(num_classes=num_classes, reduction=reduction), reduce_group, reduce_op)


class Recall(_Functional):
    """:func:`~hookloop.engine.metrics.functional.recall` of ``(pred, target)``."""

    function = staticmethod(F.recall)

    def __init__(self, num_classes: Optional[int] = None, reduction: str = "elementwise_mean",
                 reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("recall", dict(num_classes=num_classes, reduction=reduction), reduce_group, reduce_op)


class FBeta(_Functional):
    """:func:`~hookloop.engine.metrics.functional.fbeta_score` of ``(pred, target)``."""

    function = staticmethod(F.fbeta_score)

    def __init__(self, beta: float, num_classes: Optional[int] = None, reduction: str = "elementwise_mean",
                 reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("fbeta", dict(beta=beta, num_classes=num_classes, reduction=reduction),
                         reduce_group, reduce_op)


class F1(_Functional):
    """:func:`~hookloop.engine.metrics.functional.f1_score` of ``(pred, target)``."""

    function = staticmethod(F.f1_score)

    def __init__(self, num_classes: Optional[int] = None, reduction: str = "elementwise_mean",
                 reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("f1", dict(num_classes=num_classes, reduction=reduction), reduce_group, reduce_op)


class ConfusionMatrix(_Functional):
    """:func:`~hookloop.engine.metrics.functional.confusion_matrix` of ``(pred, target)``."""

    function = staticmethod(F.confusion_matrix)

    def __init__(self, normalize: bool = False, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("confusion_matrix", dict(normalize=normalize), reduce_group, reduce_op)


class _Scored(_Functional):
    """A metric of scores: ``forward(pred, target, sample_weight=None)``."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, sample_weight: Any = None) -> Any:
        """The metric of scores ``pred`` against ``target``."""
        return type(self).function(pred, target, sample_weight, **self.options)


class ROC(_Scored):
    """:func:`~hookloop.engine.metrics.functional.roc`: false/true-positive rates and thresholds."""

    function = staticmethod(F.roc)

    def __init__(self, pos_label: int = 1, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("roc", dict(pos_label=pos_label), reduce_group, reduce_op)


class PrecisionRecallCurve(_Scored):
    """:func:`~hookloop.engine.metrics.functional.precision_recall_curve`."""

    function = staticmethod(F.precision_recall_curve)

    def __init__(self, pos_label: int = 1, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("precision_recall_curve", dict(pos_label=pos_label), reduce_group, reduce_op)


class AUROC(_Scored):
    """:func:`~hookloop.engine.metrics.functional.auroc`."""

    function = staticmethod(F.auroc)

    def __init__(self, pos_label: int = 1, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("auroc", dict(pos_label=pos_label), reduce_group, reduce_op)


class AveragePrecision(_Scored):
    """:func:`~hookloop.engine.metrics.functional.average_precision`."""

    function = staticmethod(F.average_precision)

    def __init__(self, pos_label: int = 1, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("AP", dict(pos_label=pos_label), reduce_group, reduce_op)


class MulticlassROC(_Scored):
    """:func:`~hookloop.engine.metrics.functional.multiclass_roc`: one ROC per class."""

    function = staticmethod(F.multiclass_roc)

    def __init__(self, num_classes: Optional[int] = None, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("multiclass_roc", dict(num_classes=num_classes), reduce_group, reduce_op)


class MulticlassPrecisionRecallCurve(_Scored):
    """:func:`~hookloop.engine.metrics.functional.multiclass_precision_recall_curve`."""

    function = staticmethod(F.multiclass_precision_recall_curve)

    def __init__(self, num_classes: Optional[int] = None, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("multiclass_precision_recall_curve", dict(num_classes=num_classes), reduce_group, reduce_op)


class DiceCoefficient(_Functional):
    """:func:`~hookloop.engine.metrics.functional.dice_score` of ``(pred, target)``."""

    function = staticmethod(F.dice_score)

    def __init__(self, include_background: bool = False, nan_score: float = 0.0, no_fg_score: float = 0.0,
                 reduction: str = "elementwise_mean", reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("dice", dict(bg=include_background, nan_score=nan_score, no_fg_score=no_fg_score,
                                      reduction=reduction), reduce_group, reduce_op)


class IoU(_Functional):
    """:func:`~hookloop.engine.metrics.functional.iou` of ``(y_pred, y_true)``."""

    function = staticmethod(F.iou)

    def __init__(self, remove_bg: bool = False, reduction: str = "elementwise_mean") -> None:
        super().__init__("iou", dict(remove_bg=remove_bg, reduction=reduction))


class AUC(_Functional):
    """:func:`~hookloop.engine.metrics.functional.auc` of ``(x, y)`` (0.9 computed it with scikit-learn)."""

    function = staticmethod(F.auc)

    def __init__(self, reorder: bool = False, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("auc", dict(reorder=reorder), reduce_group, reduce_op)
