"""Built-in ``signals``: SIGTERM / Ctrl-C save a resumable checkpoint; SLURM's warning signal requeues the job.

During ``fit`` (main thread only) SIGTERM and SIGINT are caught. The handler does not
interrupt the step it lands in: it attaches a tiny plugin that raises
:class:`TrainingInterrupted` at the next safe point (after a training batch, or after the
epoch-end hooks when the batch was the epoch's last), so the loop state is consistent. The
exception runs every ``on_exception`` hook; this plugin's saves ``interrupted.ckpt`` (or,
on SLURM, ``hpc_ckpt_N.ckpt``) in ``default_root_dir``, and the process exits non-zero.
A second Ctrl-C interrupts at once.

On SLURM (``SLURM_JOB_ID`` set) the requeue signal (default SIGUSR1, sent by
``#SBATCH --signal=SIGUSR1@90``) also runs ``scontrol requeue``; the next run with no
``ckpt_path`` resumes from the highest-numbered ``hpc_ckpt_N.ckpt`` by itself.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, Optional

from hookloop.engine import hookimpl
from hookloop.plugins.checkpoint_io import INTERRUPTED_NAME


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal after a resumable checkpoint point; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"training interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class _StopAtSafePoint:
    """Raises :class:`TrainingInterrupted` at the first point where the loop state is consistent."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    @hookimpl(wrapper=True)
    def on_train_batch_end(self, trainer: Any, batch_idx: int) -> Any:
        """After every other plugin's batch-end work; an epoch's last batch waits for the epoch's end."""
        result = yield
        if batch_idx + 1 < trainer.num_training_batches:
            raise TrainingInterrupted(self.signum)
        return result

    @hookimpl(wrapper=True)
    def on_train_epoch_end(self, trainer: Any) -> Any:
        """After every epoch-end hook (schedulers, early stopping, checkpoints)."""
        yield
        raise TrainingInterrupted(self.signum)


class SignalsPlugin:
    """Turns SIGTERM/SIGINT (and SLURM's requeue signal) into a checkpoint and a non-zero exit.

    Args:
        requeue_signal: The signal SLURM sends before the time limit (default SIGUSR1).
        auto_requeue: Run ``scontrol requeue`` on the requeue signal under SLURM.
    """

    STOPPER = "signals-stop"

    def __init__(self, requeue_signal: int = signal.SIGUSR1, auto_requeue: bool = True) -> None:
        self.requeue_signal = requeue_signal
        self.auto_requeue = auto_requeue
        self._previous: Dict[int, Any] = {}
        self._trainer: Any = None
        self._received: Optional[int] = None
        #: Where the last interrupt checkpoint was written.
        self.saved_path: Optional[str] = None

    @staticmethod
    def in_slurm_job() -> bool:
        """True inside a SLURM job."""
        return bool(os.environ.get("SLURM_JOB_ID"))

    # ---- installing the handlers ------------------------------------------------------------

    @hookimpl
    def setup(self, trainer: Any, stage: str) -> None:
        """For ``fit``: install the handlers and, on SLURM, resume from the newest hpc checkpoint."""
        if stage != "fit":
            return
        if trainer.ckpt_path is None and self.in_slurm_job():
            newest = self.newest_hpc_checkpoint(trainer.default_root_dir)
            if newest is not None:
                print(f"[hookloop] SLURM job {os.environ['SLURM_JOB_ID']}: resuming from {newest}", file=sys.stderr)
                trainer.ckpt_path = newest
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        self._trainer = trainer
        self._received = None
        wanted = [signal.SIGTERM, signal.SIGINT]
        if self.in_slurm_job():
            wanted.append(self.requeue_signal)
        for signum in wanted:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not supported on this platform
                continue

    @hookimpl
    def teardown(self, trainer: Any) -> None:
        """Put the previous handlers back and detach the stopper."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if trainer.registry.get_plugin(self.STOPPER) is not None:
            trainer.registry.remove(self.STOPPER)
        self._trainer = None

    def _handle(self, signum: int, frame: Any) -> None:
        trainer = self._trainer
        if self._received is not None or trainer is None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            return
        self._received = signum
        if signum == signal.SIGTERM:
            trainer.received_sigterm = True
        print(f"[hookloop] received {signal.Signals(signum).name}: saving a checkpoint after the current batch",
              file=sys.stderr)
        trainer.registry.add(_StopAtSafePoint(signum), self.STOPPER, "callback", origin="signals (pending stop)")

    # ---- acting on the interrupt ------------------------------------------------------------

    @hookimpl
    def on_exception(self, trainer: Any, exception: BaseException) -> None:
        """Save the interrupt checkpoint (and requeue on SLURM)."""
        if not isinstance(exception, TrainingInterrupted):
            return
        slurm = self.in_slurm_job()
        if slurm and exception.signum == self.requeue_signal:
            path = os.path.join(trainer.default_root_dir, f"hpc_ckpt_{self._next_hpc_number(trainer.default_root_dir)}.ckpt")
        else:
            path = os.path.join(trainer.default_root_dir, INTERRUPTED_NAME)
        trainer.save_checkpoint(path)
        self.saved_path = path
        print(f"[hookloop] saved a resumable checkpoint to {path}; resume with trainer.fit(model, ckpt_path={path!r})",
              file=sys.stderr)
        if slurm and exception.signum == self.requeue_signal and self.auto_requeue and trainer.is_global_zero:
            self.requeue()

    def requeue(self) -> bool:
        """Run ``scontrol requeue`` for this job; return False (with a message) when scontrol is missing or fails."""
        job = os.environ.get("SLURM_JOB_ID", "")
        array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        if array_job and array_task:
            job = f"{array_job}_{array_task}"
        scontrol = shutil.which("scontrol")
        if scontrol is None:
            print(f"[hookloop] scontrol not found: SLURM job {job} is not requeued; resubmit it to resume.", file=sys.stderr)
            return False
        result = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"[hookloop] `scontrol requeue {job}` failed ({result.returncode}): {result.stderr.strip()}", file=sys.stderr)
            return False
        print(f"[hookloop] requeued SLURM job {job}", file=sys.stderr)
        return True

    # ---- hpc checkpoints ---------------------------------------------------------------------

    @staticmethod
    def _hpc_numbers(directory: str) -> Dict[int, str]:
        found = {}
        for path in glob.glob(os.path.join(glob.escape(directory), "hpc_ckpt_*.ckpt")):
            match = re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", os.path.basename(path))
            if match:
                found[int(match.group(1))] = path
        return found

    def newest_hpc_checkpoint(self, directory: str) -> Optional[str]:
        """The highest-numbered ``hpc_ckpt_N.ckpt`` in ``directory``, or ``None``."""
        found = self._hpc_numbers(directory)
        return found[max(found)] if found else None

    def _next_hpc_number(self, directory: str) -> int:
        found = self._hpc_numbers(directory)
        return max(found) + 1 if found else 1
