"""Lightning 0.9's regression metric modules (``pl.metrics.MSE()``...): each computes its functional metric
(:mod:`hookloop.engine.metrics.functional`) of the batch it is called with."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from hookloop.engine.metrics.classification import _Functional
from hookloop.engine.metrics.functional import regression as F


class MSE(_Functional):
    """Mean squared error of ``(pred, target)``."""

    function = staticmethod(F.mse)

    def __init__(self, reduction: str = "elementwise_mean") -> None:
        super().__init__("mse", dict(reduction=reduction))


class RMSE(_Functional):
    """Root mean squared error of ``(pred, target)``."""

    function = staticmethod(F.rmse)

    def __init__(self, reduction: str = "elementwise_mean") -> None:
        super().__init__("rmse", dict(reduction=reduction))


class MAE(_Functional):
    """Mean absolute error of ``(pred, target)``."""

    function = staticmethod(F.mae)

    def __init__(self, reduction: str = "elementwise_mean") -> None:
        super().__init__("mae", dict(reduction=reduction))


class RMSLE(_Functional):
    """Root mean squared log error of ``(pred, target)``."""

    function = staticmethod(F.rmsle)

    def __init__(self, reduction: str = "elementwise_mean") -> None:
        super().__init__("rmsle", dict(reduction=reduction))


class PSNR(_Functional):
    """Peak signal-to-noise ratio of ``(pred, target)``."""

    function = staticmethod(F.psnr)

    def __init__(self, data_range: Optional[float] = None, base: float = 10, reduction: str = "elementwise_mean",
                 reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__("psnr", dict(data_range=data_range, base=base, reduction=reduction), reduce_group, reduce_op)


class SSIM(_Functional):
    """Structural similarity of images ``(pred, target)`` (torchmetrics computes it)."""

    function = staticmethod(F.ssim)

    def __init__(self, kernel_size: Sequence[int] = (11, 11), sigma: Sequence[float] = (1.5, 1.5),
                 reduction: str = "elementwise_mean", data_range: Optional[float] = None, k1: float = 0.01,
                 k2: float = 0.03) -> None:
        super().__init__("ssim", dict(kernel_size=kernel_size, sigma=sigma, reduction=reduction,
                                      data_range=data_range, k1=k1, k2=k2))
