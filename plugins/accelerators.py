"""The classes ``trainer.accelerator`` can be (Lightning's ``lightning.pytorch.accelerators``).

The ``device`` plugin picks one from the resolved device flags (``make_accelerator``). Each
sets up its device for the process (``setup_device``) and reports what it uses
(``get_device_stats``, what Lightning's ``DeviceStatsMonitor`` logs).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import torch

from hookloop.engine.errors import MisconfigurationException


class Accelerator:
    """A kind of device (CPU, CUDA GPU, Apple MPS): what Lightning's ``Accelerator`` offers."""

    #: The ``accelerator=`` flag value of this kind (Lightning's registry name).
    name: str = "accelerator"
    #: ``torch.device.type`` of this kind's devices.
    device_type: str = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def setup_device(self, device: torch.device) -> None:
        """Make ``device`` this process's device (CUDA: ``torch.cuda.set_device``); an error for another kind."""
        if device.type != self.device_type:
            raise MisconfigurationException(
                f"{type(self).__name__}.setup_device({device}): the device must be a {self.device_type!r} one.")

    def setup(self, trainer: Any) -> None:
        """Called with the trainer before a run (nothing to do for the built-in kinds)."""

    def teardown(self) -> None:
        """Release what :meth:`setup` took (nothing for the built-in kinds)."""

    def get_device_stats(self, device: Any) -> Dict[str, Any]:
        """What ``device`` uses now, name -> number."""
        raise NotImplementedError(f"{type(self).__name__} reports no device stats.")

    @staticmethod
    def is_available() -> bool:
        """Whether this machine has such a device."""
        return False


class CPUAccelerator(Accelerator):
    """The CPU. ``get_device_stats`` reports Lightning's ``cpu_vm_percent``, ``cpu_percent`` (since the
    previous call, or since this accelerator was made) and ``cpu_swap_percent``."""

    name = "cpu"
    device_type = "cpu"

    def __init__(self) -> None:
        self._last_cpu_times = _cpu_times()

    def get_device_stats(self, device: Any = None) -> Dict[str, float]:
        """``{'cpu_vm_percent', 'cpu_percent', 'cpu_swap_percent'}``, as Lightning's (psutil's numbers).

        Read from ``/proc`` on Linux; elsewhere through ``psutil`` when it is installed.
        """
        if os.path.exists("/proc/meminfo") and self._last_cpu_times is not None:
            memory = _meminfo()
            now = _cpu_times()
            busy = now[0] - self._last_cpu_times[0]
            total = now[1] - self._last_cpu_times[1]
            self._last_cpu_times = now
            return {
                "cpu_vm_percent": _percent(memory["MemTotal"] - memory.get("MemAvailable", memory["MemFree"]),
                                           memory["MemTotal"]),
                "cpu_percent": _percent(busy, total),
                "cpu_swap_percent": _percent(memory.get("SwapTotal", 0) - memory.get("SwapFree", 0),
                                             memory.get("SwapTotal", 0)),
            }
        try:
            import psutil
        except ImportError:
            raise ModuleNotFoundError("CPUAccelerator.get_device_stats needs /proc (Linux) or `psutil`: "
                                      "pip install psutil") from None
        return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
                "cpu_swap_percent": psutil.swap_memory().percent}

    @staticmethod
    def is_available() -> bool:
        """Always."""
        return True


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs. ``get_device_stats`` is ``torch.cuda.memory_stats(device)``, as in Lightning."""

    name = "cuda"
    device_type = "cuda"

    def setup_device(self, device: torch.device) -> None:
        """``torch.cuda.set_device(device)``."""
        super().setup_device(device)
        torch.cuda.set_device(device)

    def get_device_stats(self, device: Any) -> Dict[str, Any]:
        """The CUDA caching allocator's statistics of ``device``."""
        return torch.cuda.memory_stats(device)

    @staticmethod
    def is_available() -> bool:
        """Whether CUDA works on this machine."""
        return torch.cuda.is_available()


class MPSAccelerator(Accelerator):
    """Apple's Metal GPU. ``get_device_stats`` reports the memory the MPS allocator holds."""

    name = "mps"
    device_type = "mps"

    def get_device_stats(self, device: Any = None) -> Dict[str, Any]:
        """``{'mps_allocated_bytes', 'mps_driver_allocated_bytes'}``."""
        return {"mps_allocated_bytes": torch.mps.current_allocated_memory(),
                "mps_driver_allocated_bytes": torch.mps.driver_allocated_memory()}

    @staticmethod
    def is_available() -> bool:
        """Whether this machine has an MPS device."""
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())


#: ``DeviceConfig.accelerator`` -> the class ``trainer.accelerator`` is.
ACCELERATORS = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}


def _percent(part: float, whole: float) -> float:
    """``part / whole`` in per cent with one decimal, as psutil rounds (0 for an empty whole)."""
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def _meminfo() -> Dict[str, int]:
    """``/proc/meminfo`` as name -> kB."""
    values: Dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields: List[str] = rest.split()
            if fields and fields[0].isdigit():
                values[name] = int(fields[0])
    return values


def _cpu_times() -> Optional[Tuple[int, int]]:
    """``(busy, total)`` clock ticks of all CPUs since boot, from ``/proc/stat`` (``None`` without it)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in user/nice.
    total = sum(ticks[:8])
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return total - idle, total


__all__ = ["Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator"]
