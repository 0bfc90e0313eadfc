"""Lightning 0.9's ``SklearnMetric``: any ``sklearn.metrics`` function as a metric module."""
from __future__ import annotations

import importlib
from typing import Any

from hookloop.engine.metrics.metric import NumpyMetric


class SklearnMetric(NumpyMetric):
    """``sklearn.metrics.<metric_name>(*inputs, **kwargs)`` on numpy copies of the inputs, as a tensor.

    scikit-learn is imported when the metric is built (an error saying how to install it otherwise).
    """

    def __init__(self, metric_name: str, reduce_group: Any = None, reduce_op: Any = None, **kwargs: Any) -> None:
        super().__init__(metric_name, reduce_group=reduce_group, reduce_op=reduce_op)
        try:
            metrics = importlib.import_module("sklearn.metrics")
        except ImportError as exc:
            raise ModuleNotFoundError(f"engine.metrics.SklearnMetric({metric_name!r}) needs scikit-learn: "
                                      "`pip install scikit-learn`.", name="sklearn") from exc
        self.metric_fn = getattr(metrics, metric_name)
        self.metric_kwargs = kwargs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The scikit-learn metric of the (numpy) inputs."""
        return self.metric_fn(*args, **kwargs, **self.metric_kwargs)
