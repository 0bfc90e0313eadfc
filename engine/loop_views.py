"""``trainer.fit_loop``, ``validate_loop``, ``test_loop``, ``predict_loop``: Lightning's loop objects, as views.

Lightning 2.x callbacks read progress counters on the loops (``trainer.fit_loop.epoch_progress``,
``fit_loop.epoch_loop.batch_progress``, ``fit_loop.epoch_loop.val_loop.batch_progress``,
``predict_loop.predictions``, ``fit_loop.max_epochs``...). hookloop's loop keeps no such counters:
each is computed, when read, from what :class:`~hookloop.engine.state.LoopState` already holds
(the batch index, the epoch, a count per epoch and per evaluation run), so the loop does no
extra work per batch. The counters are snapshots: read them again to see them move.

What a counter says follows Lightning's meaning, at batch granularity: inside a batch's hooks
(``on_train_batch_start`` to ``on_train_batch_end``) ``ready``, ``started`` and ``processed``
count that batch and ``completed`` does not yet; between batches all four are equal. ``current``
counts this epoch (training) or this run (evaluation); ``total`` every epoch or run of this
trainer, checkpoints included for training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional, Union

from hookloop.engine.state import LoopState, TrainerFn

if TYPE_CHECKING:
    from hookloop.engine.trainer import Trainer


@dataclass(frozen=True)
class Tracker:
    """How many events were ready, started, processed and completed (Lightning's ``_ProcessedTracker``)."""

    ready: int = 0
    started: int = 0
    processed: int = 0
    completed: int = 0


@dataclass(frozen=True)
class Progress:
    """``total`` (every epoch or run) and ``current`` (this one) counts of an event (Lightning's ``_Progress``)."""

    total: Tracker = field(default_factory=Tracker)
    current: Tracker = field(default_factory=Tracker)


@dataclass(frozen=True)
class BatchProgress(Progress):
    """Batch counts, and whether the current batch is the loader's last (Lightning's ``_BatchProgress``)."""

    is_last_batch: bool = False


def _settled(count: int) -> Tracker:
    """Counts of ``count`` events, all completed."""
    return Tracker(count, count, count, count)


def _in_batch(ran: int, before: int, is_last: bool) -> BatchProgress:
    """A batch loop inside the hooks of its ``ran``-th batch (ready, started and processed count it; completed
    does not yet), after ``before`` batches of earlier epochs or runs."""
    return BatchProgress(Tracker(before + ran, before + ran, before + ran, before + ran - 1),
                         Tracker(ran, ran, ran, ran - 1), is_last)


def _in_training_epoch(state: LoopState) -> bool:
    """True while a training epoch's batches run (a validation inside them included): the batch index counts."""
    if not state.running or state.fn != TrainerFn.FITTING:
        return False
    phase = state.phase
    return phase == "train_batch" or (phase.startswith("validate") and not state.sanity_checking)


def eval_run_key(state: LoopState, stage: str) -> str:
    """Which evaluation loop a run of ``stage`` belongs to: ``"fit"`` (validation inside fit) or ``stage``."""
    return "fit" if state.fn == TrainerFn.FITTING and stage == "validate" else stage


class EvaluationLoopView:
    """``trainer.validate_loop`` / ``test_loop`` / ``fit_loop.epoch_loop.val_loop`` (Lightning's ``_EvaluationLoop``).

    Args:
        trainer: the trainer.
        key: ``"fit"`` (the validation inside ``fit``), ``"validate"``, ``"test"`` or ``"predict"``.
    """

    def __init__(self, trainer: "Trainer", key: str) -> None:
        self.trainer = trainer
        self.key = key
        self.stage = "validate" if key == "fit" else key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    @property
    def _runs_now(self) -> bool:
        state = self.trainer.state
        return state.running and state.phase.startswith(self.stage) and eval_run_key(state, self.stage) == self.key

    @property
    def batch_progress(self) -> BatchProgress:
        """Batches of the running (or last) run (all its dataloaders), and of every run of this loop.

        The sanity check counts as a run of the fit's validation loop while it runs, as in
        Lightning, but is left out of the totals.
        """
        state = self.trainer.state
        last, before = state.eval_runs.get(self.key, (0, 0))
        if not self._runs_now:
            return BatchProgress(_settled(before), _settled(last), last > 0)
        ran = state.eval_batches_before + state.eval_batch_idx + 1
        if state.phase != self.stage or state.eval_batch_idx < 0:  # at its start, between loaders, its end hooks
            return BatchProgress(_settled(before + ran), _settled(ran), state.phase != self.stage and ran > 0)
        limits = self.max_batches
        loader = state.dataloader_idx or 0
        return _in_batch(ran, before, loader < len(limits) and state.eval_batch_idx + 1 >= limits[loader])

    @property
    def max_batches(self) -> List[Union[int, float]]:
        """Batches each dataloader runs (``limit_*_batches`` applied)."""
        trainer = self.trainer
        return list({"fit": trainer.num_val_batches, "validate": trainer.num_val_batches,
                     "test": trainer.num_test_batches, "predict": trainer.num_predict_batches}[self.key])

    @property
    def num_dataloaders(self) -> int:
        """How many dataloaders the loop runs."""
        return len(self.max_batches)

    @property
    def current_dataloader_idx(self) -> int:
        """The dataloader whose batches run now (0 with one dataloader)."""
        return self.trainer.state.dataloader_idx or 0


class PredictionLoopView(EvaluationLoopView):
    """``trainer.predict_loop`` (Lightning's ``_PredictionLoop``): its counters and ``predictions``."""

    def __init__(self, trainer: "Trainer") -> None:
        super().__init__(trainer, "predict")

    @property
    def return_predictions(self) -> bool:
        """Whether ``predict`` keeps the outputs (``trainer.predict(return_predictions=False)`` keeps none)."""
        return self.trainer.state.return_predictions

    @property
    def predictions(self) -> Any:
        """The outputs of ``predict_step`` so far: a list, or a list per dataloader with several."""
        predictions = self.trainer.state.predictions
        return predictions[0] if self.num_dataloaders == 1 and predictions else predictions


class TrainingEpochLoopView:
    """``trainer.fit_loop.epoch_loop`` (Lightning's ``_TrainingEpochLoop``): the batches of an epoch."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.val_loop = EvaluationLoopView(trainer, "fit")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def batch_progress(self) -> BatchProgress:
        """Training batches of this epoch (``current``) and of every epoch (``total``)."""
        trainer = self.trainer
        state = trainer.state
        if not _in_training_epoch(state):
            return BatchProgress(_settled(state.trained_batches), _settled(state.epoch_batches),
                                 state.epoch_batches > 0 and state.epoch_ending)
        ran = state.batch_idx + 1
        is_last = ran >= trainer.num_training_batches
        if state.phase == "train_batch":
            return _in_batch(ran, state.trained_batches, is_last)
        # A validation inside the epoch: the batches so far are done (the epoch's count comes at its end).
        return BatchProgress(_settled(state.trained_batches + ran), _settled(ran), is_last)

    @property
    def batch_idx(self) -> int:
        """Index of the current (or last) batch in its epoch."""
        return self.batch_progress.current.ready - 1

    @property
    def total_batch_idx(self) -> int:
        """Index of the current (or last) batch counted over every epoch."""
        return self.batch_progress.total.ready - 1

    @property
    def global_step(self) -> int:
        """Optimizer steps taken."""
        return self.trainer.global_step

    @property
    def _batches_that_stepped(self) -> int:
        """Lightning's (private, but widely read) logging step: the batches that stepped the optimizers. That is
        ``global_step``, except under manual optimization stepping several optimizers in one batch (each
        ``opt.step()`` counts there)."""
        return self.trainer.global_step

    @property
    def max_steps(self) -> int:
        """``Trainer(max_steps=...)`` (assignable, as in Lightning; -1: none)."""
        return self.trainer.max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self.trainer.max_steps = value

    @property
    def min_steps(self) -> Optional[int]:
        """``Trainer(min_steps=...)``."""
        return self.trainer.min_steps


class FitLoopView:
    """``trainer.fit_loop`` (Lightning's ``_FitLoop``): epochs, their bounds and the epoch loop."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.epoch_loop = TrainingEpochLoopView(trainer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_epochs={self.max_epochs})"

    @property
    def epoch_progress(self) -> Progress:
        """Epochs: ``ready`` at ``on_train_epoch_start``, ``started`` once its batches run, ``processed``
        at its end hooks, ``completed`` after them (``completed`` is ``trainer.current_epoch``)."""
        state = self.trainer.state
        epoch = state.epoch
        counts = Tracker(epoch, epoch, epoch, epoch)
        if state.running and state.fn == TrainerFn.FITTING:
            if state.phase == "train_epoch_start":
                counts = Tracker(epoch + 1, epoch, epoch, epoch)
            elif _in_training_epoch(state):
                counts = Tracker(epoch + 1, epoch + 1, epoch, epoch)
            elif state.phase == "train_epoch_end":
                counts = Tracker(epoch + 1, epoch + 1, epoch + 1, epoch)
        return Progress(counts, counts)

    @property
    def max_epochs(self) -> int:
        """``Trainer(max_epochs=...)``; assignable, e.g. to train on with another ``fit`` (as in Lightning)."""
        return self.trainer.max_epochs

    @max_epochs.setter
    def max_epochs(self, value: int) -> None:
        self.trainer.max_epochs = value

    @property
    def min_epochs(self) -> Optional[int]:
        """``Trainer(min_epochs=...)``."""
        return self.trainer.min_epochs

    @property
    def max_steps(self) -> int:
        """``Trainer(max_steps=...)`` (assignable; -1: none)."""
        return self.epoch_loop.max_steps

    @max_steps.setter
    def max_steps(self, value: int) -> None:
        self.epoch_loop.max_steps = value

    @property
    def min_steps(self) -> Optional[int]:
        """``Trainer(min_steps=...)``."""
        return self.epoch_loop.min_steps

    @property
    def batch_idx(self) -> int:
        """``epoch_loop.batch_idx``."""
        return self.epoch_loop.batch_idx

    @property
    def total_batch_idx(self) -> int:
        """``epoch_loop.total_batch_idx``."""
        return self.epoch_loop.total_batch_idx
