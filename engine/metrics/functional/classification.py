"""Lightning 0.9's functional classification metrics (``pytorch_lightning.metrics.functional``), 0.9's signatures.

The counting and the curves are torchmetrics' (imported on first use; an error naming the metric
without it); what 0.9 built on them is kept: ``num_classes`` inferred as the largest label + 1,
``reduction='elementwise_mean'`` (the mean over classes), ``'sum'`` or ``'none'`` (per class), a
class's zero-division precision/recall/F as 0, probabilities ``[N, C, ...]`` taken by their argmax.

Where torchmetrics differs from 0.9 it shows: the curves (``roc``, ``precision_recall_curve``) apply a
sigmoid to scores outside ``[0, 1]`` before thresholding (the rates and areas are the same, the
thresholds are the sigmoid's) and take no ``sample_weight``; ``confusion_matrix(normalize=True)``
divides each row by its total.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple

import torch

from hookloop.engine.metrics.functional._backend import torchmetrics_functional

_REDUCTIONS = ("elementwise_mean", "sum", "none")
Scores = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """0.9's reduction of per-class values: ``'elementwise_mean'``, ``'sum'`` or ``'none'``."""
    if reduction == "elementwise_mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction={reduction!r} is not one of {_REDUCTIONS}.")


def to_onehot(tensor: torch.Tensor, num_classes: Optional[int] = None) -> torch.Tensor:
    """Dense labels ``[N, d1, ...]`` to one-hot ``[N, C, d1, ...]``."""
    if num_classes is None:
        num_classes = int(tensor.max().item()) + 1
    onehot = torch.nn.functional.one_hot(tensor.long(), num_classes).to(tensor.dtype)
    return onehot.movedim(-1, 1)


def to_categorical(tensor: torch.Tensor, argmax_dim: int = 1) -> torch.Tensor:
    """Probabilities ``[N, C, ...]`` to dense labels (the argmax along ``argmax_dim``)."""
    return torch.argmax(tensor, dim=argmax_dim)


def get_num_classes(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None) -> int:
    """``num_classes``, or the largest label in ``pred``/``target`` + 1 (with a warning when they disagree)."""
    found = int(max(pred.max().item(), target.max().item())) + 1
    if num_classes is None:
        return found
    if num_classes != found:
        warnings.warn(f"num_classes={num_classes}, but the predictions and targets hold {found} classes.")
    return num_classes


def stat_scores(pred: torch.Tensor, target: torch.Tensor, class_index: int, argmax_dim: int = 1) -> Scores:
    """True/false positives and negatives and the support of one class."""
    if pred.ndim == target.ndim + 1:
        pred = to_categorical(pred, argmax_dim)
    is_pred, is_true = pred == class_index, target == class_index
    count = lambda mask: mask.to(torch.long).sum()  # noqa: E731
    return count(is_pred & is_true), count(is_pred & ~is_true), count(~is_pred & ~is_true), \
        count(~is_pred & is_true), count(is_true)


def stat_scores_multiple_classes(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
                                 argmax_dim: int = 1, reduction: str = "none") -> Scores:
    """Per-class true/false positives and negatives and supports (float tensors; ``reduction`` over classes)."""
    scores = _class_scores(pred, target, num_classes, "stat_scores_multiple_classes", argmax_dim)
    return tuple(reduce(s, reduction) for s in scores)  # type: ignore[return-value]


def _class_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int], metric: str,
                  argmax_dim: int = 1) -> Scores:
    """torchmetrics' per-class counts, for ``metric`` (named in the error without torchmetrics)."""
    if pred.ndim == target.ndim + 1:
        pred = to_categorical(pred, argmax_dim)
    num_classes = get_num_classes(pred, target, num_classes)
    functional = torchmetrics_functional(metric)
    scores = functional.classification.multiclass_stat_scores(
        pred.reshape(-1).long(), target.reshape(-1).long(), num_classes, average="none", validate_args=False)
    return tuple(scores.float().unbind(-1))  # type: ignore[return-value]


def accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
             reduction: str = "elementwise_mean") -> torch.Tensor:
    """The share of correct predictions (``'none'``: per class, each class's correct share of its samples)."""
    tps, _, _, _, sups = _class_scores(pred, target, num_classes, "accuracy")
    if reduction == "none":
        return tps / sups
    reduce(tps, reduction)  # the reduction's name is checked
    return tps.sum() / sups.sum()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """``C[i, j]``: samples of class ``i`` predicted as ``j`` (rows summing to 1 with ``normalize``)."""
    if pred.ndim == target.ndim + 1:
        pred = to_categorical(pred)
    num_classes = get_num_classes(pred, target)
    functional = torchmetrics_functional("confusion_matrix")
    return functional.classification.multiclass_confusion_matrix(
        pred.reshape(-1).long(), target.reshape(-1).long(), num_classes, normalize="true" if normalize else None,
        validate_args=False).float()


def precision_recall(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
                     reduction: str = "elementwise_mean") -> Tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall per class (0 where undefined), each reduced over the classes."""
    tps, fps, _, fns, _ = _class_scores(pred, target, num_classes, "precision_recall")
    precision = torch.nan_to_num(tps / (tps + fps))
    recall = torch.nan_to_num(tps / (tps + fns))
    return reduce(precision, reduction), reduce(recall, reduction)


def precision(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
              reduction: str = "elementwise_mean") -> torch.Tensor:
    """Precision (see :func:`precision_recall`)."""
    return precision_recall(pred, target, num_classes, reduction)[0]


def recall(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
           reduction: str = "elementwise_mean") -> torch.Tensor:
    """Recall (see :func:`precision_recall`)."""
    return precision_recall(pred, target, num_classes, reduction)[1]


def fbeta_score(pred: torch.Tensor, target: torch.Tensor, beta: float, num_classes: Optional[int] = None,
                reduction: str = "elementwise_mean") -> torch.Tensor:
    """The F-beta score per class (0 where undefined), reduced over the classes."""
    prec, rec = precision_recall(pred, target, num_classes, reduction="none")
    score = torch.nan_to_num((1 + beta ** 2) * prec * rec / (beta ** 2 * prec + rec))
    return reduce(score, reduction)


def f1_score(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None,
             reduction: str = "elementwise_mean") -> torch.Tensor:
    """The F1 score (:func:`fbeta_score` with ``beta=1``)."""
    return fbeta_score(pred, target, 1.0, num_classes, reduction)


def roc(pred: torch.Tensor, target: torch.Tensor, sample_weight: Optional[Sequence] = None,
        pos_label: int = 1) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """False-positive rates, true-positive rates and thresholds of scores ``pred`` for class ``pos_label``."""
    functional = torchmetrics_functional("roc")
    return functional.classification.binary_roc(*_binary(pred, target, sample_weight, pos_label, "roc"))


def precision_recall_curve(pred: torch.Tensor, target: torch.Tensor, sample_weight: Optional[Sequence] = None,
                           pos_label: int = 1) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precisions, recalls and thresholds of scores ``pred`` for class ``pos_label``."""
    functional = torchmetrics_functional("precision_recall_curve")
    return functional.classification.binary_precision_recall_curve(
        *_binary(pred, target, sample_weight, pos_label, "precision_recall_curve"))


def multiclass_roc(pred: torch.Tensor, target: torch.Tensor, sample_weight: Optional[Sequence] = None,
                   num_classes: Optional[int] = None) -> Tuple[Tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]:
    """:func:`roc` of every class's column of ``pred`` ``[N, C]``."""
    num_classes = num_classes or pred.shape[1]
    return tuple(roc(pred[:, c], target, sample_weight, pos_label=c) for c in range(num_classes))


def multiclass_precision_recall_curve(pred: torch.Tensor, target: torch.Tensor,
                                      sample_weight: Optional[Sequence] = None, num_classes: Optional[int] = None
                                      ) -> Tuple[Tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]:
    """:func:`precision_recall_curve` of every class's column of ``pred`` ``[N, C]``."""
    num_classes = num_classes or pred.shape[1]
    return tuple(precision_recall_curve(pred[:, c], target, sample_weight, pos_label=c) for c in range(num_classes))


def auc(x: torch.Tensor, y: torch.Tensor, reorder: bool = True) -> torch.Tensor:
    """The area under the curve ``y(x)`` by the trapezoidal rule (``reorder`` sorts by ``x`` first)."""
    x, y = x.float(), y.float()
    direction = 1.0
    if reorder:
        order = torch.argsort(x)
        x, y = x[order], y[order]
    else:
        dx = x[1:] - x[:-1]
        if (dx < 0).any():
            if not (dx <= 0).all():
                raise ValueError(f"auc(reorder=False): x is neither increasing nor decreasing: {x}.")
            direction = -1.0
    return direction * torch.trapezoid(y, x)


def auroc(pred: torch.Tensor, target: torch.Tensor, sample_weight: Optional[Sequence] = None,
          pos_label: int = 1) -> torch.Tensor:
    """The area under the ROC curve of scores ``pred`` for class ``pos_label``."""
    functional = torchmetrics_functional("auroc")
    return functional.classification.binary_auroc(*_binary(pred, target, sample_weight, pos_label, "auroc"))


def average_precision(pred: torch.Tensor, target: torch.Tensor, sample_weight: Optional[Sequence] = None,
                      pos_label: int = 1) -> torch.Tensor:
    """The average precision of scores ``pred`` for class ``pos_label``."""
    functional = torchmetrics_functional("average_precision")
    return functional.classification.binary_average_precision(
        *_binary(pred, target, sample_weight, pos_label, "average_precision"))


def dice_score(pred: torch.Tensor, target: torch.Tensor, bg: bool = False, nan_score: float = 0.0,
               no_fg_score: float = 0.0, reduction: str = "elementwise_mean") -> torch.Tensor:
    """The Dice score per class of probabilities ``pred`` ``[N, C, ...]`` (class 0 only with ``bg``)."""
    num_classes = pred.shape[1]
    labels = to_categorical(pred)
    scores = []
    for c in range(0 if bg else 1, num_classes):
        if not (target == c).any():
            scores.append(float(no_fg_score))
            continue
        tp, fp, _, fn, _ = stat_scores(labels, target, class_index=c)
        denominator = float(2 * tp + fp + fn)
        scores.append(2 * float(tp) / denominator if denominator else float(nan_score))
    return reduce(torch.tensor(scores, device=pred.device), reduction)


def iou(pred: torch.Tensor, target: torch.Tensor, num_classes: Optional[int] = None, remove_bg: bool = False,
        reduction: str = "elementwise_mean") -> torch.Tensor:
    """Intersection over union (Jaccard index) per class, 0 for a class absent from both; class 0 left out
    with ``remove_bg``."""
    tps, fps, _, fns, _ = _class_scores(pred, target, num_classes, "iou")
    if remove_bg:
        tps, fps, fns = tps[1:], fps[1:], fns[1:]
    return reduce(torch.nan_to_num(tps / (tps + fps + fns)), reduction)


def _binary(pred: torch.Tensor, target: torch.Tensor, sample_weight: Optional[Sequence], pos_label: int,
            metric: str) -> Tuple[torch.Tensor, torch.Tensor]:
    if sample_weight is not None:
        raise NotImplementedError(f"engine.metrics: `{metric}(sample_weight=...)` is not supported (torchmetrics "
                                  "computes it); weight the samples by repeating them, or leave it out.")
    if pred.ndim > target.ndim:
        pred = pred[:, 0]  # 0.9: the first column of [N, C] scores
    return pred.float(), (target == pos_label).long()
