"""Where each rank's main loop is, for the stall watchdog: positions, warm-up, the culprit of a stall.

The watchdog thread of every rank (:mod:`plugins.distributed_watchdog`) samples
:meth:`LoopProgress.position` twice a second. The position is made of what the loop and the
plugins already write for their own use — ``trainer.state``'s stage, phase, epoch,
``global_step`` and ``batch_idx`` — plus the evaluation batch, which the distributed plugin
records in ``on_*_batch_start`` (evaluation is not the measured hot path). Nothing is added to a
training batch: the loop writes ``batch_idx`` and the optimization plugin ``global_step`` anyway.

*Progress* is any change of the position. A rank whose position has not changed for the stall
limit is stalled — unless it is still *warming up*: from the start of a stage (setup,
``prepare_data``, restoring a checkpoint) until its first evaluation batch is over, and again from
``on_train_start`` until its first training batch is over (DataLoader workers starting,
compilation, autotuning, DDP's first bucket rebuild). Warm-up is not timed by the stall limit.

When every rank is stalled and at least one is past its warm-up, :func:`stall_culprits` names
the rank(s) to blame from their reports: a rank whose main thread is *not* waiting in a collective
(it hangs in its own code) before one that waits for the others; among those, the one behind.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

#: Phases in the order a loop goes through them (``trainer.state.phase``), to tell who is behind.
_PHASE_ORDER = {"": 0, "train_epoch_start": 1, "train_batch": 2, "validate": 3, "test": 3, "predict": 3,
                "validate_epoch_end": 4, "test_epoch_end": 4, "predict_epoch_end": 4, "train_epoch_end": 5}
_EVAL_NAMES = {"validate": "validation", "test": "test", "predict": "predict"}
#: A main thread whose innermost frame is in one of these waits for the other ranks (a collective,
#: or backward: DDP's gradient all-reduce runs inside it).
_WAITING_MODULES = ("torch.distributed", "torch.autograd", "torch.nn.parallel")
#: The standard library's modules: a place inside them is named by the code that called them.
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ("threading", "queue", "selectors", "socket", "subprocess",
                                                         "multiprocessing", "concurrent", "asyncio", "time")))
#: Order of a rank outside any Trainer stage: after everyone (it finished the stage the others are in).
_OUTSIDE = (sys.maxsize,)


@dataclass(frozen=True)
class Position:
    """Where one rank's main loop is. Equal positions mean no progress; :meth:`order` ranks ranks."""

    stage_index: int
    stage: str
    phase: str
    sanity_checking: bool
    epoch: int
    global_step: int
    batch_idx: int
    #: Evaluation dataloader and batch running, ``-1`` before the first batch of an evaluation run.
    eval_loader: int = -1
    eval_batch: int = -1
    num_loaders: int = 1

    @property
    def evaluating(self) -> bool:
        """True in an evaluation run (its batches or its epoch end)."""
        return self.phase.split("_", 1)[0] in _EVAL_NAMES

    def order(self) -> Tuple[int, ...]:
        """Sorts positions by how far a rank got in the same script (the rank behind sorts first)."""
        return (self.stage_index, int(not self.sanity_checking), self.epoch, self.batch_idx, self.global_step,
                _PHASE_ORDER.get(self.phase, 0), self.eval_loader, self.eval_batch)

    def describe(self) -> str:
        """For messages: ``epoch 0, global_step 2, batch 2 (fit, phase train_batch)``."""
        kind = _EVAL_NAMES.get(self.phase.split("_", 1)[0], "")
        if self.evaluating:
            if self.phase.endswith("_epoch_end"):
                where = f"the end of the {kind} run"
            elif self.eval_batch < 0:
                where = f"the start of the {kind} run"
            else:
                where = f"{kind} batch {self.eval_batch}"
                if self.num_loaders > 1:
                    where += f" of dataloader {self.eval_loader}"
            if self.sanity_checking:
                where += " of the sanity check"
            elif self.stage == "fit":
                where = f"epoch {self.epoch}, global_step {self.global_step}, after batch {self.batch_idx}, {where}"
        elif self.phase == "train_epoch_start":
            where = f"the start of epoch {self.epoch}, global_step {self.global_step}"
        elif self.phase == "train_epoch_end":
            where = f"the end of epoch {self.epoch}, global_step {self.global_step}, batch {self.batch_idx}"
        else:
            where = f"epoch {self.epoch}, global_step {self.global_step}, batch {self.batch_idx}"
        return f"{where} ({self.stage}, phase {self.phase or 'none'})"


class LoopProgress:
    """The main loop's position for the watchdog thread, read from what the loop already writes.

    The distributed plugin calls :meth:`begin_stage`/:meth:`end_stage` around each stage,
    :meth:`begin_training` at ``on_train_start``, :meth:`begin_evaluation` at ``on_*_start`` and
    :meth:`eval_batch` at ``on_*_batch_start``. Everything else is read by the watchdog thread.
    """

    def __init__(self) -> None:
        self._state: Any = None
        self._stage_index = -1
        self._thread_id: Optional[int] = None
        #: Evaluation batches started in this process, and the one running: ``(dataloader_idx, batch_idx)``.
        self.eval_batches = 0
        self.eval_at: Optional[Tuple[int, int]] = None
        #: ``(epoch, global_step, batch_idx, eval_batches)`` when the running warm-up began (None: none).
        self._warm: Optional[Tuple[int, int, int, int]] = None

    def __getstate__(self) -> Dict[str, Any]:  # ddp_spawn: each process tracks its own loop
        return LoopProgress().__dict__

    # ---- from the main thread (stage boundaries, evaluation batches) ------------------------
    def begin_stage(self, state: Any) -> None:
        """A stage starts in this thread (``setup_environment``): warm-up until its first batch is over."""
        self._state = state
        self._stage_index += 1
        self._thread_id = threading.get_ident()
        self.eval_at = None
        self._begin_warm_up()

    def end_stage(self) -> None:
        """The stage is over (``teardown``): this rank is outside the Trainer until the next one."""
        self._state = None

    def begin_training(self) -> None:
        """``on_train_start``: the first training batch warms up again (the sanity check may have armed)."""
        self._begin_warm_up()

    def begin_evaluation(self) -> None:
        """``on_{validation,test,predict}_start``: no batch of this run has started yet."""
        self.eval_at = None

    def eval_batch(self, batch_idx: int, dataloader_idx: int) -> None:
        """``on_*_batch_start``: the progress mark of an evaluation batch."""
        self.eval_batches += 1
        self.eval_at = (dataloader_idx, batch_idx)

    def _begin_warm_up(self) -> None:
        state = self._state
        if state is not None:
            self._warm = (state.epoch, state.global_step, max(state.batch_idx, state.start_batch), self.eval_batches)

    # ---- from the watchdog thread -------------------------------------------------------------
    def position(self) -> Optional[Position]:
        """Where the loop is now, or ``None`` outside a stage."""
        state = self._state
        if state is None:
            return None
        phase = state.phase or ""
        at = self.eval_at if phase.split("_", 1)[0] in _EVAL_NAMES and self.eval_at is not None else (-1, -1)
        return Position(self._stage_index, str(state.fn), phase, bool(state.sanity_checking), state.epoch,
                        state.global_step, state.batch_idx, at[0], at[1], state.num_dataloaders)

    def armed(self) -> bool:
        """True once this stage's warm-up is over: its first training (or evaluation) batch finished.

        A training batch is over once ``batch_idx`` passes the first one or ``global_step``/``epoch``
        moves; an evaluation batch once the next evaluation batch starts.
        """
        state, warm = self._state, self._warm
        if state is None or warm is None:
            return False
        epoch, step, batch, evals = warm
        return (state.epoch != epoch or state.global_step != step or state.batch_idx > batch
                or self.eval_batches >= evals + 2)

    def where(self) -> Tuple[bool, str]:
        """``(waiting, text)`` for the stage's thread: is it waiting for the other ranks, and where it is."""
        frame = sys._current_frames().get(self._thread_id) if self._thread_id is not None else None
        return describe_frame(frame)


def describe_frame(frame: Optional[FrameType]) -> Tuple[bool, str]:
    """``(waiting, text)`` for a thread whose innermost Python frame is ``frame``.

    ``waiting`` is True when that frame is in ``torch.distributed`` (a collective), in
    ``torch.autograd`` (backward; DDP's gradient all-reduce) or in DDP itself. ``text`` names the
    innermost frame outside torch, pluggy and the standard library — the user's or hookloop's line
    that called into them, or that hangs — with its caller when both are the user's.
    """
    if frame is None:
        return False, "at an unknown place"
    frames: List[FrameType] = []
    f: Optional[FrameType] = frame
    while f is not None:
        frames.append(f)
        f = f.f_back
    module = _module(frame)
    waiting = module.startswith(_WAITING_MODULES)
    own = [f for f in frames if not _is_library(_module(f))]
    place = _place(own[0] if own else frame)
    if len(own) > 1 and not _module(own[0]).startswith("hookloop.") and not _module(own[1]).startswith("hookloop."):
        place += f", called from {_place(own[1])}"  # a helper that hangs is named with its caller
    if waiting:
        name = "backward (gradient all-reduce)" if module.startswith("torch.autograd") else frame.f_code.co_name
        return True, f"waiting in {name} from {place}"
    if own and own[0] is not frame:
        return False, f"in {frame.f_code.co_name} ({module}) from {place}"
    return False, f"in {place}"


def _is_library(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top in ("torch", "pluggy") or top in _STDLIB


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _place(frame: FrameType) -> str:
    return f"{frame.f_code.co_name} ({os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno})"


def stall_culprits(reports: Sequence[Mapping[str, Any]]) -> List[int]:
    """The ranks to blame for a stall, from every rank's report (``rank``, ``waiting``, ``order``).

    A rank that is not waiting in a collective hangs in its own code: those come first. Among the
    candidates, the ones furthest behind (lowest ``order``) are named; when every rank waits, that
    is the rank that did not reach the others' collective — or, at the same place, every rank (their
    collectives do not match).
    """
    working = [r for r in reports if not r["waiting"]]
    pool = working or list(reports)
    first = min(tuple(r["order"]) for r in pool)
    return sorted(int(r["rank"]) for r in pool if tuple(r["order"]) == first)


def report_order(position: Optional[Position]) -> Tuple[int, ...]:
    """:meth:`Position.order`, or after everyone for a rank outside the Trainer."""
    return _OUTSIDE if position is None else position.order()


def stall_message(culprits: Sequence[int], reports: Mapping[int, Mapping[str, Any]], rank: int,
                  limit: float, limit_env: str, exit_code: int) -> str:
    """The line rank ``rank`` prints when the job is stopped for a stall (see ``stall_culprits``)."""
    idle = max(float(reports[c]["idle"]) for c in culprits)
    if len(culprits) == 1:
        c = reports[culprits[0]]
        who = "this rank" if c["rank"] == rank else f"rank {c['rank']} (pid {c['pid']} on {c['host']})"
        text = f"{who} made no progress for {idle:.0f} s at {c['at']}, {c['where']}"
        mine = reports.get(rank)
        if rank not in culprits and mine is not None:
            text += f"; this rank was {mine['where']}"
    else:
        names = ", ".join(str(c) for c in culprits[:-1]) + f" and {culprits[-1]}"
        matching = all(reports[c]["waiting"] for c in culprits)
        text = f"ranks {names} made no progress for {idle:.0f} s" + (
            ", each waiting in a collective the others do not join (one of them skipped or added a collective)"
            if matching else "") + ": " + "; ".join(
            f"rank {c} {reports[c]['where']} at {reports[c]['at']}" for c in culprits[:4])
        if len(culprits) > 4:
            text += f"; and {len(culprits) - 4} more"
    return (f"{text}. Stopping every rank (exit code {exit_code}); if such a pause is legitimate, raise "
            f"{limit_env} (now {limit:g} s)")
