"""Built-in ``gpu_memory``: the seed-era ``Trainer(log_gpu_memory='all'|'min_max')`` flag (Lightning 0.9).

At every step where training step metrics go to the loggers (every ``log_every_n_steps``
optimizer steps, at the same x-axis step), the loggers get the GPU memory of this process,
in MB, on global rank zero:

* ``'all'``: one value per CUDA device of the machine, ``gpu_id: <i>/memory.used (MB)``
  (0.9's names);
* ``'min_max'``: ``min_gpu_mem`` and ``max_gpu_mem``, the least and the most of those.

0.9 read ``nvidia-smi`` (each device's memory used by every process); hookloop reads
``torch.cuda.memory_reserved(i)``, what this process's CUDA caching allocator holds on device
``i``, which needs no external program and starts no CUDA context on a device the run does not
use (an unused device reports 0). Without CUDA the flag does nothing, with one warning
(:func:`gpu_memory_plugins`).
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Tuple

import torch

from hookloop.engine import hookimpl
from hookloop.plugins.rank_zero import is_rank_zero
from hookloop.plugins.step_settings import accumulating

__all__ = ["GPUMemoryLogger", "MODES", "get_gpu_memory_map", "get_memory_profile", "gpu_memory_plugins"]

#: The flag's values.
MODES = ("all", "min_max")
_MB = 2.0 ** 20


def get_gpu_memory_map() -> Dict[str, float]:
    """``{'gpu_id: <i>/memory.used (MB)': MB}`` for every CUDA device: this process's reserved memory there."""
    return {f"gpu_id: {i}/memory.used (MB)": torch.cuda.memory_reserved(i) / _MB
            for i in range(torch.cuda.device_count())}


def get_memory_profile(mode: str) -> Dict[str, float]:
    """What ``log_gpu_memory=mode`` logs: :func:`get_gpu_memory_map` (``'all'``), or its ``min_gpu_mem`` and
    ``max_gpu_mem`` (``'min_max'``)."""
    memory = get_gpu_memory_map()
    if mode == "min_max" and memory:
        return {"min_gpu_mem": min(memory.values()), "max_gpu_mem": max(memory.values())}
    return memory


class GPUMemoryLogger:
    """Sends :func:`get_memory_profile` to the loggers at the training logging steps; see the module docstring.

    Args:
        mode: ``'all'`` or ``'min_max'``.
    """

    NAME = "gpu_memory"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._logged_step = -1  # one row per optimizer step, also with several batches per step

    @hookimpl
    def on_batch_end(self, trainer: Any, pl_module: Any) -> None:
        """After a batch that stepped, at every ``log_every_n_steps``-th step: log the memory."""
        every = trainer.log_every_n_steps
        step = trainer.state.global_step
        if not every or not step or step % every or step == self._logged_step or accumulating(trainer, pl_module):
            return
        self._logged_step = step
        if trainer.hooks.log_metrics is None or not is_rank_zero(trainer):
            return
        memory = get_memory_profile(self.mode)
        if memory:
            # The x-axis of the step values sent after the same batch (the step before the count rose).
            trainer.hooks.log_metrics(trainer, memory, step - 1)


def gpu_memory_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``[('gpu_memory', plugin)]`` for ``log_gpu_memory`` on a machine with CUDA; else ``[]`` (and a warning
    when the flag is set but there is no CUDA)."""
    mode = getattr(trainer, "log_gpu_memory", None)
    if not mode:
        return []
    if not torch.cuda.is_available():
        warnings.warn(f"Trainer(log_gpu_memory={mode!r}) does nothing on this machine: CUDA is not available, "
                      "so there is no GPU memory to log.")
        return []
    return [(GPUMemoryLogger.NAME, GPUMemoryLogger(mode))]
