"""The per-run adapter that forwards events to the LightningModule's own hooks (registered as ``lightning_module``).

Which hooks a module has, and their arguments, comes from the catalogue (every event marked
``@user_hook`` in ``engine/hookspecs.py``; :func:`hookloop.engine.catalogue.module_hooks`). One adapter
is built per run with only the hooks the module overrides, so a hook it does not define costs nothing.
Each forward is a small function compiled for its event: it takes the event's arguments and calls
the module's method (looked up at each call) with the ones the method takes, so that every era's
signature works:

* fewer trailing arguments than the event has (2.x ``on_validation_batch_end(outputs, batch,
  batch_idx)`` without ``dataloader_idx``) get only those;
* 0.9's batch hooks, ``on_train_batch_end(batch, batch_idx, dataloader_idx)`` (no ``outputs``), get
  the batch where 1.x/2.x ones get the outputs first;
* ``on_train_batch_start`` returning ``-1`` skips the rest of the epoch (seed-era ``on_batch_start(batch)``
  too, called first, as in Lightning 0.9);
* 1.x's ``lr_scheduler_step(scheduler, optimizer_idx, metric)`` gets its arguments in its order
  (2.x's takes ``(scheduler, metric)``); a behaviour hook's forward (``firstresult``, such as
  ``lr_scheduler_step``) returns ``True``, so the module's method replaces the built-in default.

Besides forwards, the adapter keeps the step outputs for the seed-era ``training_epoch_end(outputs)``,
``validation_epoch_end(outputs)`` and ``test_epoch_end(outputs)`` — only when the module defines them —
and calls those first of all at the epoch's end (Lightning 1.x called them before any callback's
``on_*_epoch_end``), and runs the module's ``on_before_batch_transfer``/``transfer_batch_to_device``/
``on_after_batch_transfer``.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Dict, List, Set, Tuple

from hookloop.engine import hookimpl, hookspecs
from hookloop.engine.apply import move_to_device
from hookloop.engine.catalogue import callback_hooks, module_hooks
from hookloop.engine.errors import MisconfigurationException, PluginError, closest
from hookloop.engine.module import LightningModule, is_overridden
from hookloop.engine.step_result import Result
from hookloop.plugins.logger_base import logger_values
from hookloop.plugins.step_results import gathered, kept, take_epoch_result

#: Seed-era epoch-end aggregations: module method -> (event whose batches it collects, epoch-end event).
AGGREGATIONS: Dict[str, Tuple[str, str]] = {
    "training_epoch_end": ("on_train_batch_end", "on_train_epoch_end"),
    "validation_epoch_end": ("on_validation_batch_end", "on_validation_epoch_end"),
    "test_epoch_end": ("on_test_batch_end", "on_test_epoch_end"),
}
#: Module methods of the batch's way to the device (Lightning's order: before, transfer, after).
TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
#: Events whose module hook's ``-1`` skips the rest of the epoch.
_SKIPPING = {"on_train_batch_start"}
#: Events where the module's hook runs before every callback's and plugin's (``tryfirst``), as in Lightning:
#: ``configure_model`` builds the layers every plugin then places and optimizes; ``on_load_checkpoint``
#: may migrate the checkpoint before the callbacks read their part of it.
_MODULE_FIRST = {"configure_model", "on_load_checkpoint"}
#: Module hooks whose older era took the event's arguments in another order: event -> the number of
#: positional arguments of that era's method -> the arguments it gets, in its order.
_ERA_ORDERS: Dict[str, Dict[int, Tuple[str, ...]]] = {
    "lr_scheduler_step": {3: ("scheduler", "optimizer_idx", "metric")},  # 1.x; 2.x takes (scheduler, metric)
}


def known_module_hooks() -> Set[str]:
    """Every name a module may define as a hook (for the typo check of its ``on_*`` methods)."""
    names = set(module_hooks()) | set(AGGREGATIONS) | set(TRANSFER_HOOKS)
    return names | {n for n in dir(LightningModule) if n.startswith("on_")}


def check_module_typos(module: LightningModule) -> None:
    """A module method named like a hook but matching none is an error, when a hook name is close.

    A Callback's hook that modules do not have (``on_sanity_check_end``, ``on_exception``...) is no typo: Lightning
    never calls it on a module, and neither does hookloop; a warning says so, and the run goes on.
    """
    known = known_module_hooks()
    callback_only = set(callback_hooks()) - known
    for attr in dir(type(module)):
        if not attr.startswith("on_") or attr in known or not callable(getattr(type(module), attr, None)):
            continue
        if attr in callback_only:
            warnings.warn(
                f"{type(module).__qualname__}.{attr} is a Callback hook, which a LightningModule does not have: it is "
                "never called (as in Lightning). Move it to a Callback (or return one from configure_callbacks()).",
                UserWarning, stacklevel=2)
            continue
        match = closest(attr, known)
        if match is not None:
            raise PluginError(
                f"{type(module).__qualname__}.{attr} looks like a hook but matches none. "
                f"Did you mean `{match}`? (Rename it if it is your own helper.)"
            )


def overrides_hook(module: LightningModule, name: str) -> bool:
    """True if ``module`` has its own ``name``: defined by its class over LightningModule's, or on the instance."""
    if callable(vars(module).get(name)):
        return True
    return callable(getattr(module, name, None)) and (not hasattr(LightningModule, name) or is_overridden(name, module))


def transfer_owners(module: LightningModule, datamodule: Any) -> Dict[str, Any]:
    """``{hook: owner}`` for each of :data:`TRANSFER_HOOKS` that the module or the datamodule defines.

    The datamodule's wins, as in Lightning (0.9 and 2.x): its data knows how its batches move. Defined in both, the
    module's is not called, and a warning says so.
    """
    from hookloop.engine.datamodule import LightningDataModule

    owners: Dict[str, Any] = {}
    for name in TRANSFER_HOOKS:
        in_module = overrides_hook(module, name)
        if datamodule is not None and (callable(vars(datamodule).get(name))
                                       or is_overridden(name, datamodule, LightningDataModule)):
            if in_module:
                warnings.warn(
                    f"`{name}` is defined by both {type(module).__name__} (the LightningModule) and "
                    f"{type(datamodule).__name__} (the datamodule): the datamodule's runs, the module's does not. "
                    "Keep one of them.", UserWarning, stacklevel=2)
            owners[name] = datamodule
        elif in_module:
            owners[name] = module
    return owners


def _positional(function: Callable[..., Any]) -> Tuple[List[str], bool]:
    """The positional parameter names of ``function`` and whether it takes ``*args``."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return [], True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds], any(p.kind is p.VAR_POSITIONAL for p in params)


def call_arguments(function: Callable[..., Any], offered: Tuple[str, ...], event: str = "") -> Tuple[str, ...]:
    """Which of the event's ``offered`` module arguments to pass ``function``, in order (see the module docstring)."""
    names, star = _positional(function)
    if star:
        return offered
    era = _ERA_ORDERS.get(event, {}).get(len(names))
    if era is not None:
        return era
    if offered[:1] == ("outputs",) and names[:1] == ["batch"]:
        offered = offered[1:]  # 0.9: the batch hooks took no outputs
    return offered[:len(names)]


def _compile_forward(module: LightningModule, event: str, spec_args: Tuple[str, ...], passed: Tuple[str, ...]) -> Any:
    """``def <event>(<spec_args>): return module.<event>(<passed>)``, marked ``@hookimpl``."""
    params, args = ", ".join(spec_args), ", ".join(passed)
    if event in _SKIPPING:
        body = (f"    if module.{event}({args}) == -1:\n"
                f"        trainer.state.skip_rest_of_epoch = True\n")
    elif getattr(hookspecs, event).engine_spec.get("firstresult"):
        # A behaviour hook: the module's method does the work, so the built-in default is not asked.
        body = f"    module.{event}({args})\n    return True\n"
    else:
        body = f"    module.{event}({args})\n"
    namespace: Dict[str, Any] = {"module": module}
    exec(f"def {event}({params}):\n{body}", namespace)  # noqa: S102  (names from the catalogue)
    function = namespace[event]
    function.__qualname__ = f"{type(module).__qualname__}.{event} (forwarded)"
    return hookimpl(tryfirst=event in _MODULE_FIRST)(function)


class ModuleHooks:
    """Per-run adapter: forwards events to the module's overridden hooks; aggregates seed-era epoch outputs."""

    def __init__(self, trainer: Any, module: LightningModule) -> None:
        self.trainer = trainer
        self.module = module
        #: The module hooks forwarded (each a compiled function in this object's ``__dict__``).
        self.forwarded = [event for event in module_hooks() if overrides_hook(module, event)]
        self._compile_forwards()
        hooks: Set[str] = set(self.forwarded)
        self.aggregated = {name for name in AGGREGATIONS if overrides_hook(module, name)}
        for name in self.aggregated:
            kind = name.split("_")[0]  # training / validation / test
            hooks.update({f"collect_{kind}_outputs", f"aggregate_{kind}_epoch"})
        if "training_epoch_end" in self.aggregated:
            hooks.add("reset_training_outputs")
        #: Who runs each overridden transfer hook: the datamodule where it defines one, else the module.
        self.transfer = transfer_owners(module, trainer.datamodule)
        if self.transfer:
            hooks.add("transfer_batch_to_device")
        if overrides_hook(module, "on_batch_start"):  # seed era: on_batch_start(batch), before on_train_batch_start
            hooks.add("seed_batch_start")
        #: The registry registers only these attributes of this adapter.
        self.__engine_hooks__ = hooks
        self._train_outputs: List[Any] = []
        self._eval_outputs: Dict[int, List[Any]] = {}
        tbtd_owner = self.transfer.get("transfer_batch_to_device", module)
        self._transfer_takes_dl_idx = len(_positional(tbtd_owner.transfer_batch_to_device)[0]) >= 3

    def _compile_forwards(self) -> None:
        offered = module_hooks()
        for event in self.forwarded:
            passed = call_arguments(getattr(self.module, event), offered[event], event)
            if offered[event][:1] == ("outputs",) and passed[:1] == ("batch",):
                self.trainer.state.seed_era = True  # 0.9's batch hooks took no outputs (LoopState.seed_era)
            self.__dict__[event] = _compile_forward(self.module, event, event_arguments(event), passed)

    def __getstate__(self) -> Dict[str, Any]:
        # Compiled forwards do not pickle (``ddp_spawn`` pickles the trainer's plugins): they are made again.
        return {k: v for k, v in self.__dict__.items() if k not in self.forwarded}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compile_forwards()

    # ---- the batch's way to the device --------------------------------------------------------
    @hookimpl
    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        """``on_before_batch_transfer``, ``transfer_batch_to_device``, ``on_after_batch_transfer`` of the module or,
        where it defines them, of the datamodule."""
        owners = self.transfer
        before, move, after = (owners.get(name) for name in TRANSFER_HOOKS)
        if before is not None:
            batch = before.on_before_batch_transfer(batch, dataloader_idx)
        if move is None:
            batch = move_to_device(batch, device)
        elif self._transfer_takes_dl_idx:
            batch = move.transfer_batch_to_device(batch, device, dataloader_idx)
        else:  # seed-era signature: transfer_batch_to_device(self, batch, device)
            batch = move.transfer_batch_to_device(batch, device)
        if after is not None:
            batch = after.on_after_batch_transfer(batch, dataloader_idx)
        return batch

    @hookimpl(specname="on_train_batch_start", tryfirst=True)
    def seed_batch_start(self, trainer: Any, batch: Any) -> None:
        """Seed era: the module's ``on_batch_start(batch)``; ``-1`` skips the rest of the epoch."""
        if self.module.on_batch_start(batch) == -1:
            trainer.state.skip_rest_of_epoch = True

    # ---- seed-era epoch-end aggregation -------------------------------------------------------
    @hookimpl(specname="on_train_epoch_start")
    def reset_training_outputs(self) -> None:
        """A new epoch collects its own outputs."""
        self._train_outputs = []

    @hookimpl(specname="on_train_batch_end")
    def collect_training_outputs(self, outputs: Any) -> None:
        """Keep the batch's outputs (detached) for ``training_epoch_end``."""
        if outputs is not None:
            self._train_outputs.append(kept(outputs))

    @hookimpl(specname="on_train_epoch_end", tryfirst=True)
    def aggregate_training_epoch(self, trainer: Any) -> None:
        """Seed-era ``training_epoch_end(outputs)``, before every ``on_train_epoch_end``."""
        outputs, self._train_outputs = self._train_outputs, []
        result = self.module.training_epoch_end(gathered(outputs))
        del outputs  # free the epoch's outputs before anything else runs
        take_epoch_end_dict(trainer, result, "training_epoch_end", trainer.train_results)

    def _collect_eval(self, outputs: Any, dataloader_idx: int) -> None:
        if outputs is not None:
            self._eval_outputs.setdefault(dataloader_idx, []).append(kept(outputs))

    def _aggregate_eval(self, trainer: Any, aggregate: str) -> None:
        per_loader, self._eval_outputs = self._eval_outputs, {}
        n_loaders = max(trainer.state.num_dataloaders, len(per_loader), 1)
        outputs = [gathered(per_loader.get(i, [])) for i in range(n_loaders)]
        result = getattr(self.module, aggregate)(outputs[0] if len(outputs) == 1 else outputs)
        take_epoch_end_dict(trainer, result, aggregate, trainer.eval_results)

    @hookimpl(specname="on_validation_batch_end")
    def collect_validation_outputs(self, outputs: Any, dataloader_idx: int) -> None:
        """Keep the batch's outputs (detached) for ``validation_epoch_end``."""
        self._collect_eval(outputs, dataloader_idx)

    @hookimpl(specname="on_validation_epoch_end", tryfirst=True)
    def aggregate_validation_epoch(self, trainer: Any) -> None:
        """Seed-era ``validation_epoch_end(outputs)``, before every ``on_validation_epoch_end``."""
        self._aggregate_eval(trainer, "validation_epoch_end")

    @hookimpl(specname="on_test_batch_end")
    def collect_test_outputs(self, outputs: Any, dataloader_idx: int) -> None:
        """Keep the batch's outputs (detached) for ``test_epoch_end``."""
        self._collect_eval(outputs, dataloader_idx)

    @hookimpl(specname="on_test_epoch_end", tryfirst=True)
    def aggregate_test_epoch(self, trainer: Any) -> None:
        """Seed-era ``test_epoch_end(outputs)``, before every ``on_test_epoch_end``."""
        self._aggregate_eval(trainer, "test_epoch_end")


def event_arguments(event: str) -> Tuple[str, ...]:
    """A module hook's event arguments: ``trainer, pl_module`` and the module method's."""
    return ("trainer", "pl_module") + module_hooks()[event]


def take_epoch_end_dict(trainer: Any, result: Any, hook: str, results: Any) -> None:
    """A seed-era ``*_epoch_end`` may return ``{'val_loss': ..., 'log': {...}, 'progress_bar': {...}}``, or a 0.9
    ``TrainResult``/``EvalResult``."""
    if result is None:
        return
    if isinstance(result, Result):
        take_epoch_result(trainer, result, hook, results)
        return
    if not isinstance(result, dict):
        raise MisconfigurationException(
            f"`{hook}` returned {type(result).__name__}; return None or a dict such as "
            "{'val_loss': avg, 'log': {'val_loss': avg}}."
        )
    if "log" in result or "progress_bar" in result:
        trainer.state.seed_era = True  # keys only 0.8/0.9 had (LoopState.seed_era)
    to_log = results.log_seed_dict(result, hook, epoch_end=True)
    if to_log and trainer.hooks.log_metrics is not None and trainer.is_global_zero and not trainer.sanity_checking:
        # Same default x-axis as the metrics plugin's epoch values: the last optimizer step taken.
        step = to_log.pop("step", max(trainer.global_step - 1, 0))
        trainer.hooks.log_metrics(trainer, logger_values(trainer, to_log), int(step))
