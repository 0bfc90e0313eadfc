"""Read-only ``Trainer`` attributes that 0.8/0.9-era modules and callbacks read.

Code of that era checks ``self.trainer.use_dp`` before reshaping a loss, reads the learning
rate from ``self.trainer.lr_schedulers[0]['scheduler']``, or looks at ``trainer.on_gpu``; each
is derived here from the trainer's own state, so nothing is kept twice.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional


class derived:  # noqa: N801 - used like ``property``
    """A ``property`` that code may still assign: computed until set, then the set value.

    0.8-era code assigned some of these names itself (``self.use_amp = ...`` in a module's
    ``__init__``, ``trainer.testing = True``); a read-only property would break it.
    """

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        assigned = obj.__dict__
        return assigned[self.name] if self.name in assigned else self.compute(obj)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


class SeedTrainerAttributes:
    """Mixed into :class:`engine.Trainer`: the seed era's trainer attributes, computed on access."""

    @derived
    def use_dp(self) -> bool:
        """Seed era: whether the model runs in ``torch.nn.DataParallel`` (``strategy='dp'`` on GPUs)."""
        return getattr(self, "strategy").strategy_name == "dp"

    @derived
    def use_ddp2(self) -> bool:
        """Seed era: DDP2. Never (refused at ``Trainer(...)``)."""
        return False

    @derived
    def use_tpu(self) -> bool:
        """Seed era: TPU training. Never."""
        return False

    @derived
    def use_ddp(self) -> bool:
        """Seed era: whether this run is distributed data parallel (several processes)."""
        return getattr(self, "world_size", 1) > 1

    @derived
    def use_amp(self) -> bool:
        """Seed era: whether the run trains in 16-bit (mixed) precision."""
        return str(getattr(self, "precision", 32)).startswith(("16", "bf16"))

    @derived
    def on_gpu(self) -> bool:
        """Seed era: whether the model runs on a CUDA device."""
        device = getattr(self, "root_device", None)
        return device is not None and device.type == "cuda"

    @derived
    def root_gpu(self) -> Optional[int]:
        """Seed era: the index of this process's CUDA device, or ``None`` on the CPU."""
        device = getattr(self, "root_device", None)
        return device.index if self.on_gpu else None

    @derived
    def num_gpus(self) -> int:
        """Seed era: CUDA devices used by this run (all processes of this node), 0 on the CPU."""
        if not self.on_gpu:
            return 0
        if self.use_dp:  # one process, several GPUs
            return len(getattr(self, "strategy").parallel_devices)
        return max(1, getattr(self, "world_size", 1) // max(1, getattr(self, "num_nodes", 1)))

    @derived
    def lr_schedulers(self) -> List[Any]:
        """Seed era: the schedulers with when they step; ``trainer.lr_schedulers[0]['scheduler']`` works."""
        return list(getattr(self, "lr_scheduler_configs", None) or [])

    @derived
    def testing(self) -> bool:
        """Seed era: whether the test loop is running (``trainer.test()``)."""
        return getattr(self, "state").stage == "test"  # RunningStage.TESTING

    @derived
    def disable_validation(self) -> bool:
        """Seed era: whether this run has no validation (no ``validation_step`` or no validation data)."""
        return not getattr(self, "has_validation")

    @derived
    def batch_idx(self) -> int:
        """Seed era: the index of the current (or last) training batch in its epoch."""
        return getattr(self, "state").batch_idx

    @derived
    def weights_save_path(self) -> str:
        """Seed era: where the default checkpoints go (the ``weights_save_path`` flag, else ``default_root_dir``)."""
        return getattr(self, "weights_save_path_flag", None) or getattr(self, "default_root_dir")

    @derived
    def progress_bar_dict(self) -> Dict[str, Any]:
        """Seed era: what the progress bar shows (the module's ``get_progress_bar_dict()`` and ``prog_bar`` values)."""
        module = getattr(self, "lightning_module", None)
        items: Dict[str, Any] = dict(module.get_progress_bar_dict()) if module is not None else {}
        items.update(getattr(self, "progress_bar_metrics"))
        return items

    @derived
    def row_log_interval(self) -> int:
        """Seed era: ``log_every_n_steps``."""
        return getattr(self, "log_every_n_steps")

    @derived
    def early_stop_callback(self) -> Any:
        """Seed era: the EarlyStopping callback, or ``None``."""
        return getattr(self, "early_stopping_callback")

    @derived
    def interrupted(self) -> bool:
        """Seed era: whether the run was interrupted (Ctrl-C, a signal)."""
        return getattr(self, "state").interrupted

    @derived
    def proc_rank(self) -> int:
        """Seed era (0.7/0.8): the global rank of this process."""
        return getattr(self, "global_rank")

    @derived
    def data_parallel(self) -> bool:
        """Seed era: whether the model is replicated over several devices or processes."""
        return self.use_dp or self.use_ddp or self.use_ddp2

    @derived
    def single_gpu(self) -> bool:
        """Seed era: training on one CUDA device, in one process."""
        return self.on_gpu and not self.data_parallel
