"""The classes ``trainer.strategy`` can be (Lightning's ``lightning.pytorch.strategies``).

Their work is the engine's :class:`~hookloop.engine.strategy.Strategy` facade's: every
collective asks a behaviour hook (``barrier``, ``broadcast``, ``reduce_metric``, ``all_gather``),
which the ``launcher`` plugin answers in one process and the ``distributed`` plugin with
``torch.distributed``. The classes say which strategy runs, so that Lightning code testing
``isinstance(trainer.strategy, DDPStrategy)`` works, and where the root device is before a run
sets it.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from hookloop.engine.strategy import Strategy


class SingleDeviceStrategy(Strategy):
    """One process on one device (``strategy='auto'`` with one device, or ``'single_device'``).

    Args:
        trainer: the trainer.
        device: the device the process runs on.
    """

    strategy_name = "single_device"

    def __init__(self, trainer: Any, device: torch.device) -> None:
        super().__init__(trainer)
        self._device = device

    @property
    def root_device(self) -> torch.device:
        """The device of this run (known from the flags before the run sets ``trainer.root_device``)."""
        device = self.trainer.root_device
        return device if device is not None else self._device


class ParallelStrategy(Strategy):
    """Several processes, one per device (the base of :class:`DDPStrategy`).

    Args:
        trainer: the trainer.
        parallel_devices: the devices of this node, one process each.
    """

    strategy_name = "parallel"

    def __init__(self, trainer: Any, parallel_devices: List[torch.device]) -> None:
        super().__init__(trainer)
        self.parallel_devices = list(parallel_devices)

    @property
    def root_device(self) -> torch.device:
        """This process's device: the one the run set, else the node's device of its local rank."""
        device = self.trainer.root_device
        if device is not None:
            return device
        return self.parallel_devices[self.trainer.local_rank % len(self.parallel_devices)]

    @property
    def num_processes(self) -> int:
        """Processes on each node."""
        return len(self.parallel_devices)

    @property
    def distributed_sampler_kwargs(self) -> Dict[str, int]:
        """What a ``DistributedSampler`` of this process is built with."""
        return {"num_replicas": self.world_size, "rank": self.global_rank}


class DDPStrategy(ParallelStrategy):
    """DistributedDataParallel over ``torch.distributed`` (``strategy='ddp'``, ``'ddp_spawn'``, seed-era
    ``distributed_backend='ddp'``/``'ddp_cpu'``), as in Lightning 2.x, where ``ddp_spawn`` is a
    ``DDPStrategy`` too.

    Args:
        trainer: the trainer.
        parallel_devices: the devices of this node, one process each.
        start_method: ``'popen'`` (the script is run again per rank, or a launcher such as torchrun
            started the processes) or ``'spawn'``.
        process_group_backend: ``'nccl'`` on CUDA, else ``'gloo'``.
        find_unused_parameters: passed to ``DistributedDataParallel``.
    """

    strategy_name = "ddp"

    def __init__(self, trainer: Any, parallel_devices: List[torch.device], start_method: str = "popen",
                 process_group_backend: str = "gloo", find_unused_parameters: bool = False) -> None:
        super().__init__(trainer, parallel_devices)
        self.start_method = start_method
        self.process_group_backend = process_group_backend
        self.find_unused_parameters = find_unused_parameters

    def __repr__(self) -> str:
        return (f"DDPStrategy(start_method={self.start_method!r}, backend={self.process_group_backend!r}, "
                f"world_size={self.world_size})")


class DataParallelStrategy(ParallelStrategy):
    """One process whose model ``torch.nn.DataParallel`` replicates over several GPUs (``strategy='dp'``,
    seed-era ``distributed_backend='dp'``), as Lightning's ``DataParallelStrategy``.

    Each batch is split over ``parallel_devices``; the replicas' step outputs are gathered on the
    root device (the first of them). There is one process: ``world_size`` is 1 and every
    collective returns at once.

    Args:
        trainer: the trainer.
        parallel_devices: the GPUs the model is replicated over; the first is the root device.
    """

    strategy_name = "dp"

    @property
    def root_device(self) -> torch.device:
        """The first of ``parallel_devices``: where the model lives and the outputs are gathered."""
        device = self.trainer.root_device
        return device if device is not None else self.parallel_devices[0]

    @property
    def num_processes(self) -> int:
        """One: the replicas are threads of this process."""
        return 1

    @property
    def distributed_sampler_kwargs(self) -> Dict[str, int]:
        """One process reads all the data (DataParallel splits each batch, not the dataset)."""
        return {"num_replicas": 1, "rank": 0}

    def __repr__(self) -> str:
        return f"DataParallelStrategy(parallel_devices={self.parallel_devices})"


__all__ = ["Strategy", "SingleDeviceStrategy", "ParallelStrategy", "DDPStrategy", "DataParallelStrategy"]
