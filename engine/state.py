"""The loop's state: one object on the trainer that plugins read (and some may set).

It is also Lightning's ``trainer.state``: ``state.fn`` (:class:`TrainerFn`, the entry point
running), ``state.stage`` (:class:`RunningStage`, what the loop is doing now) and ``state.status``
(:class:`TrainerStatus`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Dict, List, Optional


class _NameEnum(str, Enum):
    """A ``str`` enum compared by value, case-insensitively: ``TrainerFn.FITTING == "fit"`` (as Lightning's)."""

    def __eq__(self, other: object) -> bool:
        other = other.value if isinstance(other, Enum) else other
        return isinstance(other, str) and self.value.lower() == other.lower()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.value.lower())

    def __str__(self) -> str:
        return self.value


class TrainerFn(_NameEnum):
    """The entry point running: ``trainer.state.fn``."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(_NameEnum):
    """What the loop is doing: ``trainer.state.stage`` (``None`` outside a run).

    ``fit`` runs ``SANITY_CHECKING``, ``TRAINING`` and ``VALIDATING``; ``validate``, ``test`` and
    ``predict`` run the stage of their name.
    """

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def evaluating(self) -> bool:
        """True for validation and test."""
        return self in (RunningStage.VALIDATING, RunningStage.TESTING)

    @property
    def dataloader_prefix(self) -> str:
        """The dataloader kind of the stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``."""
        return "val" if self in (RunningStage.SANITY_CHECKING, RunningStage.VALIDATING) else self.value


class TrainerStatus(_NameEnum):
    """Where the trainer is in its life: ``trainer.state.status``."""

    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"

    @property
    def stopped(self) -> bool:
        """True once a run finished or was interrupted."""
        return self in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)


#: ``phase`` prefix -> the stage it belongs to (the sanity check is told by ``sanity_checking``).
_PHASE_STAGES = (("train", RunningStage.TRAINING), ("validate", RunningStage.VALIDATING),
                 ("test", RunningStage.TESTING), ("predict", RunningStage.PREDICTING))
#: The stage of an entry point before its loop starts (its ``setup`` hooks, say).
_FN_STAGES = {TrainerFn.FITTING: RunningStage.TRAINING, TrainerFn.VALIDATING: RunningStage.VALIDATING,
              TrainerFn.TESTING: RunningStage.TESTING, TrainerFn.PREDICTING: RunningStage.PREDICTING}


@dataclass
class LoopState:
    """Where the loop is, and the metrics seen so far.

    ``epoch`` and ``global_step`` (optimizer steps taken) count from 0. ``batch_idx`` is the
    index of the current (or last) training batch in its epoch; ``start_batch`` is the
    index the current epoch starts at — non-zero only for an epoch resumed mid-way.
    Any plugin may set ``should_stop``; the loop honours it after the current batch once
    ``min_epochs``/``min_steps`` are met.
    """

    #: The entry point running (or that ran last): ``fit``, ``validate``, ``test`` or ``predict``.
    fn: Optional[TrainerFn] = None
    status: TrainerStatus = TrainerStatus.INITIALIZING
    #: True from the start of ``fit``/``validate``/``test``/``predict`` until it returns or raises.
    running: bool = False
    #: What the loop is doing: ``"train_batch"``, ``"train_epoch_end"``, ``"validate"``, ...
    #: (``self.log`` picks its step/epoch defaults from it); ``""`` before a run's loop starts.
    phase: str = ""
    epoch: int = 0
    #: What ``trainer.current_epoch`` subtracts from ``epoch``: 1 from the end of a seed-era ``fit``'s training
    #: (``seed_era``) until the next ``fit`` starts, where Lightning 0.8/0.9 left the last trained epoch's index;
    #: else 0. ``epoch`` itself always counts as Lightning 2.x does (checkpoints and resuming read it).
    current_epoch_offset: int = 0
    #: Set once this trainer's runs use an API only Lightning 0.8/0.9 had: a step or ``*_epoch_end`` dict with
    #: ``'log'``/``'progress_bar'``, a ``TrainResult``/``EvalResult``, a 0.7 flag name (``train_percent_check``...),
    #: or a module batch hook in 0.9's signature (``on_train_batch_end(batch, batch_idx, dataloader_idx)``).
    seed_era: bool = False
    global_step: int = 0
    batch_idx: int = 0
    start_batch: int = 0
    #: Training batches of every epoch that ended (its batch loop did), and of the last such epoch
    #: (counted once per epoch: the progress counters of ``trainer.fit_loop`` derive from them).
    trained_batches: int = 0
    epoch_batches: int = 0
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
    #: The running evaluation: index of the batch in its dataloader (-1 before the first), and the
    #: batches of the run's earlier dataloaders.
    eval_batch_idx: int = -1
    eval_batches_before: int = 0
    #: Per evaluation loop (``"fit"``: validation inside fit; ``"validate"``, ``"test"``, ``"predict"``):
    #: ``[batches of its last run, batches of all its runs]``, updated when a run ends.
    eval_runs: Dict[str, List[int]] = field(default_factory=dict)
    #: What the running (or last) ``predict`` returned per dataloader, filled batch by batch.
    predictions: List[List[Any]] = field(default_factory=list)
    #: Whether ``predict`` keeps its outputs (``trainer.predict(return_predictions=False)`` keeps none).
    return_predictions: bool = True
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
    RESUMABLE = ("epoch", "global_step", "batch_idx", "start_batch", "trained_batches", "epoch_batches")

    @property
    def stage(self) -> Optional[RunningStage]:
        """What the loop is doing (Lightning's ``trainer.state.stage``), derived from ``phase``; ``None`` outside a run."""
        if not self.running:
            return None
        if self.sanity_checking:
            return RunningStage.SANITY_CHECKING
        phase = self.phase
        for prefix, stage in _PHASE_STAGES:
            if phase.startswith(prefix):
                return stage
        return _FN_STAGES.get(self.fn)  # type: ignore[arg-type]

    @property
    def finished(self) -> bool:
        """True once the last run finished without an error."""
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        """True once the last run finished or was interrupted."""
        return self.status.stopped

    def state_dict(self) -> Dict[str, Any]:
        """The loop position as plain ints (for checkpoints)."""
        return {name: getattr(self, name) for name in self.RESUMABLE}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        known = {f.name for f in fields(self)}
        for name, value in state.items():
            if name in known:
                setattr(self, name, value)
