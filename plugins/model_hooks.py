"""Calls the LightningModule's (and datamodule's) own hooks: steps, dataloaders, epoch-end aggregation.

Two plugin objects live here:

* :class:`ModelHooksPlugin` (built-in ``model_hooks``) implements the behaviour hooks that
  need the module: ``training_step``, ``evaluation_step``, ``get_dataloader``,
  ``module_plugin``, and the data hooks ``prepare_data``/``setup``/``teardown``.
* :class:`ModuleHooks` forwards events to the module's overridden ``on_*`` hooks and does
  the seed-era ``*_epoch_end(outputs)`` aggregation. One is built per run with only the
  hooks the module overrides, so a hook the module does not define costs nothing.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, List, Optional, Set

import torch

from hookloop.engine import hookimpl
from hookloop.engine.apply import detach_all, move_to_device
from hookloop.engine.errors import MisconfigurationException, PluginError, closest
from hookloop.engine.module import LightningModule, is_overridden
from hookloop.plugins.logger_base import logger_values

# Event -> the module methods that make the adapter listen to it.
_TRIGGERS: Dict[str, tuple] = {
    "setup": ("setup",),
    "teardown": ("teardown",),
    "on_fit_start": ("on_fit_start",),
    "on_fit_end": ("on_fit_end",),
    "on_pretrain_routine_start": ("on_pretrain_routine_start",),
    "on_pretrain_routine_end": ("on_pretrain_routine_end",),
    "on_train_start": ("on_train_start",),
    "on_train_end": ("on_train_end",),
    "on_epoch_start": ("on_epoch_start",),
    "on_epoch_end": ("on_epoch_end",),
    "on_train_epoch_start": ("on_train_epoch_start",),
    "on_train_epoch_end": ("on_train_epoch_end",),
    # Seed-era aggregation runs first of all on the epoch-end event (Lightning 1.x called
    # `*_epoch_end(outputs)` before any callback's `on_*_epoch_end`): see ModuleHooks.
    "aggregate_train_epoch": ("training_epoch_end",),
    "aggregate_validation_epoch": ("validation_epoch_end",),
    "aggregate_test_epoch": ("test_epoch_end",),
    "on_train_batch_start": ("on_train_batch_start", "on_batch_start"),
    "on_train_batch_end": ("on_train_batch_end", "training_epoch_end"),
    "on_batch_end": ("on_batch_end",),
    "on_validation_start": ("on_validation_start",),
    "on_validation_end": ("on_validation_end",),
    "on_validation_epoch_start": ("on_validation_epoch_start",),
    "on_validation_epoch_end": ("on_validation_epoch_end",),
    "on_validation_batch_start": ("on_validation_batch_start",),
    "on_validation_batch_end": ("on_validation_batch_end", "validation_epoch_end"),
    "on_test_start": ("on_test_start",),
    "on_test_end": ("on_test_end",),
    "on_test_epoch_start": ("on_test_epoch_start",),
    "on_test_epoch_end": ("on_test_epoch_end",),
    "on_test_batch_start": ("on_test_batch_start",),
    "on_test_batch_end": ("on_test_batch_end", "test_epoch_end"),
    "on_predict_start": ("on_predict_start",),
    "on_predict_end": ("on_predict_end",),
    "on_predict_epoch_start": ("on_predict_epoch_start",),
    "on_predict_epoch_end": ("on_predict_epoch_end",),
    "on_predict_batch_start": ("on_predict_batch_start",),
    "on_predict_batch_end": ("on_predict_batch_end",),
    "transfer_batch_to_device": ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"),
    "on_before_backward": ("on_before_backward",),
    "on_after_backward": ("on_after_backward",),
    "on_before_optimizer_step": ("on_before_optimizer_step",),
    "on_before_zero_grad": ("on_before_zero_grad",),
    "on_save_checkpoint": ("on_save_checkpoint",),
    "on_load_checkpoint": ("on_load_checkpoint",),
    "on_exception": ("on_exception",),
}

#: Module methods that are hooks (for the typo check on the module's own ``on_*`` methods).
MODULE_HOOKS: Set[str] = {name for names in _TRIGGERS.values() for name in names} | {
    n for n in vars(LightningModule) if n.startswith("on_")
}

_EVAL_STEP = {"validate": "validation_step", "test": "test_step", "predict": "predict_step"}
_EVAL_STEP_END = {"validate": "validation_step_end", "test": "test_step_end"}
_LOADER_METHOD = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader",
                  "predict": "predict_dataloader"}


def _takes(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _check_module_typos(module: LightningModule) -> None:
    """A module method named like a hook but matching none is an error, when a hook name is close."""
    for attr in dir(type(module)):
        if not attr.startswith("on_") or attr in MODULE_HOOKS or not callable(getattr(type(module), attr, None)):
            continue
        if attr.startswith("on_") and hasattr(torch.nn.Module, attr):
            continue
        match = closest(attr, MODULE_HOOKS)
        if match is not None:
            raise PluginError(
                f"{type(module).__qualname__}.{attr} looks like a hook but matches none. "
                f"Did you mean `{match}`? (Rename it if it is your own helper.)"
            )


def finish_training_output(trainer: Any, output: Any) -> Any:
    """What the ``training_step`` hook does with the module's output: log a seed-era dict; return ``output``."""
    if isinstance(output, dict) and ("log" in output or "progress_bar" in output or len(output) > 1):
        trainer._train_results.log_seed_dict(output, "training_step", epoch_end=False)
    return output


def validated_loss(output: Any, hook: str = "training_step") -> Optional[torch.Tensor]:
    """The loss in a step's output (a tensor, or a dict with ``'loss'``); ``None`` means skip the batch.

    Raises a :class:`MisconfigurationException` naming ``hook`` for anything else.
    """
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        loss = output
    elif isinstance(output, dict):
        if "loss" not in output:
            raise MisconfigurationException(
                f"`{hook}` returned a dict without a 'loss' key (it had {sorted(map(str, output))}). "
                "Return {'loss': loss, ...} or the loss tensor itself, or None to skip the batch."
            )
        loss = output["loss"]
    else:
        raise MisconfigurationException(
            f"`{hook}` returned {type(output).__name__}; return the loss tensor, a dict with 'loss', "
            "or None to skip the batch."
        )
    if not isinstance(loss, torch.Tensor):
        raise MisconfigurationException(
            f"`{hook}` returned a loss of type {type(loss).__name__}; the loss must be a torch.Tensor "
            "computed from the model's parameters (so it can be back-propagated)."
        )
    if loss.numel() != 1:
        raise MisconfigurationException(
            f"`{hook}` returned a loss of shape {tuple(loss.shape)}; it must be a scalar. Reduce it (e.g. .mean())."
        )
    return loss


class ModelHooksPlugin:
    """Built-in ``model_hooks``: the behaviour hooks that call into the LightningModule."""

    def __init__(self) -> None:
        self._takes_optimizer_idx: Optional[bool] = None
        # Looked up once per run: a missing attribute on an nn.Module raises inside
        # ``__getattr__``, which would cost about a microsecond on every training batch.
        self._training_step_end: Any = None

    # ---- the module adapter ---------------------------------------------------------------
    @hookimpl
    def module_plugin(self, trainer: Any, pl_module: LightningModule) -> "ModuleHooks":
        """Build the per-run adapter with only the hooks ``pl_module`` overrides."""
        _check_module_typos(pl_module)
        self._takes_optimizer_idx = _takes(pl_module.training_step, "optimizer_idx")
        self._training_step_end = getattr(pl_module, "training_step_end", None)
        return ModuleHooks(trainer, pl_module)

    # ---- data -------------------------------------------------------------------------------
    @hookimpl
    def get_dataloader(self, trainer: Any, pl_module: LightningModule, stage: str) -> Any:
        """Loaders passed to fit/validate/test/predict, else the datamodule's, else the module's."""
        given = trainer._loaders_given.get(stage)
        if given is not None:
            return given
        method = _LOADER_METHOD[stage]
        for owner in (trainer.datamodule, pl_module):
            if owner is None:
                continue
            fn = getattr(owner, method, None)
            if fn is None:
                continue
            try:
                return fn()
            except NotImplementedError:
                continue
        return []

    @hookimpl
    def prepare_data(self, trainer: Any, pl_module: LightningModule) -> None:
        """``prepare_data`` of the datamodule and the module, on the right rank only, then a barrier."""
        per_node = getattr(trainer.datamodule, "prepare_data_per_node", None)
        if per_node is None:
            per_node = trainer.prepare_data_per_node
        if (trainer.local_rank == 0) if per_node else (trainer.global_rank == 0):
            if trainer.datamodule is not None:
                trainer.datamodule.prepare_data()
            pl_module.prepare_data()
        if trainer.world_size > 1 and trainer.hooks.barrier is not None:
            trainer.hooks.barrier(trainer, "prepare_data")

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """The datamodule's ``setup`` runs before any other ``setup``."""
        if trainer.datamodule is not None:
            trainer.datamodule.setup(stage)

    @hookimpl(trylast=True)
    def teardown(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """The datamodule's ``teardown`` runs after every other ``teardown``."""
        if trainer.datamodule is not None:
            trainer.datamodule.teardown(stage)

    # ---- steps ------------------------------------------------------------------------------
    @hookimpl
    def training_step(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int,
                      optimizer_idx: Optional[int]) -> Any:
        """Call ``training_step`` (with ``optimizer_idx`` if it takes it) and ``training_step_end``."""
        model = trainer.strategy_model or pl_module
        if self._takes_optimizer_idx and optimizer_idx is not None:
            output = model(batch, batch_idx, optimizer_idx) if model is not pl_module else \
                pl_module.training_step(batch, batch_idx, optimizer_idx)
        else:
            output = model(batch, batch_idx) if model is not pl_module else pl_module.training_step(batch, batch_idx)
        step_end = self._training_step_end
        if step_end is not None:
            output = step_end(output)
        if isinstance(output, dict):  # an OrderedDict too (the 0.7/0.8 templates returned one)
            finish_training_output(trainer, output)
        return output

    def direct_training_step(self, trainer: Any, pl_module: LightningModule) -> Optional[Callable[[Any], Any]]:
        """The direct form of this plugin's ``training_step`` (see the hookspec): ``finish``, or ``None``.

        Offered only when calling ``pl_module.training_step(batch, batch_idx)`` is all this hook does
        for a tensor loss: no strategy wrapper (DDP must see the forward), no ``training_step_end``, no
        ``optimizer_idx`` argument. ``finish`` does the rest for outputs that are not a tensor (the
        seed-era ``{'loss', 'log', 'progress_bar'}`` dict is logged there).
        """
        if trainer.strategy_model is not None or self._training_step_end is not None or self._takes_optimizer_idx:
            return None
        return functools.partial(finish_training_output, trainer)

    @hookimpl
    def evaluation_step(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int,
                        dataloader_idx: int, stage: str) -> Any:
        """Call ``validation_step``/``test_step``/``predict_step`` (+ ``*_step_end``)."""
        name = _EVAL_STEP[stage]
        step = getattr(pl_module, name, None)
        if step is None:
            raise MisconfigurationException(
                f"trainer.{stage}() needs `{type(pl_module).__name__}.{name}(self, batch, batch_idx)`; it is not defined."
            )
        if trainer.state.num_dataloaders > 1 and _takes(step, "dataloader_idx"):
            output = step(batch, batch_idx, dataloader_idx)
        else:
            output = step(batch, batch_idx)
        step_end = getattr(pl_module, _EVAL_STEP_END.get(stage, ""), None)
        if step_end is not None:
            output = step_end(output)
        return output


class ModuleHooks:
    """Per-run adapter: forwards events to the module's overridden hooks; aggregates epoch outputs."""

    def __init__(self, trainer: Any, module: LightningModule) -> None:
        self.trainer = trainer
        self.module = module
        overridden = {name for names in _TRIGGERS.values() for name in names
                      if callable(getattr(module, name, None)) and
                      (not hasattr(LightningModule, name) or is_overridden(name, module))}
        self.overridden = overridden
        #: The registry registers only these events for this adapter.
        self.__engine_hooks__ = {event for event, names in _TRIGGERS.items() if overridden.intersection(names)}
        self._train_outputs: List[Any] = []
        self._eval_outputs: Dict[int, List[Any]] = {}
        self._takes_batch_dl_idx = _takes(getattr(module, "on_train_batch_start"), "dataloader_idx")
        self._transfer_takes_dl_idx = _takes(module.transfer_batch_to_device, "dataloader_idx")

    # ---- the batch's way to the device --------------------------------------------------------
    @hookimpl
    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        """The module's ``on_before_batch_transfer``, ``transfer_batch_to_device``, ``on_after_batch_transfer``."""
        module, overridden = self.module, self.overridden
        if "on_before_batch_transfer" in overridden:
            batch = module.on_before_batch_transfer(batch, dataloader_idx)
        if "transfer_batch_to_device" not in overridden:
            batch = move_to_device(batch, device)
        elif self._transfer_takes_dl_idx:
            batch = module.transfer_batch_to_device(batch, device, dataloader_idx)
        else:  # seed-era signature: transfer_batch_to_device(self, batch, device)
            batch = module.transfer_batch_to_device(batch, device)
        if "on_after_batch_transfer" in overridden:
            batch = module.on_after_batch_transfer(batch, dataloader_idx)
        return batch

    # ---- simple forwards ----------------------------------------------------------------------
    @hookimpl
    def setup(self, stage: str) -> None:
        self.module.setup(stage)

    @hookimpl
    def teardown(self, stage: str) -> None:
        self.module.teardown(stage)

    @hookimpl
    def on_fit_start(self) -> None:
        self.module.on_fit_start()

    @hookimpl
    def on_fit_end(self) -> None:
        self.module.on_fit_end()

    @hookimpl
    def on_pretrain_routine_start(self) -> None:
        self.module.on_pretrain_routine_start()

    @hookimpl
    def on_pretrain_routine_end(self) -> None:
        self.module.on_pretrain_routine_end()

    @hookimpl
    def on_train_start(self) -> None:
        self.module.on_train_start()

    @hookimpl
    def on_train_end(self) -> None:
        self.module.on_train_end()

    @hookimpl
    def on_epoch_start(self) -> None:
        self.module.on_epoch_start()

    @hookimpl
    def on_epoch_end(self) -> None:
        self.module.on_epoch_end()

    @hookimpl
    def on_train_epoch_start(self) -> None:
        self._train_outputs = []
        self.module.on_train_epoch_start()

    @hookimpl
    def on_batch_end(self) -> None:
        self.module.on_batch_end()

    @hookimpl
    def on_before_backward(self, loss: Any) -> None:
        self.module.on_before_backward(loss)

    @hookimpl
    def on_after_backward(self) -> None:
        self.module.on_after_backward()

    @hookimpl
    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.module.on_before_optimizer_step(optimizer)

    @hookimpl
    def on_before_zero_grad(self, optimizer: Any) -> None:
        self.module.on_before_zero_grad(optimizer)

    @hookimpl
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.module.on_save_checkpoint(checkpoint)

    @hookimpl
    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.module.on_load_checkpoint(checkpoint)

    @hookimpl
    def on_exception(self, exception: BaseException) -> None:
        self.module.on_exception(exception)

    # ---- training batches -------------------------------------------------------------------
    @hookimpl
    def on_train_batch_start(self, trainer: Any, batch: Any, batch_idx: int) -> None:
        module = self.module
        if "on_batch_start" in self.overridden and module.on_batch_start(batch) == -1:
            trainer.state.skip_rest_of_epoch = True
        if "on_train_batch_start" in self.overridden:
            result = (module.on_train_batch_start(batch, batch_idx, 0) if self._takes_batch_dl_idx
                      else module.on_train_batch_start(batch, batch_idx))
            if result == -1:
                trainer.state.skip_rest_of_epoch = True

    @hookimpl
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if "training_epoch_end" in self.overridden and outputs is not None:
            self._train_outputs.append(detach_all(outputs))
        if "on_train_batch_end" in self.overridden:
            self.module.on_train_batch_end(outputs, batch, batch_idx)

    @hookimpl(specname="on_train_epoch_end", tryfirst=True)
    def aggregate_train_epoch(self, trainer: Any) -> None:
        """Seed-era ``training_epoch_end(outputs)``, before every ``on_train_epoch_end``."""
        outputs, self._train_outputs = self._train_outputs, []
        result = self.module.training_epoch_end(outputs)
        del outputs  # free the epoch's outputs before anything else runs
        _take_epoch_end_dict(trainer, result, "training_epoch_end", trainer._train_results)

    @hookimpl
    def on_train_epoch_end(self) -> None:
        self.module.on_train_epoch_end()

    # ---- evaluation ---------------------------------------------------------------------------
    def _eval_batch_end(self, hook: str, aggregate: str, outputs: Any, batch: Any, batch_idx: int,
                        dataloader_idx: int) -> None:
        if aggregate in self.overridden and outputs is not None:
            self._eval_outputs.setdefault(dataloader_idx, []).append(detach_all(outputs))
        if hook in self.overridden:
            getattr(self.module, hook)(outputs, batch, batch_idx, dataloader_idx)

    def _aggregate_eval(self, trainer: Any, aggregate: str) -> None:
        per_loader, self._eval_outputs = self._eval_outputs, {}
        n_loaders = max(trainer.state.num_dataloaders, len(per_loader), 1)
        outputs = [per_loader.get(i, []) for i in range(n_loaders)]
        result = getattr(self.module, aggregate)(outputs[0] if len(outputs) == 1 else outputs)
        _take_epoch_end_dict(trainer, result, aggregate, trainer._eval_results)

    @hookimpl
    def on_validation_start(self) -> None:
        self.module.on_validation_start()

    @hookimpl
    def on_validation_end(self) -> None:
        self.module.on_validation_end()

    @hookimpl
    def on_validation_epoch_start(self) -> None:
        self.module.on_validation_epoch_start()

    @hookimpl
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self.module.on_validation_batch_start(batch, batch_idx, dataloader_idx)

    @hookimpl
    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self._eval_batch_end("on_validation_batch_end", "validation_epoch_end", outputs, batch, batch_idx, dataloader_idx)

    @hookimpl(specname="on_validation_epoch_end", tryfirst=True)
    def aggregate_validation_epoch(self, trainer: Any) -> None:
        """Seed-era ``validation_epoch_end(outputs)``, before every ``on_validation_epoch_end``."""
        self._aggregate_eval(trainer, "validation_epoch_end")

    @hookimpl
    def on_validation_epoch_end(self) -> None:
        self.module.on_validation_epoch_end()

    @hookimpl
    def on_test_start(self) -> None:
        self.module.on_test_start()

    @hookimpl
    def on_test_end(self) -> None:
        self.module.on_test_end()

    @hookimpl
    def on_test_epoch_start(self) -> None:
        self.module.on_test_epoch_start()

    @hookimpl
    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self.module.on_test_batch_start(batch, batch_idx, dataloader_idx)

    @hookimpl
    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self._eval_batch_end("on_test_batch_end", "test_epoch_end", outputs, batch, batch_idx, dataloader_idx)

    @hookimpl(specname="on_test_epoch_end", tryfirst=True)
    def aggregate_test_epoch(self, trainer: Any) -> None:
        """Seed-era ``test_epoch_end(outputs)``, before every ``on_test_epoch_end``."""
        self._aggregate_eval(trainer, "test_epoch_end")

    @hookimpl
    def on_test_epoch_end(self) -> None:
        self.module.on_test_epoch_end()

    @hookimpl
    def on_predict_start(self) -> None:
        self.module.on_predict_start()

    @hookimpl
    def on_predict_end(self) -> None:
        self.module.on_predict_end()

    @hookimpl
    def on_predict_epoch_start(self) -> None:
        self.module.on_predict_epoch_start()

    @hookimpl
    def on_predict_epoch_end(self) -> None:
        self.module.on_predict_epoch_end()

    @hookimpl
    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self.module.on_predict_batch_start(batch, batch_idx, dataloader_idx)

    @hookimpl
    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self.module.on_predict_batch_end(outputs, batch, batch_idx, dataloader_idx)


def _take_epoch_end_dict(trainer: Any, result: Any, hook: str, results: Any) -> None:
    """A seed-era ``*_epoch_end`` may return ``{'val_loss': ..., 'log': {...}, 'progress_bar': {...}}``."""
    if result is None:
        return
    if not isinstance(result, dict):
        raise MisconfigurationException(
            f"`{hook}` returned {type(result).__name__}; return None or a dict such as "
            "{'val_loss': avg, 'log': {'val_loss': avg}}."
        )
    to_log = results.log_seed_dict(result, hook, epoch_end=True)
    if to_log and trainer.hooks.log_metrics is not None and trainer.is_global_zero and not trainer.sanity_checking:
        # Same default x-axis as the metrics plugin's epoch values: the last optimizer step taken.
        step = to_log.pop("step", max(trainer.global_step - 1, 0))
        trainer.hooks.log_metrics(trainer, logger_values(trainer, to_log), int(step))
