"""``OnExceptionCheckpoint``: save a checkpoint when a run raises, to resume from (Lightning 2.x's callback).

The file is ``{dirpath}/{filename}.ckpt``. An error raised inside a training batch leaves that batch undone,
so the checkpoint resumes at it (the batch runs again), not after it as a checkpoint taken between batches
does; a Ctrl-C or SIGTERM, which lets the batch finish first, resumes after it. As in Lightning the file is
removed when a later run of the trainer ends without an error (it has served).
"""
from __future__ import annotations

import os
from typing import Any, Dict

from hookloop.engine import Callback


class OnExceptionCheckpoint(Callback):
    """Save ``{dirpath}/{filename}.ckpt`` when ``fit`` (or another run) raises.

    Args:
        dirpath: Directory of the checkpoint.
        filename: Its name, without the extension.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: Any, filename: str = "on_exception") -> None:
        self.dirpath = os.fspath(dirpath)
        self.filename = filename
        self._failed = False
        self._saving_after: Any = None  # the exception whose checkpoint is being written

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint is written."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """A run starts: nothing has failed in it yet."""
        self._failed = False

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Write the checkpoint (overwriting an older one)."""
        self._failed = True
        self._saving_after = exception
        try:
            trainer.save_checkpoint(self.ckpt_path)
        finally:
            self._saving_after = None

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any]) -> None:
        """Our checkpoint of an error inside a training batch resumes at that batch."""
        exception = self._saving_after
        if exception is None or isinstance(exception, KeyboardInterrupt) or trainer.state.phase != "train_batch":
            return
        loop = checkpoint.get("loop")
        state = trainer.state
        if not loop or loop.get("resume_epoch") != state.epoch or loop.get("resume_batch") != state.batch_idx + 1:
            return
        loop["resume_batch"] = state.batch_idx
        if state.batch_idx == 0:
            # Resuming at an epoch's start: the generators as they were when the epoch began.
            if loop.get("epoch_rng") is not None:
                checkpoint["rng"] = loop["epoch_rng"]
            loop["epoch_rng"], loop["epoch_metrics"] = None, {}

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """A run that ended without an error removes the file (as Lightning does)."""
        if not self._failed and trainer.is_global_zero and os.path.isfile(self.ckpt_path):
            os.remove(self.ckpt_path)


__all__ = ["OnExceptionCheckpoint"]
