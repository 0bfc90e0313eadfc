"""Built-in ``model_hooks``: the behaviour hooks that call into the LightningModule (and datamodule).

:class:`ModelHooksPlugin` implements ``training_step``, ``evaluation_step``, ``get_dataloader``,
``module_plugin`` (which builds the per-run adapter forwarding events to the module's own hooks,
:class:`hookloop.plugins.module_adapter.ModuleHooks`), and the data hooks ``prepare_data``/``setup``/
``teardown``.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional

import torch

from hookloop.engine import hookimpl
from hookloop.engine.dataloader_kinds import LOADER_METHODS
from hookloop.engine.datamodule_calls import call_data_hook
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.module import LightningModule
from hookloop.engine.step_result import Result
from hookloop.plugins.module_adapter import ModuleHooks, check_module_typos
from hookloop.plugins.step_results import take_eval_result, take_training_result

__all__ = ["ModelHooksPlugin", "ModuleHooks", "finish_training_output", "run_evaluation_step", "validated_loss"]

_EVAL_STEP = {"validate": "validation_step", "test": "test_step", "predict": "predict_step"}
_EVAL_STEP_END = {"validate": "validation_step_end", "test": "test_step_end"}


def _takes(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def finish_training_output(trainer: Any, output: Any) -> Any:
    """What the ``training_step`` hook does with the module's output: log a seed-era dict or a 0.9
    ``TrainResult``; return ``output``."""
    if isinstance(output, dict):
        if isinstance(output, Result):
            take_training_result(trainer, output)
        elif "log" in output or "progress_bar" in output:
            trainer.state.seed_era = True  # keys only 0.8/0.9 had (LoopState.seed_era)
            trainer.train_results.log_seed_dict(output, "training_step", epoch_end=False)
        elif len(output) > 1:
            trainer.train_results.log_seed_dict(output, "training_step", epoch_end=False)
    return output


def validated_loss(output: Any, hook: str = "training_step") -> Optional[torch.Tensor]:
    """The loss in a step's output (a tensor, or a dict with ``'loss'``); ``None`` means skip the batch.

    Raises a :class:`MisconfigurationException` naming ``hook`` for anything else.
    """
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        loss = output
    elif isinstance(output, Result):  # 0.9's TrainResult(minimize=loss)
        loss = output.get("minimize")
        if loss is None:
            raise MisconfigurationException(
                f"`{hook}` returned a {type(output).__name__} without `minimize`; return "
                "TrainResult(minimize=loss), or None to skip the batch."
            )
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


#: The tier the callbacks of ``LightningModule.configure_callbacks()`` join: called after the trainer's own.
MODEL_CALLBACK_TIER = "model_callback"


def attach_model_callbacks(trainer: Any, pl_module: LightningModule) -> None:
    """Register the callbacks ``pl_module.configure_callbacks()`` returns, at the start of every run (Lightning's rule).

    They are called after the trainer's callbacks; a registered callback of the same type as one of
    them (the trainer's, a built-in's, or the previous run's) is replaced. Checkpoint callbacks
    still run last of all (``ModelCheckpoint`` is ``trylast`` with a high ``__engine_order__``).
    """
    from hookloop.engine.callback import Callback

    returned = pl_module.configure_callbacks()
    if not returned:
        return
    callbacks = list(returned) if isinstance(returned, (list, tuple)) else [returned]
    replaced = {type(c) for c in callbacks}
    registry = trainer.registry
    origin = f"{type(pl_module).__qualname__}.configure_callbacks()"
    with registry.batch():
        for record in list(registry.records()):
            if isinstance(record.plugin, Callback) and type(record.plugin) in replaced:
                registry.remove(record.name)
        for callback in reversed(callbacks):  # later registrations run first: reversed for list order
            name, n = type(callback).__name__, 1
            while registry.has_plugin(name) or name in registry.names():
                n += 1
                name = f"{type(callback).__name__}-{n}"
            registry.add(callback, name, MODEL_CALLBACK_TIER, origin=origin)
    registry.check_all()  # a misspelt hook of the module's callbacks is an error, as for the trainer's


class ModelHooksPlugin:
    """Built-in ``model_hooks``: the behaviour hooks that call into the LightningModule."""

    def __init__(self) -> None:
        self._takes_optimizer_idx: Optional[bool] = None
        self._takes_hiddens = False
        # Looked up once per run: a missing attribute on an nn.Module raises inside
        # ``__getattr__``, which would cost about a microsecond on every training batch.
        self._training_step_end: Any = None

    # ---- the module adapter ---------------------------------------------------------------
    @hookimpl
    def module_plugin(self, trainer: Any, pl_module: LightningModule) -> "ModuleHooks":
        """Build the per-run adapter with only the hooks ``pl_module`` overrides."""
        check_module_typos(pl_module)
        attach_model_callbacks(trainer, pl_module)
        self._takes_optimizer_idx = _takes(pl_module.training_step, "optimizer_idx")
        self._takes_hiddens = _takes(pl_module.training_step, "hiddens")
        self._training_step_end = getattr(pl_module, "training_step_end", None)
        return ModuleHooks(trainer, pl_module)

    # ---- data -------------------------------------------------------------------------------
    @hookimpl
    def get_dataloader(self, trainer: Any, pl_module: LightningModule, stage: str) -> Any:
        """Loaders passed to fit/validate/test/predict, else the datamodule's, else the module's."""
        given = trainer.dataloaders_given.get(stage)
        if given is not None:
            return given
        method = LOADER_METHODS[stage]
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
            if trainer.datamodule is not None:  # not again if called by hand before the run (0.9)
                call_data_hook(trainer.datamodule, "prepare_data")
            pl_module.prepare_data()
        if trainer.world_size > 1 and trainer.hooks.barrier is not None:
            trainer.hooks.barrier(trainer, "prepare_data")

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """The datamodule's ``setup`` runs before any other ``setup`` (not again for a stage set up by hand before
        the run, as in 0.9: :mod:`hookloop.engine.datamodule_calls`)."""
        if trainer.datamodule is not None:
            call_data_hook(trainer.datamodule, "setup", stage)

    @hookimpl(trylast=True)
    def teardown(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """The datamodule's ``teardown`` runs after every other ``teardown``."""
        if trainer.datamodule is not None:
            call_data_hook(trainer.datamodule, "teardown", stage)

    # ---- steps ------------------------------------------------------------------------------
    @hookimpl
    def training_step(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int,
                      optimizer_idx: Optional[int]) -> Any:
        """Call ``training_step`` (with ``optimizer_idx`` and 0.9's ``hiddens`` if it takes them) and
        ``training_step_end``."""
        model = trainer.strategy_model or pl_module
        if self._takes_hiddens:  # 0.9 truncated back-propagation: (batch, batch_idx, [optimizer_idx], hiddens)
            args = (batch, batch_idx) + ((optimizer_idx,) if self._takes_optimizer_idx and optimizer_idx is not None
                                         else ()) + (trainer.hiddens,)
            output = model(*args) if model is not pl_module else pl_module.training_step(*args)
        elif self._takes_optimizer_idx and optimizer_idx is not None:
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
        ``optimizer_idx`` or ``hiddens`` argument. ``finish`` does the rest for outputs that are not a tensor (the
        seed-era ``{'loss', 'log', 'progress_bar'}`` dict is logged there).
        """
        if (trainer.strategy_model is not None or self._training_step_end is not None or self._takes_optimizer_idx
                or self._takes_hiddens):
            return None
        return functools.partial(finish_training_output, trainer)

    @hookimpl
    def evaluation_step(self, trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int,
                        dataloader_idx: int, stage: str) -> Any:
        """Call ``validation_step``/``test_step``/``predict_step`` (+ ``*_step_end``)."""
        return run_evaluation_step(trainer, pl_module, batch, batch_idx, dataloader_idx, stage)


def run_evaluation_step(trainer: Any, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int,
                        stage: str, run: Optional[Callable[..., Any]] = None) -> Any:
    """The work of the ``evaluation_step`` hook: the module's step for ``stage``, then its ``*_step_end``.

    ``run(step_name, *args)``, when given, runs the step instead of calling the module's method
    (a strategy whose wrapper must see the call, as DataParallel's forward does).
    """
    name = _EVAL_STEP[stage]
    step = getattr(pl_module, name, None)
    if step is None:
        raise MisconfigurationException(
            f"trainer.{stage}() needs `{type(pl_module).__name__}.{name}(self, batch, batch_idx)`; it is not defined."
        )
    args = (batch, batch_idx, dataloader_idx) if trainer.state.num_dataloaders > 1 and _takes(step, "dataloader_idx") \
        else (batch, batch_idx)
    output = run(name, *args) if run is not None else step(*args)
    step_end = getattr(pl_module, _EVAL_STEP_END.get(stage, ""), None)
    if step_end is not None:
        output = step_end(output)
    if isinstance(output, Result) and stage != "predict":
        take_eval_result(trainer, output, stage)
    return output
