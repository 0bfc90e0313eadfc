"""Metric bookkeeping behind ``self.log`` and the seed-era ``'log'``/``'progress_bar'`` dicts.

Values stay tensors (detached) until a logger asks for them; nothing here calls ``.item()``.
The metrics plugin decides when step values reach loggers and when epoch values are reduced.
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.metric_objects import as_metric_object, epoch_value, reset_all, step_value

_REDUCE_FX = ("mean", "sum", "max", "min")
#: What ``self.log`` appends to names logged while several evaluation dataloaders run (then the index).
DATALOADER_SUFFIX = "/dataloader_idx_"
#: Other spellings Lightning accepts for ``reduce_fx``, each mapped to one of ``_REDUCE_FX``.
_REDUCE_ALIASES: Dict[Any, str] = {
    "avg": "mean",
    torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min",
    builtins.sum: "sum", builtins.max: "max", builtins.min: "min",
}


#: The hooks running in each loop phase (``trainer.state.phase``), as error messages name them.
PHASE_HOOKS = {
    "train_epoch_start": "on_train_start/on_train_epoch_start",
    "train_batch": "training_step (or a training batch hook)",
    "train_epoch_end": "training_epoch_end/on_train_epoch_end",
    "validate_start": "on_validation_start/on_validation_epoch_start",
    "validate": "validation_step (or a validation batch hook)",
    "validate_epoch_end": "validation_epoch_end/on_validation_epoch_end",
    "test_start": "on_test_start/on_test_epoch_start",
    "test": "test_step (or a test batch hook)",
    "test_epoch_end": "test_epoch_end/on_test_epoch_end",
}
#: Phases of epoch-level hooks: there, as in Lightning's ``_FxValidator``, only ``on_step=False, on_epoch=True``.
EPOCH_LEVEL_PHASES = frozenset(("train_epoch_start", "train_epoch_end", "validate_start", "validate_epoch_end",
                                "test_start", "test_epoch_end"))


def normalize_reduce_fx(name: str, reduce_fx: Any, custom: bool = False) -> Any:
    """``reduce_fx`` as one of ``"mean"``, ``"sum"``, ``"max"``, ``"min"``.

    Accepts those names (any case), ``"avg"``, ``torch.mean/sum/max/min`` and the built-in
    ``sum/max/min``, as Lightning does; anything else raises a ``MisconfigurationException``, except,
    with ``custom=True`` (0.9's Results API), a function of the stacked step values, returned as it is.
    """
    key = reduce_fx.lower() if isinstance(reduce_fx, str) else reduce_fx
    if key in _REDUCE_FX:
        return key
    try:
        return _REDUCE_ALIASES[key]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        if custom and callable(reduce_fx):
            return reduce_fx
        raise MisconfigurationException(
            f"self.log({name!r}, ...): reduce_fx={reduce_fx!r} is not supported; use one of {_REDUCE_FX}, "
            "'avg', torch.mean/torch.sum/torch.max/torch.min or the built-in sum/max/min."
        ) from None


def _batch_size(batch: Any) -> float:
    """The batch size a mean over the epoch weights a value by, as Lightning infers it: the first
    dimension of the first tensor found in the batch (tuples, lists and dicts are searched in
    order); 1 when there is none (outside a batch, or a batch without tensors)."""
    if isinstance(batch, torch.Tensor):
        return float(batch.shape[0]) if batch.ndim else 1.0
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if isinstance(item, (torch.Tensor, Mapping, list, tuple)):
                found = _batch_size(item)
                if isinstance(item, torch.Tensor) or found != 1.0:
                    return found
    return 1.0


@dataclass
class LoggedMetric:
    """One name passed to ``self.log``, with its options and its running epoch reduction."""

    name: str
    prog_bar: bool
    logger: bool
    on_step: bool
    on_epoch: bool
    reduce_fx: Any  # "mean", "sum", "max", "min", or (Results API only) a function
    sync_dist: bool
    total: Optional[torch.Tensor] = None
    weight: float = 0.0
    #: The loop phase it was first logged in this epoch (see :data:`PHASE_HOOKS`).
    phase: str = ""
    #: A torchmetrics ``Metric`` logged as such: it keeps the epoch's state itself (see engine/metric_objects.py).
    metric_object: Any = None
    #: The step values, kept only for a custom ``reduce_fx`` (a function of all of them).
    values: Optional[List[torch.Tensor]] = None

    def accumulate(self, value: torch.Tensor, batch_size: float) -> None:
        """Fold ``value`` (of a batch of ``batch_size``) into the epoch reduction."""
        if self.reduce_fx == "mean":
            value = value * batch_size
            self.total = value if self.total is None else self.total + value
            self.weight += batch_size
        elif not isinstance(self.reduce_fx, str):
            if self.values is None:
                self.values = []
            self.values.append(value)
        elif self.total is None:
            self.total = value.clone()
        elif self.reduce_fx == "sum":
            self.total = self.total + value
        elif self.reduce_fx == "max":
            self.total = torch.maximum(self.total, value)
        else:
            self.total = torch.minimum(self.total, value)

    def compute(self) -> Optional[torch.Tensor]:
        """The epoch's reduced value (a metric object's ``compute()``), or ``None`` if nothing was accumulated."""
        if self.metric_object is not None:
            return epoch_value(self.name, self.metric_object)
        if self.values is not None:
            return torch.as_tensor(self.reduce_fx(torch.stack(self.values)))
        if self.total is None:
            return None
        if self.reduce_fx == "mean":
            return self.total / max(self.weight, 1e-12)
        return self.total


class ResultCollection:
    """What one loop (training, or one validation/test run) logged, and where it goes.

    Step values are written at once into the trainer's metric dicts; epoch values are
    accumulated and written by :meth:`epoch_end`. ``pending_step`` holds logger-bound step
    values (tensors) until the metrics plugin sends them to loggers (training and, for
    ``self.log(..., on_step=True)``, validation and test batches).
    """

    def __init__(self, state: Any, training: bool) -> None:
        self.state = state
        self.training = training
        self.metrics: Dict[str, LoggedMetric] = {}
        self.pending_step: Dict[str, Any] = {}
        self.pending_step_index: Optional[int] = None
        #: Called once, when the first logger-bound step value is kept (the metrics plugin then
        #: starts listening per batch); ``None`` afterwards.
        self.on_first_step_value: Optional[Callable[[], None]] = None
        #: Every value this collection produced in its last epoch, by the name monitors read it under.
        self.produced: Dict[str, Any] = {}
        #: The ``produced`` names ``validate()``/``test()`` return, and the key each is returned under: as
        #: in Lightning, the logger-bound ones (``name_epoch`` when also logged per step), and the
        #: values of a seed-era ``*_epoch_end`` dict.
        self.returned: Dict[str, str] = {}

    def reset(self) -> None:
        """Start a new epoch: forget accumulated epoch values (options are re-read on next log)."""
        self.metrics.clear()
        self.produced.clear()
        self.returned.clear()

    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool = True,
        on_step: Optional[bool] = None,
        on_epoch: Optional[bool] = None,
        reduce_fx: Any = "mean",
        sync_dist: bool = False,
        batch_size: Optional[int] = None,
        hook: str = "",
        enable_graph: bool = False,
        custom_reduce: bool = False,
    ) -> None:
        """Record ``value`` under ``name``; see :meth:`engine.LightningModule.log`.

        ``custom_reduce=True`` also takes a function of the stacked step values as ``reduce_fx``
        (0.9's Results API did).
        """
        state = self.state
        if (on_step or on_epoch is False) and state.phase in EPOCH_LEVEL_PHASES:
            option = "on_step=True" if on_step else "on_epoch=False"
            raise MisconfigurationException(
                f"You can't `self.log({name!r}, ..., {option})` inside `{_hooks_of(state.phase)}`: it runs once per "
                "epoch, so it logs only with on_step=False, on_epoch=True (as in Lightning). Leave the option out, "
                "or log the value from the step."
            )
        if on_step is None or on_epoch is None:
            step_default = self.training and self.state.phase == "train_batch"
            on_step = step_default if on_step is None else on_step
            on_epoch = (not step_default) if on_epoch is None else on_epoch
        if reduce_fx != "mean":  # the default needs no check (this runs for every logged value)
            reduce_fx = normalize_reduce_fx(name, reduce_fx, custom_reduce)
        metric_object = None
        if isinstance(value, torch.Tensor):  # the common case, checked here rather than in a call
            if value.numel() != 1:
                raise _not_scalar(name, value, hook)
            if value.requires_grad and not enable_graph:
                value = value.detach()  # only a value with a graph needs a detached copy
        else:
            metric_object = as_metric_object(name, value)
            if metric_object is None:
                value = _as_tensor(name, value, hook, detach=not enable_graph)
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = LoggedMetric(
                name, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist, phase=state.phase
            )
        elif (metric.on_step != on_step or metric.on_epoch != on_epoch or metric.reduce_fx != reduce_fx
              or metric.prog_bar != prog_bar or metric.logger != logger or metric.sync_dist != sync_dist):
            if metric.phase == state.phase:  # Lightning refuses this within one hook
                raise _options_changed(metric, state.phase, prog_bar=prog_bar, logger=logger, on_step=on_step,
                                       on_epoch=on_epoch, reduce_fx=reduce_fx, sync_dist=sync_dist)
            # Another hook logs the name its own way (a step value in training_step, an epoch value in
            # on_train_epoch_end): Lightning keeps one entry per hook, the later one's value wins; so here.
            metric = self.metrics[name] = LoggedMetric(
                name, prog_bar, logger, on_step, on_epoch, reduce_fx, sync_dist, phase=state.phase
            )
        if metric_object is not None:
            metric.metric_object = metric_object  # its epoch value is its compute(); nothing to accumulate
            value = step_value(name, metric_object, detach=not enable_graph) if on_step else None
            if value is None:
                return
            on_epoch_value = False
        else:
            on_epoch_value = on_epoch
        if on_step:
            key = (f"{name}_step" if state.dataloader_idx is None else suffixed(name, "_step")) if on_epoch else name
            state.callback_metrics[name] = value
            if on_epoch:
                state.callback_metrics[key] = value
            if logger:
                state.logged_metrics[key] = value
                self.pending_step[key] = value
                if self.on_first_step_value is not None:
                    self._first_step_value()
            if prog_bar:
                state.progress_bar_metrics[key] = value
        if on_epoch_value:
            metric.accumulate(value, float(batch_size) if batch_size else _batch_size(state.batch))

    def log_seed_dict(self, output: Mapping[str, Any], hook: str, epoch_end: bool) -> Optional[Dict[str, Any]]:
        """Take a seed-era return dict: ``'log'`` to loggers, ``'progress_bar'`` to the bar, the rest to monitors.

        Returns the logger-bound values of an epoch-end dict (to be sent at once), with an
        optional ``'step'`` key that sets the x-axis; ``None`` for step outputs.
        """
        state = self.state
        for key, value in output.items():
            # Other keys are monitor candidates when they are numbers; anything else (predictions kept for
            # the epoch end, flags, strings) is data the module returned for itself, as in 0.8/0.9.
            if key in ("log", "progress_bar", "hiddens") or not _is_scalar(value):
                continue
            state.callback_metrics[key] = _as_tensor(key, value, hook)
            if epoch_end:
                self.produced[key] = state.callback_metrics[key]
                self.returned[key] = key
        for key, value in (output.get("progress_bar") or {}).items():
            value = state.progress_bar_metrics[key] = _as_tensor(key, value, hook)
            state.callback_metrics[key] = value  # monitors read bar values too, as in 0.8/0.9
            if epoch_end:
                self.produced[key] = value
                self.returned[key] = key
        logs = output.get("log")
        if not logs:
            return None
        if not isinstance(logs, Mapping):
            raise MisconfigurationException(
                f"`{hook}` returned a 'log' entry of type {type(logs).__name__}; it must be a dict of name -> value."
            )
        values = {k: _as_tensor(k, v, hook) for k, v in logs.items() if k != "step"}
        state.logged_metrics.update(values)
        state.callback_metrics.update(values)
        if epoch_end:
            self.produced.update(values)
            self.returned.update((k, k) for k in values)
            if "step" in logs:
                values["step"] = logs["step"]
            return values
        if not self.training:
            return None  # as in 0.8/0.9: a validation/test step's 'log' dict reaches loggers only through epoch end
        self.pending_step.update(values)
        if "step" in logs:
            self.pending_step_index = int(logs["step"])
        if self.on_first_step_value is not None:
            self._first_step_value()
        return None

    def _first_step_value(self) -> None:
        callback, self.on_first_step_value = self.on_first_step_value, None
        callback()

    def epoch_end(self, reduce: Any = None) -> Dict[str, torch.Tensor]:
        """Reduce every ``on_epoch`` value, write it to the trainer's dicts, return the logger-bound ones.

        ``reduce(value, reduce_fx)`` syncs a value across processes (``sync_dist=True``).
        """
        state = self.state
        to_log: Dict[str, torch.Tensor] = {}
        for metric in self.metrics.values():
            if not metric.on_epoch:
                continue
            value = metric.compute()
            if value is None:
                continue
            if metric.sync_dist and reduce is not None and metric.metric_object is None and metric.values is None:
                value = reduce(value, metric.reduce_fx)  # a metric object has synced its own state
            key = suffixed(metric.name, "_epoch") if metric.on_step else metric.name
            state.callback_metrics[metric.name] = value
            state.callback_metrics[key] = value
            self.produced[metric.name] = value
            if metric.logger:
                state.logged_metrics[key] = value
                to_log[key] = value
                self.returned[metric.name] = key
            if metric.prog_bar:
                state.progress_bar_metrics[key] = value
        return to_log

    def reset_metric_objects(self) -> None:
        """``reset()`` every torchmetrics ``Metric`` logged this epoch, once its values are out (as Lightning does)."""
        objects = {m.name: m.metric_object for m in self.metrics.values() if m.metric_object is not None}
        if objects:
            reset_all(objects)

    def take_pending(self) -> Dict[str, Any]:
        """Hand over the logger-bound step values gathered since the last call."""
        pending, self.pending_step = self.pending_step, {}
        return pending


def _hooks_of(phase: str) -> str:
    return PHASE_HOOKS.get(phase, phase or "a hook outside the loop")


def _options_changed(metric: LoggedMetric, phase: str, **now: Any) -> MisconfigurationException:
    """The error for one name logged twice in an epoch with different options (Lightning raises too)."""
    changed = ", ".join(f"{k}={getattr(metric, k)!r} then {k}={v!r}" for k, v in now.items() if getattr(metric, k) != v)
    where = f"twice in `{_hooks_of(phase)}`"
    return MisconfigurationException(
        f"You called `self.log({metric.name!r}, ...)` {where} with different arguments ({changed}). This is not "
        "allowed (as in Lightning): log it with the same arguments each time, or under another name."
    )


def _is_scalar(value: Any) -> bool:
    """A number or a one-element tensor (not a bool): what a seed-era dict's extra keys must be to be monitored."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def suffixed(name: str, suffix: str) -> str:
    """``name`` + ``suffix``, before a ``/dataloader_idx_N`` ending as in Lightning (``loss_epoch/dataloader_idx_1``)."""
    base, marker, index = name.rpartition(DATALOADER_SUFFIX)
    return f"{base}{suffix}{marker}{index}" if marker and index.isdigit() else f"{name}{suffix}"


def _not_scalar(name: str, value: torch.Tensor, hook: str) -> MisconfigurationException:
    return MisconfigurationException(
        f"`{hook or 'self.log'}` logged {name!r} as a tensor of shape {tuple(value.shape)}; "
        "logged values must be scalars (one element). Reduce it first, e.g. with .mean()."
    )


def _as_tensor(name: str, value: Any, hook: str, detach: bool = True) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise _not_scalar(name, value, hook)
        # Only a value with a graph needs a detached copy (``requires_grad`` is cheaper than a copy).
        return value.detach() if detach and value.requires_grad else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if hasattr(value, "item"):
            return torch.tensor(float(value.item()))
        raise MisconfigurationException(
            f"`{hook or 'self.log'}` logged {name!r} as {type(value).__name__}; "
            "logged values must be numbers or one-element tensors."
        )
    return torch.tensor(float(value))


def format_eval_results(stage: str, results: Any) -> str:
    """``validate()``/``test()``'s results as the table Lightning prints: a row per metric, a column
    per dataloader (``""`` when nothing was logged)."""
    names = sorted(set().union(*results)) if results else []
    if not names:
        return ""
    title = "Validate metric" if stage == "validate" else "Test metric"
    columns = [f"DataLoader {i}" for i in range(len(results))]
    name_width = max(len(title), *(len(n) for n in names))
    width = max(14, *(len(c) for c in columns))

    def row(first: str, cells: Any) -> str:
        return "  ".join([first.center(name_width), *(str(c).center(width) for c in cells)])

    rule = "-" * len(row(title, columns))
    lines = [rule, row(title, columns), rule]
    for name in names:
        lines.append(row(name, [f"{r[name]:.6g}" if name in r else "" for r in results]))
    lines.append(rule)
    return "\n".join(lines)

