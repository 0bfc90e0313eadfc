"""Custom loop behaviour (b): a ``wrapper=True`` plugin that times every training batch.

A wrapper runs around all other implementations of a hook: the code before ``yield`` runs
first, ``yield`` runs the rest (here: whoever does the batch's work, built-in or SAM), and
the code after it sees the result. It changes nothing it wraps.

Run: ``python examples/plugins/batch_timer.py``
"""
from __future__ import annotations

import time
from typing import Any, Generator, List

from engine import hookimpl


class BatchTimer:
    """Records the wall time of every training batch in :attr:`durations` (seconds)."""

    def __init__(self) -> None:
        self.durations: List[float] = []

    @hookimpl(wrapper=True)
    def run_training_batch(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> Generator[None, Any, Any]:
        """Time the batch's work, whoever does it, and pass its result on unchanged."""
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            self.durations.append(time.perf_counter() - start)


if __name__ == "__main__":
    from _toy import ToyRegression, quiet_trainer_kwargs

    from engine import Trainer

    timer = BatchTimer()
    Trainer(max_epochs=2, plugins=[timer], **quiet_trainer_kwargs()).fit(ToyRegression())
    print(f"{len(timer.durations)} batches, mean {1e3 * sum(timer.durations) / len(timer.durations):.2f} ms")
