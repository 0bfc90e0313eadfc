"""Lightning 0.9's metric base classes: ``Metric``, ``TensorMetric``, ``NumpyMetric`` and their decorators.

A 0.9 metric is an ``nn.Module`` whose ``forward`` computes the value of the inputs it is given (there
is no state kept across batches: that came with 1.0's, now torchmetrics', ``update``/``compute``). A
``TensorMetric`` turns its inputs and output into tensors and, under ``torch.distributed``, reduces the
output over the processes; a ``NumpyMetric`` computes on numpy arrays.

Reduction across processes: ``reduce_op`` ``'mean'``/``'avg'`` (the default here), ``'sum'``, ``'max'``,
``'min'`` or a ``torch.distributed.ReduceOp``. (0.9 summed by default, so that an accuracy over two
processes came out near 2; hookloop averages unless told to sum.)
"""
from __future__ import annotations

import functools
import numbers
import sys
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import nn

from hookloop.engine.apply import apply_to_tensors


class Metric(nn.Module, ABC):
    """Base of 0.9's metrics: a module with a ``name`` whose ``forward`` computes the metric."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    @abstractmethod
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the metric of the given inputs."""


class _Converting(Metric):
    """A metric whose inputs are converted with ``_input`` and whose output is made tensors and reduced
    across processes with ``reduce_op`` over ``reduce_group``."""

    _input: Callable[[Any], Any] = staticmethod(lambda value: value)

    def __init__(self, name: str, reduce_group: Any = None, reduce_op: Any = None) -> None:
        super().__init__(name)
        self.reduce_group = reduce_group
        self.reduce_op = reduce_op

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _converted(super().__call__, type(self)._input, self.reduce_group, self.reduce_op)(*args, **kwargs)


class TensorMetric(_Converting):
    """A metric of tensors: numbers and arrays among the inputs become tensors, the output a tensor reduced
    across processes with ``reduce_op`` over ``reduce_group``."""

    _input = staticmethod(lambda value: _to_tensor(value))


class NumpyMetric(_Converting):
    """A metric computed on numpy arrays: tensors among the inputs become arrays, the output tensors
    (reduced across processes as a :class:`TensorMetric`'s)."""

    _input = staticmethod(lambda value: _to_numpy(value))


def tensor_metric(group: Any = None, reduce_op: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a metric function as a :class:`TensorMetric`'s ``forward`` is treated (0.9's converter)."""
    return lambda function: functools.wraps(function)(_converted(function, _to_tensor, group, reduce_op))


def numpy_metric(group: Any = None, reduce_op: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a numpy metric function as a :class:`NumpyMetric`'s ``forward`` is treated (0.9's converter)."""
    return lambda function: functools.wraps(function)(_converted(function, _to_numpy, group, reduce_op))


def _converted(function: Callable[..., Any], to_input: Callable[[Any], Any], group: Any,
               reduce_op: Any) -> Callable[..., Any]:
    """``function`` with its inputs converted by ``to_input`` and its output tensors reduced across processes."""
    def call(*args: Any, **kwargs: Any) -> Any:
        output = function(*(to_input(a) for a in args), **{k: to_input(v) for k, v in kwargs.items()})
        return apply_to_tensors(_to_tensor(output), lambda t: sync_across_processes(t, group, reduce_op))
    return call


def sync_across_processes(value: torch.Tensor, group: Any = None, reduce_op: Any = None) -> torch.Tensor:
    """``value`` reduced over the processes of ``group`` (``value`` itself outside ``torch.distributed``)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    op = "mean" if reduce_op is None else reduce_op
    mean = isinstance(op, str) and op.lower() in ("mean", "avg")
    if isinstance(op, str):
        op = torch.distributed.ReduceOp.SUM if mean else getattr(torch.distributed.ReduceOp, op.upper())
    result = value.clone().float() if mean else value.clone()
    torch.distributed.all_reduce(result, op=op, group=group)
    return result / torch.distributed.get_world_size(group) if mean else result


def _to_tensor(value: Any) -> Any:
    numpy = sys.modules.get("numpy")  # an array can only come from an imported numpy
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return torch.as_tensor(value)
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return torch.tensor(value)
    return value


def _to_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
