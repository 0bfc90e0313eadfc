"""torchmetrics, imported when a 0.9 metric that needs it is first computed (never at ``import engine``)."""
from __future__ import annotations

from typing import Any


def torchmetrics_functional(metric: str) -> Any:
    """``torchmetrics.functional``, or an error naming ``metric`` and how to get it."""
    try:
        import torchmetrics.functional as functional
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"engine.metrics: `{metric}` is computed by torchmetrics, which is not installed. "
            "Install it next to your torch (`pip install torchmetrics`), or compute the metric yourself.",
            name="torchmetrics") from exc
    return functional
