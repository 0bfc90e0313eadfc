"""torchmetrics ``Metric`` objects passed to ``self.log`` / ``self.log_dict``, as Lightning 2.x takes them.

torchmetrics is optional and never imported here: a module that builds a ``Metric`` has imported
torchmetrics already, so a value can only be one when ``torchmetrics`` is in ``sys.modules``. A run
that logs plain tensors pays nothing for this file.

What Lightning does, and so what the results bookkeeping does with such an object:

* the step value (``on_step=True``) is what the metric's ``forward`` returned for the batch; a metric
  only ``update``-d gives its current value (``compute()`` over what it has seen so far);
* the epoch value (``on_epoch=True``) is ``metric.compute()`` at the epoch's end, and the metric is
  ``reset()`` once the epoch's values are out;
* ``sync_dist`` and ``reduce_fx`` do not apply: the metric syncs and reduces its own state.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Iterable, Optional, Tuple

import torch

from hookloop.engine.errors import MisconfigurationException


def as_metric_object(name: str, value: Any) -> Any:
    """``value`` if it is a torchmetrics ``Metric``, else ``None`` (a ``MetricCollection`` is an error)."""
    torchmetrics = sys.modules.get("torchmetrics")
    if torchmetrics is None:
        return None
    if isinstance(value, torchmetrics.Metric):
        return value
    if isinstance(value, torchmetrics.MetricCollection):
        raise MisconfigurationException(
            f"self.log({name!r}, <MetricCollection>): a MetricCollection holds several metrics; log it with "
            "self.log_dict(collection), which logs each under its (prefixed) name.")
    return None


def dictionary_items(dictionary: Any) -> Iterable[Tuple[str, Any]]:
    """What ``self.log_dict`` logs: a mapping's items, or a ``MetricCollection``'s metrics by their prefixed names."""
    torchmetrics = sys.modules.get("torchmetrics")
    if torchmetrics is not None and isinstance(dictionary, torchmetrics.MetricCollection):
        # Prefixed names (keep_base=False); shared state by reference, as Lightning reads them (no copies per call).
        return dictionary.items(keep_base=False, copy_state=False)
    if not callable(getattr(dictionary, "items", None)):
        raise MisconfigurationException(
            f"self.log_dict() takes a dict of name -> value or a torchmetrics MetricCollection, "
            f"got {type(dictionary).__name__}.")
    return dictionary.items()


def step_value(name: str, metric: Any, detach: bool = True) -> Optional[torch.Tensor]:
    """The metric's value for this step: ``forward``'s result, else its current value (``None`` before any update)."""
    value = metric._forward_cache  # what forward() returned last; torchmetrics has no public name for it
    if value is None:
        if not metric.update_called:
            return None
        value = metric.compute()
    return _scalar(name, metric, value, detach)


def epoch_value(name: str, metric: Any) -> Optional[torch.Tensor]:
    """``metric.compute()`` as the epoch's value (``None`` if the metric saw no update this epoch)."""
    if not metric.update_called:
        return None
    return _scalar(name, metric, metric.compute(), detach=True)


def reset_all(metrics: Dict[str, Any]) -> None:
    """``reset()`` every distinct metric object among ``metrics``' values (once each)."""
    seen = set()
    for metric in metrics.values():
        if id(metric) not in seen:
            seen.add(id(metric))
            metric.reset()


def _scalar(name: str, metric: Any, value: Any, detach: bool) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise MisconfigurationException(
            f"self.log({name!r}, {type(metric).__name__}): the metric's value is {shape}, but logged values "
            "must be scalars. Log a scalar metric, or compute this one yourself and log its parts.")
    return value.detach() if detach and value.requires_grad else value
