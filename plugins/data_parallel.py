"""Built-in ``data_parallel``: ``torch.nn.DataParallel`` over several GPUs of one process (``strategy='dp'``).

Registered for ``strategy='dp'`` / seed-era ``distributed_backend='dp'`` when the run uses CUDA
GPUs. Without GPUs ``dp`` trains in one process on one device, as Lightning 0.9 did, and the
trainer warns once (:func:`data_parallel_plugins`).

What it does, hook by hook:

* ``make_strategy`` — ``trainer.strategy`` is a
  :class:`~hookloop.plugins.strategies.DataParallelStrategy` over the GPUs asked for.
* ``configure_model`` — wraps the module (already on the root device, the first GPU) in
  :class:`LightningDataParallel` as ``trainer.strategy_model``. The ``model_hooks`` plugin's
  ``training_step`` calls the wrapper, whose forward runs ``training_step`` in every replica on
  its slice of the batch (Lightning's ``LightningDataParallel``).
* ``evaluation_step`` — ``validation_step``/``test_step`` run through the wrapper too.
* Manual optimization is refused: every replica would step the optimizers.
* ``teardown`` — drops the wrapper.

The replicas' outputs are gathered on the root device: tensors of a batch dimension are
concatenated, one scalar per replica becomes a vector of them. A module defining the step's
``*_step_end`` (``training_step_end(outputs)``, ``validation_step_end``, ``test_step_end``) gets
that gathered output to reduce itself. Without one, each per-replica scalar (the loss, a logged
value) is averaged over the replicas, with a warning the first time, as Lightning's DP does.
"""
from __future__ import annotations

import copy
import numbers
import warnings
from typing import Any, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.device import DeviceConfig, resolve_devices
from hookloop.plugins.model_hooks import run_evaluation_step
from hookloop.plugins.strategies import DataParallelStrategy

__all__ = ["DataParallelPlugin", "DataParallelStep", "LightningDataParallel", "data_parallel_plugins",
           "gather_step_outputs"]

#: A step's name -> the 0.9 hook that reduces its gathered outputs.
STEP_END = {"training_step": "training_step_end", "validation_step": "validation_step_end",
            "test_step": "test_step_end"}


class DataParallelStep(nn.Module):
    """What every replica runs: ``forward`` calls the module's step named :attr:`step_name`.

    Python numbers in the step's output become tensors, so that they can be gathered.

    Args:
        module: the LightningModule.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        #: The step ``forward`` runs; DataParallel copies it into each replica at every call.
        self.step_name = "training_step"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The output of ``module.<step_name>(*args, **kwargs)`` (this replica's share of the batch)."""
        return _numbers_to_tensors(getattr(self.module, self.step_name)(*args, **kwargs))


class LightningDataParallel(nn.DataParallel):
    """``torch.nn.DataParallel`` whose forward is the LightningModule's step (Lightning's class of that name).

    Calling it runs ``training_step``; :meth:`run` runs another step. Its :meth:`gather` reduces the
    replicas' outputs as the module docstring of :mod:`plugins.data_parallel` says.

    Args:
        pl_module: the LightningModule, already on ``device_ids[0]``.
        device_ids: the CUDA devices to replicate over.
    """

    def __init__(self, pl_module: nn.Module, device_ids: Optional[Sequence[int]] = None) -> None:
        super().__init__(DataParallelStep(pl_module), device_ids=list(device_ids) if device_ids is not None else None)
        self._warned: Set[str] = set()  # the steps whose averaging was announced

    @property
    def lightning_module(self) -> nn.Module:
        """The wrapped LightningModule."""
        return self.module.module

    def run(self, step_name: str, *args: Any) -> Any:
        """Run the module's ``step_name`` (``'validation_step'``, ...) through DataParallel; the gathered output."""
        step = self.module
        before, step.step_name = step.step_name, step_name
        try:
            return self(*args)
        finally:
            step.step_name = before

    def gather(self, outputs: Any, output_device: Any) -> Any:
        """The replicas' ``outputs`` on ``output_device``: averaged scalars unless the module reduces them itself."""
        step_end = STEP_END.get(self.module.step_name, "")
        reduce = getattr(self.lightning_module, step_end, None) is None
        # DataParallel passes its output device as a CUDA index.
        device = torch.device("cuda", output_device) if isinstance(output_device, int) else torch.device(output_device)
        gathered, averaged = gather_step_outputs(outputs, device, getattr(self, "dim", 0), reduce)  # no dim without CUDA
        if averaged and self.module.step_name not in self._warned:
            self._warned.add(self.module.step_name)
            warnings.warn(
                f"strategy='dp': `{self.module.step_name}` returned a scalar in each of the {len(outputs)} replicas; "
                f"they are averaged over the replicas. Define `{step_end}(self, outputs)` to reduce them yourself.")
        return gathered


def gather_step_outputs(outputs: Sequence[Any], device: torch.device, dim: int = 0,
                        reduce: bool = True) -> Tuple[Any, bool]:
    """The replicas' step ``outputs`` gathered on ``device``, and whether any scalar was averaged.

    Tensors with a batch dimension are concatenated along ``dim``; one scalar per replica becomes
    their mean when ``reduce`` (a floating-point one), else a vector of them (what
    ``torch.nn.DataParallel`` gives a ``*_step_end`` hook). Dicts (a 0.9 ``Result`` too), lists and
    tuples are gathered key by key; any other value is the first replica's.
    """
    averaged: List[bool] = []

    def gather(values: Sequence[Any]) -> Any:
        first = values[0]
        if isinstance(first, torch.Tensor):
            moved = [v.to(device) for v in values]
            if first.dim() == 0:
                stacked = torch.stack(moved)
                if reduce and stacked.is_floating_point():
                    averaged.append(True)
                    return stacked.mean()
                return stacked
            return torch.cat(moved, dim)
        if isinstance(first, dict):
            out = copy.copy(first)  # keeps the type (OrderedDict, a Result and its meta)
            for key in first:
                out[key] = gather([v[key] for v in values])
            return out
        if isinstance(first, (list, tuple)):
            items = [gather(list(each)) for each in zip(*values)]
            if isinstance(first, tuple) and hasattr(first, "_fields"):  # a namedtuple
                return type(first)(*items)
            return type(first)(items)
        return first

    result = gather(list(outputs))
    return result, bool(averaged)


def _numbers_to_tensors(output: Any) -> Any:
    """``output`` with Python numbers (not bools) as tensors, recursively through dicts, lists and tuples."""
    if isinstance(output, numbers.Number) and not isinstance(output, bool):
        return torch.tensor(output)
    if isinstance(output, dict):
        out = copy.copy(output)
        for key, value in output.items():
            out[key] = _numbers_to_tensors(value)
        return out
    if isinstance(output, (list, tuple)) and not hasattr(output, "_fields"):
        return type(output)(_numbers_to_tensors(v) for v in output)
    return output


class DataParallelPlugin:
    """DataParallel over the GPUs of ``config``; see the module docstring.

    Args:
        config: the resolved device flags (``strategy == 'dp'`` on CUDA).
    """

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config

    @hookimpl
    def make_strategy(self, trainer: Any) -> DataParallelStrategy:
        """``trainer.strategy``: a ``DataParallelStrategy`` over the GPUs asked for."""
        return DataParallelStrategy(trainer, [torch.device("cuda", i) for i in self.config.device_ids])

    @hookimpl
    def configure_model(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        """Wrap the module (already on the first GPU) for fit, validate and test; predict runs it alone."""
        if stage == "fit" and not getattr(pl_module, "automatic_optimization", True):
            # Every replica would run the optimizers' steps inside its own training_step.
            raise MisconfigurationException(
                f"strategy='dp' trains with automatic optimization only, but {type(pl_module).__name__} sets "
                "automatic_optimization = False; use strategy='ddp' for manual optimization on several GPUs.")
        if stage in ("fit", "validate", "test"):
            trainer.strategy_model = LightningDataParallel(pl_module, device_ids=self.config.device_ids)

    @hookimpl(tryfirst=True)
    def evaluation_step(self, trainer: Any, pl_module: nn.Module, batch: Any, batch_idx: int, dataloader_idx: int,
                        stage: str) -> Any:
        """``validation_step``/``test_step`` through the wrapper (then ``*_step_end``); ``None`` leaves it to ``model_hooks``."""
        wrapper = trainer.strategy_model
        if stage == "predict" or not isinstance(wrapper, LightningDataParallel):
            return None
        return run_evaluation_step(trainer, pl_module, batch, batch_idx, dataloader_idx, stage, run=wrapper.run)

    @hookimpl
    def teardown(self, trainer: Any, pl_module: nn.Module, stage: str) -> None:
        """Drop the wrapper."""
        trainer.strategy_model = None


def data_parallel_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``[('data_parallel', plugin)]`` for ``strategy='dp'`` on GPUs, else ``[]``.

    ``dp`` without a GPU warns once, here (the trainer is built once), and trains in one process.
    """
    flag = trainer.strategy_flag
    if not (isinstance(flag, str) and flag.lower() == "dp"):
        return []
    config = resolve_devices(trainer)
    if config.strategy != "dp":
        warnings.warn(
            f"strategy/distributed_backend='dp' replicates the model over CUDA GPUs, but this run uses none: it "
            f"trains in one process on the {config.accelerator} (as Lightning 0.9 did). Pass gpus=N to use DataParallel.")
        return []
    return [("data_parallel", DataParallelPlugin(config))]
