"""Read-only ``Trainer`` attributes that 0.8/0.9-era modules and callbacks read.

Code of that era checks ``self.trainer.use_dp`` before reshaping a loss, reads the learning
rate from ``self.trainer.lr_schedulers[0]['scheduler']``, or looks at ``trainer.on_gpu``; each
is derived here from the trainer's own state, so nothing is kept twice.
"""
from __future__ import annotations

import os
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

    def get_model(self) -> Any:
        """Seed era: the ``LightningModule`` being run (never its DataParallel/DDP wrapper); 2.x's
        ``trainer.lightning_module``."""
        return getattr(self, "lightning_module")

    @derived
    def running_sanity_check(self) -> bool:
        """Seed era: whether the sanity check's validation is running (2.x: ``trainer.sanity_checking``)."""
        return getattr(self, "state").sanity_checking

    @derived
    def total_batch_idx(self) -> int:
        """Seed era: training batches finished in every epoch so far (the running one's not yet counted)."""
        return getattr(self, "fit_loop").epoch_loop.batch_progress.total.completed

    @derived
    def data_parallel_device_ids(self) -> Optional[List[int]]:
        """Seed era: the ids of this node's CUDA devices (``gpus=2`` -> ``[0, 1]``), ``None`` without GPUs."""
        return getattr(self, "device_ids") if self.on_gpu else None

    @derived
    def reload_dataloaders_every_epoch(self) -> bool:
        """Seed era: whether the dataloaders are made again every epoch."""
        return getattr(self, "reload_dataloaders_every_n_epochs") == 1

    @derived
    def log_save_interval(self) -> int:
        """Seed era: the flag's value (0.9's default 100); it has no effect here (loggers write at every epoch end)."""
        return getattr(self, "seed_flags_given").get("log_save_interval") or 100

    @derived
    def amp_level(self) -> str:
        """Seed era: the apex level given (0.9's default ``'O2'``); it has no effect (precision uses torch.autocast)."""
        return getattr(self, "seed_flags_given").get("amp_level") or "O2"

    @derived
    def tpu_cores(self) -> None:
        """Seed era: TPU cores. None (TPUs are not supported)."""
        return None

    @derived
    def on_tpu(self) -> bool:
        """Seed era: whether the model runs on a TPU. Never."""
        return False

    @derived
    def slurm_job_id(self) -> Optional[int]:
        """Seed era: the SLURM job's id (``SLURM_JOB_ID``), ``None`` outside a batch job (an interactive ``bash`` job
        included, as 0.9 had it)."""
        job = os.environ.get("SLURM_JOB_ID")
        if job is None or os.environ.get("SLURM_JOB_NAME") == "bash":
            return None
        try:
            return int(job)
        except ValueError:
            return None
