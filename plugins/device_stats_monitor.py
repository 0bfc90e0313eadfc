"""``DeviceStatsMonitor``: sends the device's statistics to the loggers around every training, validation and
test batch, at the steps where step metrics are logged (every ``log_every_n_steps``), as Lightning 2.x does.

Keys are ``DeviceStatsMonitor.<hook>/<stat>``. On a CPU the stats are Lightning's CPU accelerator's,
read with ``psutil``: ``cpu_percent``, ``cpu_vm_percent``, ``cpu_swap_percent``; on a CUDA GPU,
``torch.cuda.memory_stats`` (``allocated_bytes.all.current``...), plus the CPU's with ``cpu_stats=True``.
``psutil`` is needed only for CPU stats (``pip install psutil``).
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Set

import torch

from hookloop.engine import Callback
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.rank_zero import is_rank_zero

#: The hooks around which stats are logged (each also the key's prefix).
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end",
               "on_test_batch_start", "on_test_batch_end")


def get_cpu_stats() -> Dict[str, float]:
    """System-wide CPU use, RAM use and swap use, in per cent (Lightning's CPU accelerator stats)."""
    try:
        import psutil
    except ImportError as exc:
        raise ModuleNotFoundError(
            "DeviceStatsMonitor reads CPU stats with psutil, which is not installed: `pip install psutil`, or pass "
            "DeviceStatsMonitor(cpu_stats=False) on a GPU.") from exc
    return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
            "cpu_swap_percent": psutil.swap_memory().percent}


def get_device_stats(device: torch.device) -> Dict[str, float]:
    """What Lightning's accelerator for ``device`` reports: CUDA memory statistics, else the CPU's."""
    if device.type == "cuda":
        return {k: float(v) for k, v in torch.cuda.memory_stats(device).items()}
    if device.type == "mps":  # Lightning's MPS accelerator reports the host's, under these names
        return {f"M1_{k[len('cpu_'):]}": v for k, v in get_cpu_stats().items()}
    return get_cpu_stats()


class DeviceStatsMonitor(Callback):
    """Log device statistics during training, validation and test.

    Args:
        cpu_stats: ``None``: CPU stats only when training on the CPU; ``True``: always; ``False``: never.
        filter_keys: Log only these stats (names without the prefix, e.g. ``{'cpu_percent'}``).
    """

    def __init__(self, cpu_stats: Optional[bool] = None, filter_keys: Optional[Set[str]] = None) -> None:
        self._cpu_stats = cpu_stats
        self._filter_keys = set(filter_keys) if filter_keys is not None else None
        self.__engine_hooks__ = {"setup", *BATCH_HOOKS}

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Check for a logger (and psutil where CPU stats are read) once, before the first batch."""
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException(
                "DeviceStatsMonitor needs a logger: the Trainer has none (logger=False). Pass a logger, or remove "
                "the callback.")
        device = _device(trainer)
        if self._reads_cpu(device):
            get_cpu_stats()  # psutil missing is an error now, not at the first batch
        if self._filter_keys is not None:
            unknown = self._filter_keys - set(self._stats(device))
            if unknown:
                warnings.warn(f"DeviceStatsMonitor(filter_keys=...) names stats this device does not report, "
                              f"which are ignored: {sorted(unknown)}.")

    def _reads_cpu(self, device: torch.device) -> bool:
        return bool(self._cpu_stats) or (self._cpu_stats is None and device.type == "cpu")

    def _stats(self, device: torch.device) -> Dict[str, float]:
        if device.type == "cpu":
            return get_cpu_stats() if self._cpu_stats is not False else {}
        stats = get_device_stats(device)
        if self._cpu_stats:
            stats.update(get_cpu_stats())
        return stats

    def log_device_stats(self, trainer: Any, hook: str) -> None:
        """Send the stats, prefixed ``DeviceStatsMonitor.<hook>/``, at the steps step metrics go out."""
        every = trainer.log_every_n_steps
        if not every or not ((trainer.global_step + 1) % every == 0 or trainer.should_stop):
            return
        if not is_rank_zero(trainer) or trainer.hooks.log_metrics is None:
            return
        stats = self._stats(_device(trainer))
        if self._filter_keys is not None:
            stats = {k: v for k, v in stats.items() if k in self._filter_keys}
        if stats:
            prefix = f"{type(self).__qualname__}.{hook}/"
            trainer.hooks.log_metrics(trainer, {prefix + k: float(v) for k, v in stats.items()}, trainer.global_step)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Log the stats before a training batch."""
        self.log_device_stats(trainer, "on_train_batch_start")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the stats after a training batch."""
        self.log_device_stats(trainer, "on_train_batch_end")

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        """Log the stats before a validation batch."""
        self.log_device_stats(trainer, "on_validation_batch_start")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        """Log the stats after a validation batch."""
        self.log_device_stats(trainer, "on_validation_batch_end")

    def on_test_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        """Log the stats before a test batch."""
        self.log_device_stats(trainer, "on_test_batch_start")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        """Log the stats after a test batch."""
        self.log_device_stats(trainer, "on_test_batch_end")


def _device(trainer: Any) -> torch.device:
    return torch.device(trainer.root_device) if trainer.root_device is not None else torch.device("cpu")


__all__ = ["DeviceStatsMonitor", "get_cpu_stats", "get_device_stats"]
