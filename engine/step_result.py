"""Lightning 0.9's Results API: ``TrainResult`` and ``EvalResult`` (``from engine import TrainResult, EvalResult``).

A step returns one instead of a dict::

    def training_step(self, batch, batch_idx):
        loss = ...
        result = TrainResult(minimize=loss)          # checkpoint_on defaults to the loss
        result.log('train_loss', loss, prog_bar=True)
        return result

    def validation_step(self, batch, batch_idx):
        loss = ...
        result = EvalResult(checkpoint_on=loss, early_stop_on=loss)
        result.log('val_loss', loss)                 # an EvalResult logs the epoch's mean by default
        return result

A result is a dict of what was logged (and ``minimize``, ``checkpoint_on``, ``early_stop_on``), with each
key also an attribute (``result.val_loss``; a missing one is ``None``), plus the logging options of each
name in :attr:`Result.meta`. This file is data only; what the trainer does with a returned result (send
its values where ``self.log`` would, collect them for ``*_epoch_end``, feed the checkpoint and early
stopping) is the built-in ``plugins/step_results.py``.

As in 0.9.0: a name logged with both ``on_step`` and ``on_epoch`` becomes ``step_<name>`` and
``epoch_<name>`` (``result['<name>']`` finds ``step_<name>``); ``TrainResult.log`` defaults to
``on_step=True, on_epoch=False`` but ``TrainResult.log_dict`` to ``on_step=False, on_epoch=True``.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch

from hookloop.engine.errors import MisconfigurationException

#: The keys a result reserves for the loop (never logged by name).
RESERVED = ("minimize", "checkpoint_on", "early_stop_on", "hiddens")


class Result(dict):
    """What a step returned: logged values by name, the loop's reserved keys, and :attr:`meta`."""

    #: ``log()``'s defaults for this kind of result.
    _STEP_DEFAULT, _EPOCH_DEFAULT = False, True

    def __init__(self, minimize: Optional[torch.Tensor] = None, early_stop_on: Optional[torch.Tensor] = None,
                 checkpoint_on: Any = None, hiddens: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        #: name -> its logging options (``prog_bar``, ``logger``, ``on_step``, ``on_epoch``, ``reduce_fx``,
        #: ``sync_dist``, ``enable_graph``, and ``forked``: ``'step'``/``'epoch'`` for the two halves of a
        #: name logged both per step and per epoch).
        object.__setattr__(self, "meta", {})
        if minimize is not None:
            if not isinstance(minimize, torch.Tensor) or minimize.grad_fn is None:
                raise MisconfigurationException(
                    f"{type(self).__name__}(minimize=...) must be the loss tensor with its graph (computed from "
                    f"the parameters, in training_step); got {_describe(minimize)}.")
            self["minimize"] = minimize
        if early_stop_on is not None:
            self.early_stop_on = early_stop_on
        if checkpoint_on is not None and checkpoint_on is not False:
            self.checkpoint_on = checkpoint_on
        elif minimize is not None and checkpoint_on is None:
            self.checkpoint_on = minimize.detach()  # 0.9: checkpoint on the loss unless told otherwise
        if hiddens is not None:
            self.hiddens = hiddens

    # ---- dict and attribute access (0.9's) -------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            if isinstance(key, str) and f"step_{key}" in self:
                return super().__getitem__(f"step_{key}")  # a name logged per step and per epoch
            raise

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)  # copy/pickle look up special methods; they are not keys
        return self.get(key)

    def __setattr__(self, key: str, value: Any) -> None:
        if key in ("checkpoint_on", "early_stop_on") and not isinstance(value, torch.Tensor):
            raise MisconfigurationException(
                f"{type(self).__name__}({key}=...) must be a tensor (the metric to monitor); got {_describe(value)}.")
        if isinstance(value, torch.Tensor) and key != "minimize":
            value = value.detach()
        self[key] = value

    def __copy__(self) -> "Result":
        """A detached copy (what is kept for ``*_epoch_end``): the same values and options, no graph."""
        new = type(self).__new__(type(self))
        dict.__init__(new, {k: v.detach() if isinstance(v, torch.Tensor) else copy.copy(v) for k, v in self.items()})
        object.__setattr__(new, "meta", copy.deepcopy(self.meta))
        return new

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), dict(self), self.meta)

    # ---- logging -------------------------------------------------------------------------------
    def log(self, name: str, value: Any, prog_bar: bool = False, logger: bool = True,
            on_step: Optional[bool] = None, on_epoch: Optional[bool] = None, reduce_fx: Callable = torch.mean,
            tbptt_reduce_fx: Callable = torch.mean, tbptt_pad_token: int = 0, enable_graph: bool = False,
            sync_dist: bool = False, sync_dist_op: Any = "mean", sync_dist_group: Any = None) -> None:
        """Log ``value`` under ``name``: to loggers (``logger``), the progress bar (``prog_bar``), per step
        (``on_step``) and/or as the epoch's reduction (``on_epoch``, reduced with ``reduce_fx``: ``torch.mean``
        weighted by batch size, ``torch.sum``/``max``/``min``, or any function of the stacked step values).

        ``sync_dist=True`` reduces the epoch value across processes; ``sync_dist_op``, ``sync_dist_group``
        and the truncated-backprop options are accepted for 0.9 code and not used.
        """
        if name in RESERVED:
            raise MisconfigurationException(
                f"{type(self).__name__}.log({name!r}, ...): {name!r} is reserved; pass it to the constructor.")
        on_step = self._STEP_DEFAULT if on_step is None else on_step
        on_epoch = self._EPOCH_DEFAULT if on_epoch is None else on_epoch
        if isinstance(value, torch.Tensor) and not enable_graph:
            value = value.detach()
        options = dict(prog_bar=prog_bar, logger=logger, reduce_fx=reduce_fx, sync_dist=sync_dist,
                       enable_graph=enable_graph)
        if on_step and on_epoch:  # 0.9.0 splits the name in two, one logged per step, one per epoch
            self._set(f"step_{name}", value, dict(options, on_step=True, on_epoch=False, forked="step"))
            self._set(f"epoch_{name}", value, dict(options, on_step=False, on_epoch=True, forked="epoch"))
        else:
            self._set(name, value, dict(options, on_step=on_step, on_epoch=on_epoch, forked=None))

    def log_dict(self, dictionary: Mapping[str, Any], prog_bar: bool = False, logger: bool = True,
                 on_step: bool = False, on_epoch: bool = True, reduce_fx: Callable = torch.mean,
                 tbptt_reduce_fx: Callable = torch.mean, tbptt_pad_token: int = 0, enable_graph: bool = False,
                 sync_dist: bool = False, sync_dist_op: Any = "mean", sync_dist_group: Any = None) -> None:
        """:meth:`log` every item of ``dictionary`` with the same options (0.9.0's defaults: per epoch)."""
        for name, value in dictionary.items():
            self.log(name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                     reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist)

    def _set(self, name: str, value: Any, options: Dict[str, Any]) -> None:
        self[name] = value
        self.meta[name] = options

    def rename_keys(self, map_dict: Mapping[str, str]) -> None:
        """Rename keys (``{'old': 'new'}``), their logging options with them."""
        for source, dest in map_dict.items():
            self[dest] = dict.pop(self, source)
            if source in self.meta:
                self.meta[dest] = self.meta.pop(source)

    # ---- what 0.9 offered to read back ---------------------------------------------------------
    @property
    def callback_metrics(self) -> Dict[str, Any]:
        """The monitored values, as the checkpoint and early stopping read them."""
        return {"early_stop_on": self.get("early_stop_on"), "checkpoint_on": self.get("checkpoint_on")}

    @property
    def batch_log_metrics(self) -> Dict[str, Any]:
        """Values logged per step to loggers."""
        return self._select("logger", "on_step")

    @property
    def batch_pbar_metrics(self) -> Dict[str, Any]:
        """Values logged per step to the progress bar."""
        return self._select("prog_bar", "on_step")

    @property
    def epoch_log_metrics(self) -> Dict[str, Any]:
        """Values logged per epoch to loggers."""
        return self._select("logger", "on_epoch")

    @property
    def epoch_pbar_metrics(self) -> Dict[str, Any]:
        """Values logged per epoch to the progress bar."""
        return self._select("prog_bar", "on_epoch")

    def _select(self, where: str, when: str) -> Dict[str, Any]:
        return {k: self[k] for k, o in self.meta.items() if o[where] and o[when] and k in self}

    def detach(self) -> None:
        """Detach every tensor value in place."""
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                dict.__setitem__(self, key, value.detach())

    def cpu(self) -> None:
        """Move every tensor value to the CPU in place."""
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                dict.__setitem__(self, key, value.cpu())

    @classmethod
    def gather(cls, outputs: Sequence["Result"]) -> "Result":
        """One result of ``outputs``' values per key: tensors stacked (scalars) or concatenated, other values
        listed; nested dicts gathered key by key. The options are the first output's. This is what a
        ``*_epoch_end(outputs)`` gets when the steps returned results."""
        gathered = cls.__new__(cls)
        dict.__init__(gathered, _gather_dicts(list(outputs)))
        meta: Dict[str, Any] = {}
        for output in outputs:
            for name, options in getattr(output, "meta", {}).items():
                meta.setdefault(name, options)
        object.__setattr__(gathered, "meta", meta)
        return gathered


class TrainResult(Result):
    """What ``training_step`` returns in 0.9's Results API.

    Args:
        minimize: The loss to optimize (with its graph).
        early_stop_on: A metric for the default early stopping, averaged over the epoch's steps.
        checkpoint_on: A metric for the default checkpoint, averaged over the epoch's steps (default:
            the loss; ``False``: none).
        hiddens: Truncated backprop's hidden state (kept detached).
    """

    _STEP_DEFAULT, _EPOCH_DEFAULT = True, False


class EvalResult(Result):
    """What ``validation_step``/``test_step`` returns in 0.9's Results API.

    Args:
        early_stop_on: A metric for the default early stopping (the epoch's mean; ``val_early_stop_on``).
        checkpoint_on: A metric for the default checkpoint (the epoch's mean; ``val_checkpoint_on``).
        hiddens: Kept detached.
    """

    def __init__(self, early_stop_on: Optional[torch.Tensor] = None, checkpoint_on: Optional[torch.Tensor] = None,
                 hiddens: Optional[torch.Tensor] = None) -> None:
        super().__init__(None, early_stop_on, checkpoint_on, hiddens)

    @property
    def callback_metrics(self) -> Dict[str, Any]:
        """The monitored values under the names validation gives them."""
        return {"val_early_stop_on": self.get("early_stop_on"), "val_checkpoint_on": self.get("checkpoint_on")}

    def write(self, name: str, values: Any, filename: str = "predictions.pt") -> None:
        """Add a column ``name`` of per-sample ``values`` (a tensor or a list) to the predictions that
        ``trainer.test()`` writes to ``filename`` at the end of the run: a ``torch.save``-d list with one
        dict (column -> value) per sample, ``<stem>_rank_N<suffix>`` per process when there are several."""
        if not isinstance(name, str) or not isinstance(filename, str):
            raise MisconfigurationException(
                f"EvalResult.write(name, values, filename): name and filename must be strings, got "
                f"{type(name).__name__} and {type(filename).__name__}.")
        add_prediction_column(self.setdefault("predictions", {}), filename, name, values)

    def write_dict(self, predictions_dict: Mapping[str, Any], filename: str = "predictions.pt") -> None:
        """:meth:`write` every column of ``predictions_dict`` to ``filename``."""
        for name, values in predictions_dict.items():
            self.write(name, values, filename)


def add_prediction_column(predictions: Dict[str, Dict[str, Any]], filename: str, name: str, values: Any) -> None:
    """Append ``values`` to column ``name`` of ``filename`` in ``predictions`` (tensors concatenated, lists extended)."""
    if isinstance(values, torch.Tensor):
        values = values.detach()
    columns = predictions.setdefault(filename, {})
    if name not in columns:
        columns[name] = values if isinstance(values, torch.Tensor) else list(values)
    elif isinstance(values, torch.Tensor) and isinstance(columns[name], torch.Tensor):
        columns[name] = torch.cat((columns[name], values.reshape(-1, *columns[name].shape[1:])))
    else:
        columns[name] = list(_as_list(columns[name])) + list(_as_list(values))


def collate(values: List[Any]) -> Any:
    """Tensors of one key across steps: scalars stacked, same-shaped tensors concatenated; anything else listed."""
    if not values or not all(isinstance(v, torch.Tensor) for v in values):
        return values
    if all(v.ndim == 0 for v in values):
        return torch.stack(values)
    if all(v.ndim >= 1 and v.shape[1:] == values[0].shape[1:] for v in values):
        return torch.cat(values)
    return values


def _gather_dicts(outputs: List[Mapping[str, Any]]) -> Dict[str, Any]:
    keys: Dict[str, List[Any]] = {}
    for output in outputs:
        for key, value in output.items():
            keys.setdefault(key, []).append(value)
    return {key: _gather_dicts(values) if all(isinstance(v, Mapping) for v in values) else collate(values)
            for key, values in keys.items()}


def _as_list(values: Any) -> List[Any]:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


def _rebuild(cls: type, items: Dict[str, Any], meta: Dict[str, Any]) -> Result:
    result = cls.__new__(cls)
    dict.__init__(result, items)
    object.__setattr__(result, "meta", meta)
    return result


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor without a graph (shape {tuple(value.shape)})" if value.grad_fn is None else "a tensor"
    return type(value).__name__
