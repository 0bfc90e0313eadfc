"""Read-only ``Trainer`` attributes that 0.8/0.9-era modules and callbacks read.

Code of that era checks ``self.trainer.use_dp`` before reshaping a loss, reads the learning
rate from ``self.trainer.lr_schedulers[0]['scheduler']``, or looks at ``trainer.on_gpu``; each
is derived here from the trainer's own state, so nothing is kept twice.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class SeedTrainerAttributes:
    """Mixed into :class:`engine.Trainer`: the seed era's trainer attributes, computed on access."""

    @property
    def use_dp(self) -> bool:
        """Seed era: DataParallel. Never: hookloop runs DDP (``dp`` is refused at ``Trainer(...)``)."""
        return False

    @property
    def use_ddp2(self) -> bool:
        """Seed era: DDP2. Never (refused at ``Trainer(...)``)."""
        return False

    @property
    def use_tpu(self) -> bool:
        """Seed era: TPU training. Never."""
        return False

    @property
    def use_ddp(self) -> bool:
        """Seed era: whether this run is distributed data parallel (several processes)."""
        return getattr(self, "world_size", 1) > 1

    @property
    def use_amp(self) -> bool:
        """Seed era: whether the run trains in 16-bit (mixed) precision."""
        return str(getattr(self, "precision", 32)).startswith(("16", "bf16"))

    @property
    def on_gpu(self) -> bool:
        """Seed era: whether the model runs on a CUDA device."""
        device = getattr(self, "root_device", None)
        return device is not None and device.type == "cuda"

    @property
    def root_gpu(self) -> Optional[int]:
        """Seed era: the index of this process's CUDA device, or ``None`` on the CPU."""
        device = getattr(self, "root_device", None)
        return device.index if self.on_gpu else None

    @property
    def num_gpus(self) -> int:
        """Seed era: CUDA devices used by this run (all processes of this node), 0 on the CPU."""
        if not self.on_gpu:
            return 0
        return max(1, getattr(self, "world_size", 1) // max(1, getattr(self, "num_nodes", 1)))

    @property
    def lr_schedulers(self) -> List[Any]:
        """Seed era: the schedulers with when they step; ``trainer.lr_schedulers[0]['scheduler']`` works."""
        return list(getattr(self, "lr_scheduler_configs", None) or [])

    @property
    def testing(self) -> bool:
        """Seed era: whether the test loop is running (``trainer.test()``)."""
        return getattr(self, "state").stage == "test"

    @property
    def disable_validation(self) -> bool:
        """Seed era: whether this run has no validation (no ``validation_step`` or no validation data)."""
        return not getattr(self, "has_validation")

    @property
    def batch_idx(self) -> int:
        """Seed era: the index of the current (or last) training batch in its epoch."""
        return getattr(self, "state").batch_idx

    @property
    def weights_save_path(self) -> str:
        """Seed era: where the default checkpoints go (the ``weights_save_path`` flag, else ``default_root_dir``)."""
        return getattr(self, "_weights_save_path", None) or getattr(self, "default_root_dir")

    @property
    def progress_bar_dict(self) -> Dict[str, Any]:
        """Seed era: what the progress bar shows (the module's ``get_progress_bar_dict()`` and ``prog_bar`` values)."""
        module = getattr(self, "lightning_module", None)
        items: Dict[str, Any] = dict(module.get_progress_bar_dict()) if module is not None else {}
        items.update(getattr(self, "progress_bar_metrics"))
        return items

    @property
    def row_log_interval(self) -> int:
        """Seed era: ``log_every_n_steps``."""
        return getattr(self, "log_every_n_steps")

    @property
    def early_stop_callback(self) -> Any:
        """Seed era: the EarlyStopping callback, or ``None``."""
        return getattr(self, "early_stopping_callback")

    @property
    def interrupted(self) -> bool:
        """Seed era: whether the run was interrupted (Ctrl-C, a signal)."""
        return getattr(self, "state").interrupted

    @property
    def proc_rank(self) -> int:
        """Seed era (0.7/0.8): the global rank of this process."""
        return getattr(self, "global_rank")

    @property
    def data_parallel(self) -> bool:
        """Seed era: whether the model is replicated over several devices or processes."""
        return self.use_dp or self.use_ddp or self.use_ddp2

    @property
    def single_gpu(self) -> bool:
        """Seed era: training on one CUDA device, in one process."""
        return self.on_gpu and not self.data_parallel
