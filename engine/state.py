"""The loop's state: one object on the trainer that plugins read (and some may set)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional


@dataclass
class LoopState:
    """Where the loop is, and the metrics seen so far.

    ``epoch`` and ``global_step`` (optimizer steps taken) count from 0. ``batch_idx`` is the
    index of the current (or last) training batch in its epoch; ``start_batch`` is the
    index the current epoch starts at — non-zero only for an epoch resumed mid-way.
    Any plugin may set ``should_stop``; the loop honours it after the current batch once
    ``min_epochs``/``min_steps`` are met.
    """

    stage: Optional[str] = None
    #: What the loop is doing: ``"train_batch"``, ``"train_epoch_end"``, ``"validate"``, ...
    #: (``self.log`` picks its step/epoch defaults from it).
    phase: str = ""
    epoch: int = 0
    global_step: int = 0
    batch_idx: int = 0
    start_batch: int = 0
    should_stop: bool = False
    skip_rest_of_epoch: bool = False
    #: True once a training epoch's batches are over (its last batch ran, or training stops after
    #: this batch) until the next epoch starts: a validation running then is the epoch's last, and
    #: the epoch-end events follow it. False during a validation in the middle of an epoch.
    epoch_ending: bool = False
    sanity_checking: bool = False
    #: How many dataloaders the running evaluation loop has.
    num_dataloaders: int = 1
    #: The evaluation dataloader whose batches are running, when there are several (else ``None``):
    #: ``self.log`` then adds ``/dataloader_idx_N`` to names, as in Lightning.
    dataloader_idx: Optional[int] = None
    interrupted: bool = False
    #: True once a checkpoint was restored for this run (the sanity check is then skipped).
    restored: bool = False
    #: The batch being run (training or evaluation), on its device; ``None`` between loops.
    batch: Any = None
    #: What the last training batch returned (``run_training_batch``'s result).
    last_outputs: Any = None
    #: Every metric a monitor may read (``val_loss``, ``self.log`` values...), name -> tensor.
    callback_metrics: Dict[str, Any] = field(default_factory=dict)
    #: Metrics sent to loggers, name -> tensor.
    logged_metrics: Dict[str, Any] = field(default_factory=dict)
    #: Metrics shown in the progress bar, name -> tensor.
    progress_bar_metrics: Dict[str, Any] = field(default_factory=dict)

    #: Fields saved in checkpoints (positions, not metrics).
    RESUMABLE = ("epoch", "global_step", "batch_idx", "start_batch")

    def state_dict(self) -> Dict[str, Any]:
        """The loop position as plain ints (for checkpoints)."""
        return {name: getattr(self, name) for name in self.RESUMABLE}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        known = {f.name for f in fields(self)}
        for name, value in state.items():
            if name in known:
                setattr(self, name, value)
