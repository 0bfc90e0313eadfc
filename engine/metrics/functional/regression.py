"""Lightning 0.9's functional regression metrics (``pytorch_lightning.metrics.functional``), 0.9's signatures.

``reduction`` reduces the per-element errors: ``'elementwise_mean'`` (default), ``'sum'`` or ``'none'``.
The element-wise ones are plain torch; ``ssim`` is torchmetrics' (imported on first use).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from hookloop.engine.metrics.functional._backend import torchmetrics_functional
from hookloop.engine.metrics.functional.classification import reduce


def mse(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """Mean squared error."""
    return reduce((pred.float() - target.float()) ** 2, reduction)


def rmse(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """Root mean squared error (the root of :func:`mse`)."""
    return torch.sqrt(mse(pred, target, reduction))


def mae(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """Mean absolute error."""
    return reduce((pred.float() - target.float()).abs(), reduction)


def rmsle(pred: torch.Tensor, target: torch.Tensor, reduction: str = "elementwise_mean") -> torch.Tensor:
    """Root mean squared log error: :func:`rmse` of ``log(1 + x)``."""
    return rmse(torch.log1p(pred.float()), torch.log1p(target.float()), reduction)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: Optional[float] = None, base: float = 10.0,
         reduction: str = "elementwise_mean") -> torch.Tensor:
    """Peak signal-to-noise ratio, ``10 * log_base(data_range² / mse)`` (``data_range``: the target's range)."""
    if data_range is None:
        data_range = float(target.max() - target.min())
    error = mse(pred, target, reduction)
    return 10.0 * torch.log(torch.as_tensor(data_range, dtype=error.dtype) ** 2 / error) / math.log(base)


def ssim(pred: torch.Tensor, target: torch.Tensor, kernel_size: Sequence[int] = (11, 11),
         sigma: Sequence[float] = (1.5, 1.5), reduction: str = "elementwise_mean", data_range: Optional[float] = None,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity of images ``[N, C, H, W]`` with a Gaussian window."""
    functional = torchmetrics_functional("ssim")
    return functional.image.structural_similarity_index_measure(
        pred.float(), target.float(), gaussian_kernel=True, sigma=tuple(sigma), kernel_size=tuple(kernel_size),
        reduction=reduction, data_range=data_range, k1=k1, k2=k2)
