"""Built-in ``data``: how an epoch iterates a dataloader (skipping batches on a resumed epoch)."""
from __future__ import annotations

import itertools
from typing import Any

from engine import hookimpl


class DataPlugin:
    """Default ``process_dataloader`` (unchanged) and ``iterate_dataloader`` (``iter``, skipping ``start_batch``)."""

    @hookimpl(trylast=True)
    def process_dataloader(self, trainer: Any, pl_module: Any, dataloader: Any, stage: str) -> Any:
        """Return the dataloader unchanged (distributed plugins replace its sampler before this)."""
        return dataloader

    @hookimpl(trylast=True)
    def iterate_dataloader(self, trainer: Any, pl_module: Any, dataloader: Any, stage: str, start_batch: int) -> Any:
        """``iter(dataloader)``; on a resumed epoch the first ``start_batch`` batches are skipped.

        Plugins that can skip without loading (the checkpoint plugin, at the sampler level)
        implement this hook themselves and run first.
        """
        iterator = iter(dataloader)
        if start_batch:
            return itertools.islice(iterator, start_batch, None)
        return iterator
