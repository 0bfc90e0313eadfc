"""What the trainer does with 0.9's ``TrainResult``/``EvalResult`` (:mod:`hookloop.engine.step_result`).

Called by the model-hooks plugin when a step returns a result and by the module adapter around the
seed-era ``*_epoch_end``; nothing here runs for a module that does not use the Results API.

* A step's logged values go where ``self.log`` sends them (the trainer's result collections): per step
  to loggers and the bar, per epoch reduced with their ``reduce_fx`` (``torch.mean`` weighted by batch
  size). When the module defines the ``*_epoch_end``, the epoch values are its to produce, as in 0.9:
  the steps' results reach it gathered into one (:meth:`Result.gather`), and what it returns is logged.
* ``checkpoint_on``/``early_stop_on``: a training step's go to ``trainer.callback_metrics`` as
  ``checkpoint_on``/``early_stop_on`` (the step's value, then the epoch's mean); a validation run's as
  ``val_checkpoint_on``/``val_early_stop_on`` (the mean of its steps, or what ``validation_epoch_end``
  returned). The default checkpoint and early stopping monitor them when present, as 0.9's did.
* ``EvalResult.write`` predictions of ``test_step`` are written when the test run ends
  (:class:`PredictionWriter`, registered at the first one).
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, List

import torch

from hookloop.engine import hookimpl
from hookloop.engine.apply import detach_all
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.results import DATALOADER_SUFFIX
from hookloop.engine.step_result import EvalResult, Result, TrainResult, add_prediction_column

#: ``trainer.callback_metrics`` names of the monitored values of a training step / a validation run.
TRAIN_MONITORS = {"checkpoint_on": "checkpoint_on", "early_stop_on": "early_stop_on"}
EVAL_MONITORS = {"checkpoint_on": "val_checkpoint_on", "early_stop_on": "val_early_stop_on"}
_EPOCH_END = {"train": "training_epoch_end", "validate": "validation_epoch_end", "test": "test_epoch_end"}


def take_training_result(trainer: Any, result: Result) -> None:
    """``training_step`` returned a result: log it, and keep its monitored values."""
    trainer.state.seed_era = True  # the Results API is 0.9's alone (LoopState.seed_era)
    if not isinstance(result, TrainResult):
        raise MisconfigurationException(
            f"`training_step` returned an {type(result).__name__}; return a TrainResult(minimize=loss) "
            "(an EvalResult is for validation_step and test_step).")
    results = trainer.train_results
    _log_step_values(trainer, results, result, "training_step", _defines(trainer, "train"))
    for key, name in TRAIN_MONITORS.items():
        value = result.get(key)
        if value is not None:
            trainer.state.callback_metrics[name] = value  # the step's value until the epoch's mean replaces it
            results.log(name, value, logger=False, on_step=False, on_epoch=True, batch_size=1, hook="training_step")


def take_eval_result(trainer: Any, result: Any, stage: str) -> None:
    """``validation_step``/``test_step`` returned a result: log it, keep its monitored values and predictions."""
    trainer.state.seed_era = True  # the Results API is 0.9's alone (LoopState.seed_era)
    hook = "validation_step" if stage == "validate" else "test_step"
    if not isinstance(result, EvalResult):
        raise MisconfigurationException(
            f"`{hook}` returned a {type(result).__name__}; return an EvalResult (or a dict) from it, "
            "as in 0.9 (a TrainResult is for training_step).")
    if stage == "test" and "predictions" in result:
        _writer(trainer).add(dict.pop(result, "predictions"))
    epoch_end_defined = _defines(trainer, stage)
    _log_step_values(trainer, trainer.eval_results, result, hook, epoch_end_defined)
    if stage == "validate" and not epoch_end_defined:  # 0.9: the run's mean of every step's value
        for key, name in EVAL_MONITORS.items():
            value = result.get(key)
            if value is not None:
                trainer.eval_results.log(_suffixed(trainer, name), value, logger=False, on_step=False,
                                         on_epoch=True, batch_size=1, hook=hook)


def take_epoch_result(trainer: Any, result: Result, hook: str, results: Any) -> None:
    """A ``*_epoch_end`` returned a result: its values are the epoch's (a gathered one's reduced with their
    ``reduce_fx``), and a validation's ``checkpoint_on``/``early_stop_on`` the run's monitored values."""
    trainer.state.seed_era = True  # the Results API is 0.9's alone (LoopState.seed_era)
    for name, options in result.meta.items():
        if options["forked"] == "step" or name not in result:
            continue  # the per-step half of a name logged both ways has no epoch value
        value = _reduced(result[name], options["reduce_fx"])
        results.log(name, value, prog_bar=options["prog_bar"], logger=options["logger"], on_step=False,
                    on_epoch=True, sync_dist=options["sync_dist"], batch_size=1, hook=hook)
    if hook == "validation_epoch_end":
        for key, name in EVAL_MONITORS.items():
            value = result.get(key)
            if value is not None:
                results.log(name, _reduced(value, torch.mean), logger=False, on_step=False, on_epoch=True,
                            batch_size=1, hook=hook)


def gathered(outputs: List[Any]) -> Any:
    """A ``*_epoch_end``'s outputs as 0.9 handed them over: a list of results becomes one gathered result
    (per optimizer, when each batch gave a list of them); other outputs are returned as they are."""
    if not outputs:
        return outputs
    first = outputs[0]
    if isinstance(first, Result):
        return _gathered_of(outputs)
    if isinstance(first, list) and first and isinstance(first[0], Result):
        return [_gathered_of(list(per_optimizer)) for per_optimizer in zip(*outputs)]
    return outputs


def kept(outputs: Any) -> Any:
    """A batch's outputs as kept for the epoch's end: detached (a result stays a result)."""
    if isinstance(outputs, Result):
        return copy.copy(outputs)  # Result.__copy__ detaches
    if isinstance(outputs, list) and any(isinstance(o, Result) for o in outputs):
        return [kept(o) for o in outputs]
    return detach_all(outputs)


def _gathered_of(outputs: List[Result]) -> Result:
    result = type(outputs[0]).gather(outputs)
    if isinstance(result, EvalResult):  # 0.9: a validation's monitored values reach the epoch end averaged
        for key in EVAL_MONITORS:
            if isinstance(result.get(key), torch.Tensor):
                dict.__setitem__(result, key, result[key].float().mean())
    return result


def _log_step_values(trainer: Any, results: Any, result: Result, hook: str, epoch_end_defined: bool) -> None:
    for name, options in result.meta.items():
        if name not in result:
            continue
        on_epoch = options["on_epoch"] and not epoch_end_defined  # else the module's epoch end reduces
        if not (options["on_step"] or on_epoch):
            continue
        results.log(_suffixed(trainer, name), result[name], prog_bar=options["prog_bar"], logger=options["logger"],
                    on_step=options["on_step"], on_epoch=on_epoch, reduce_fx=options["reduce_fx"],
                    sync_dist=options["sync_dist"], hook=hook, enable_graph=options["enable_graph"],
                    custom_reduce=True)


def _reduced(value: Any, reduce_fx: Any) -> Any:
    """A gathered (several-element) value reduced as its name asked; a scalar as it is."""
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        return reduce_fx(value.float() if not value.is_floating_point() else value)
    if isinstance(value, list) and value and all(isinstance(v, (int, float, torch.Tensor)) for v in value):
        return reduce_fx(torch.as_tensor([float(v) for v in value]))
    return value


def _suffixed(trainer: Any, name: str) -> str:
    """``name/dataloader_idx_N`` while one of several evaluation dataloaders runs (as ``self.log`` names it)."""
    idx = trainer.state.dataloader_idx
    return name if idx is None else f"{name}{DATALOADER_SUFFIX}{idx}"


def _defines(trainer: Any, stage: str) -> bool:
    from hookloop.plugins.module_adapter import overrides_hook

    return overrides_hook(trainer.lightning_module, _EPOCH_END[stage])


def _writer(trainer: Any) -> "PredictionWriter":
    writer = trainer.registry.get_plugin(PredictionWriter.NAME)
    if writer is None:
        writer = PredictionWriter()
        trainer.registry.add(writer, PredictionWriter.NAME, "builtin",
                             origin="built-in (added at the first EvalResult.write of a test run)")
    return writer


class PredictionWriter:
    """Built-in ``eval_result_predictions``: writes what ``test_step``'s ``EvalResult.write`` collected.

    At the end of each test run, every file named in a ``write`` gets a ``torch.save``-d list with one
    dict (column -> value) per sample, as Lightning 0.9 wrote them; with several processes each writes its
    own ``<stem>_rank_N<suffix>``. Columns of different lengths are an error naming the file.
    """

    NAME = "eval_result_predictions"

    def __init__(self) -> None:
        #: filename -> column -> values (a tensor or a list).
        self.predictions: Dict[str, Dict[str, Any]] = {}

    def add(self, predictions: Dict[str, Dict[str, Any]]) -> None:
        """Append one step's ``{filename: {column: values}}``."""
        for filename, columns in predictions.items():
            for name, values in columns.items():
                add_prediction_column(self.predictions, filename, name, values)

    @hookimpl
    def on_test_start(self) -> None:
        """A test run collects its own predictions."""
        self.predictions = {}

    @hookimpl
    def on_test_epoch_end(self, trainer: Any) -> None:
        """Write every file of the run's predictions."""
        predictions, self.predictions = self.predictions, {}
        for filename, columns in predictions.items():
            rows = _rows(filename, columns)
            path = os.path.abspath(filename)
            if trainer.world_size > 1:
                stem, suffix = os.path.splitext(path)
                path = f"{stem}_rank_{trainer.global_rank}{suffix}"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.save(rows, path)


def _rows(filename: str, columns: Dict[str, Any]) -> List[Dict[str, Any]]:
    values = {name: v.tolist() if isinstance(v, torch.Tensor) else list(v) for name, v in columns.items()}
    lengths = {name: len(v) for name, v in values.items()}
    if len(set(lengths.values())) > 1:
        raise MisconfigurationException(
            f"EvalResult.write(..., filename={filename!r}): its columns have different lengths {lengths}; "
            "write one value per sample to every column.")
    return [dict(zip(values, row)) for row in zip(*values.values())]
