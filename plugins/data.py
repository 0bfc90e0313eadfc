"""Built-in ``data``: how an epoch iterates a dataloader (skipping batches on a resumed epoch)."""
from __future__ import annotations

import itertools
from typing import Any

from torch.utils.data import DataLoader, RandomSampler

from hookloop.engine import hookimpl


class DataPlugin:
    """Default ``process_dataloader`` (unchanged) and ``iterate_dataloader`` (``iter``, skipping ``start_batch``)."""

    @hookimpl(trylast=True)
    def process_dataloader(self, trainer: Any, pl_module: Any, dataloader: Any, stage: str) -> Any:
        """Return the dataloader unchanged (distributed plugins replace its sampler before this).

        With ``overfit_batches`` the training data is not shuffled (as in Lightning), so every
        epoch sees the same batches.
        """
        if stage == "train" and trainer.overfit_batches and _shuffles(dataloader):
            return _without_shuffle(dataloader)
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


def _shuffles(dataloader: Any) -> bool:
    """True for a plain ``DataLoader`` built with ``shuffle=True``."""
    return type(dataloader) is DataLoader and isinstance(dataloader.sampler, RandomSampler)


def _without_shuffle(dataloader: DataLoader) -> DataLoader:
    """The same ``DataLoader`` with a sequential sampler (its other settings kept)."""
    return DataLoader(
        dataloader.dataset, batch_size=dataloader.batch_size, shuffle=False,
        num_workers=dataloader.num_workers, collate_fn=dataloader.collate_fn,
        pin_memory=dataloader.pin_memory, drop_last=dataloader.drop_last, timeout=dataloader.timeout,
        worker_init_fn=dataloader.worker_init_fn, generator=dataloader.generator,
        persistent_workers=dataloader.persistent_workers,
    )
