"""Lightning 2.x's trainer objects: ``trainer.strategy``, ``accelerator``, ``precision_plugin`` and
``estimated_stepping_batches`` (mixed into :class:`engine.Trainer`).

The engine knows no device or strategy: each object is made by a behaviour hook the plugins
implement (``make_strategy``, ``make_accelerator``, ``make_precision_plugin``), the first time it
is read, and kept on the trainer. The flags as given stay readable as ``strategy_flag`` and
``accelerator_flag``.
"""
from __future__ import annotations

import math
from typing import Any, List, Union

import torch

from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.loop import setup_train_dataloader
from hookloop.engine.strategy import Strategy


class TrainerObjects:
    """The trainer's Lightning objects, each made once by the plugins (see the module docstring)."""

    # Made when first read (class defaults until then).
    _strategy: Any = None
    _accelerator: Any = None
    _precision_plugin: Any = None

    @property
    def strategy(self) -> Strategy:
        """How the model runs across devices and processes (``SingleDeviceStrategy``, ``DDPStrategy``, ...).

        Made by the ``make_strategy`` hook when first read; its collectives ask the behaviour hooks
        (``barrier``, ``broadcast``, ``reduce_metric``, ``all_gather``). The flag is ``strategy_flag``.
        """
        if self._strategy is None:
            made = self.hooks.make_strategy(self) if self.hooks.make_strategy is not None else None
            self._strategy = made if made is not None else Strategy(self)
        return self._strategy

    @strategy.setter
    def strategy(self, strategy: Strategy) -> None:
        self._strategy = strategy

    @property
    def accelerator(self) -> Any:
        """The kind of device this run uses (``CPUAccelerator``, ``CUDAAccelerator``, ...), made by the
        ``make_accelerator`` hook when first read (``None`` when no plugin makes one). The flag is
        ``accelerator_flag``."""
        if self._accelerator is None and self.hooks.make_accelerator is not None:
            self._accelerator = self.hooks.make_accelerator(self)
        return self._accelerator

    @accelerator.setter
    def accelerator(self, accelerator: Any) -> None:
        self._accelerator = accelerator

    @property
    def precision_plugin(self) -> Any:
        """The active precision (a ``Precision``; also at 32 bits), made by the ``make_precision_plugin`` hook
        when first read (``None`` when no plugin makes one)."""
        if self._precision_plugin is None and self.hooks.make_precision_plugin is not None:
            self._precision_plugin = self.hooks.make_precision_plugin(self)
        return self._precision_plugin

    @precision_plugin.setter
    def precision_plugin(self, plugin: Any) -> None:
        self._precision_plugin = plugin

    @property
    def device_ids(self) -> List[int]:
        """The indices of the devices this node trains on, one per process (Lightning 2.x): ``[0]`` on one
        device (a CPU too), ``[0, 1]`` for two DDP processes or a DataParallel over two GPUs."""
        strategy = self.strategy
        devices = getattr(strategy, "parallel_devices", None) or [strategy.root_device]
        return [device.index if isinstance(device, torch.device) and device.index is not None else i
                for i, device in enumerate(devices)]

    @property
    def num_devices(self) -> int:
        """How many devices this node trains on (``len(trainer.device_ids)``)."""
        return len(self.device_ids)

    @property
    def estimated_stepping_batches(self) -> Union[int, float]:
        """How many optimizer steps this ``fit`` will take at most (Lightning's): the training batches per
        epoch over ``accumulate_grad_batches`` (rounded up), times ``max_epochs``, capped by ``max_steps``.

        Read in ``configure_optimizers`` (e.g. ``OneCycleLR(total_steps=...)``), it loads the training
        data early, once: the loop then uses the same loaders. ``math.inf`` for unbounded training.
        """
        max_steps = self.max_steps if self.max_steps is not None and self.max_steps >= 0 else -1
        if self.max_epochs is None or self.max_epochs < 0:
            return math.inf if max_steps == -1 else max_steps
        if self.train_dataloader is None:
            if self.lightning_module is None:
                raise MisconfigurationException(
                    "trainer.estimated_stepping_batches counts the training batches of a fit: read it during "
                    "`fit` (e.g. in configure_optimizers), or after one.")
            setup_train_dataloader(self)
        per_epoch = self.num_training_batches
        if per_epoch == math.inf:
            return math.inf if max_steps == -1 else max_steps
        schedule = self.accumulate_grad_batches
        steps = sum(math.ceil(per_epoch / _accumulation_at(schedule, epoch)) for epoch in range(max(self.max_epochs, 1)))
        return steps if max_steps == -1 else min(steps, max_steps)


def _accumulation_at(schedule: Any, epoch: int) -> int:
    """``accumulate_grad_batches`` in ``epoch``: an int, or the value of the last ``{epoch: k}`` key reached (else 1)."""
    if isinstance(schedule, dict):
        reached = [e for e in schedule if e <= epoch]
        return max(1, int(schedule[max(reached)])) if reached else 1
    return max(1, int(schedule or 1))
