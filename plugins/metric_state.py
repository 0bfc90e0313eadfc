"""The running state of a module's torchmetrics objects, for mid-epoch checkpoints.

A torchmetrics ``Metric`` keeps what it has counted so far this epoch (``tp``/``fp``, a running
mean, the values to concatenate) in states that are left out of ``state_dict()`` unless declared
persistent. A run killed mid-epoch and resumed would compute its epoch value from the resumed
batches alone; saving those states with the loop position makes the epoch's value the one an
uninterrupted run computes. Metrics are recognised by their interface (``metric_state``), so
torchmetrics is not imported here.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn


def _metrics(module: nn.Module) -> Dict[str, Any]:
    """Every torchmetrics ``Metric`` among ``module``'s submodules, by its path in the module."""
    return {path: sub for path, sub in module.named_modules()
            if path and isinstance(getattr(type(sub), "metric_state", None), property)}


def module_metric_states(module: nn.Module) -> Dict[str, Dict[str, Any]]:
    """``{path: {"states": {name: tensor or list of tensors}, "update_count": n}}`` of every metric in ``module``
    that has been updated since its last reset (detached copies, on the CPU)."""
    saved = {}
    for path, metric in _metrics(module).items():
        count = int(getattr(metric, "_update_count", 0))
        if not count:
            continue
        states = {name: ([v.detach().cpu().clone() for v in value] if isinstance(value, list)
                         else value.detach().cpu().clone())
                  for name, value in metric.metric_state.items()}
        saved[path] = {"states": states, "update_count": count}
    return saved


def restore_module_metric_states(module: nn.Module, saved: Dict[str, Dict[str, Any]]) -> None:
    """Put the states :func:`module_metric_states` saved back into ``module``'s metrics, on their devices.

    A path the module no longer has is skipped: the metric starts the epoch's remaining batches empty.
    """
    metrics = _metrics(module)
    for path, entry in saved.items():
        metric = metrics.get(path)
        if metric is None:
            continue
        device = getattr(metric, "device", torch.device("cpu"))
        for name, value in entry["states"].items():
            setattr(metric, name, [v.to(device) for v in value] if isinstance(value, list) else value.to(device))
        metric._update_count = entry["update_count"]  # compute() warns when it thinks nothing was updated
        metric._computed = None  # a cached value predates the restored state
