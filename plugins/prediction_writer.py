"""``BasePredictionWriter``: write what ``trainer.predict`` produces, per batch and/or once per predict run.

Subclass it and override ``write_on_batch_end`` and/or ``write_on_epoch_end``, as in Lightning 2.x. Both get
the indices (in the dataset) of the samples of each batch: the callback records them by rebuilding each predict
``DataLoader`` around a batch sampler that remembers what it yielded (its order, shuffled or not, is unchanged).
A loader that cannot be rebuilt so (not a ``DataLoader``, an ``IterableDataset``, no automatic batching) gives
``None`` for its indices.
"""
from __future__ import annotations

import warnings
from enum import Enum
from typing import Any, Iterator, List, Optional

from torch.utils.data import DataLoader, IterableDataset, Sampler

from hookloop.engine import Callback, hookimpl
from hookloop.engine.errors import MisconfigurationException


class WriteInterval(str, Enum):
    """When a :class:`BasePredictionWriter` writes."""

    BATCH = "batch"
    EPOCH = "epoch"
    BATCH_AND_EPOCH = "batch_and_epoch"

    @property
    def on_batch(self) -> bool:
        """Writes after every batch."""
        return self in (WriteInterval.BATCH, WriteInterval.BATCH_AND_EPOCH)

    @property
    def on_epoch(self) -> bool:
        """Writes once the predict run is done."""
        return self in (WriteInterval.EPOCH, WriteInterval.BATCH_AND_EPOCH)


class BasePredictionWriter(Callback):
    """Base class of callbacks that write predictions.

    Args:
        write_interval: ``'batch'`` (``write_on_batch_end`` after every batch), ``'epoch'``
            (``write_on_epoch_end`` with every prediction at the end) or ``'batch_and_epoch'``.

    Example::

        class Writer(BasePredictionWriter):
            def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                                   dataloader_idx):
                torch.save(prediction, f"predictions/{dataloader_idx}-{batch_idx}.pt")

        trainer.predict(model, dataloaders=loader, return_predictions=False)
    """

    def __init__(self, write_interval: str = "batch") -> None:
        choices = [i.value for i in WriteInterval]
        if write_interval not in choices:
            raise MisconfigurationException(
                f"{type(self).__name__}(write_interval={write_interval!r}): use one of {choices}.")
        self.interval = WriteInterval(write_interval)
        self._recorders: List[Optional[_RecordingBatchSampler]] = []
        self._predictions: List[List[Any]] = []
        self._batch_indices: List[List[Optional[List[int]]]] = []
        hooks = {"setup", "process_dataloader", "on_predict_epoch_start", "on_predict_batch_end"}
        if self.interval.on_epoch:
            hooks.add("on_predict_epoch_end")
        self.__engine_hooks__ = hooks

    # ---- what subclasses write ----------------------------------------------------------------
    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Optional[List[int]],
                           batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        """Override: write one batch's ``prediction`` (``batch_indices``: its samples' indices in the dataset)."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval.value!r}) must override "
                                  "write_on_batch_end(...).")

    def write_on_epoch_end(self, trainer: Any, pl_module: Any, predictions: List[Any],
                           batch_indices: List[List[Optional[List[int]]]]) -> None:
        """Override: write every prediction of the run.

        ``predictions`` is the list of batch outputs (a list of them per dataloader with several);
        ``batch_indices`` holds, per dataloader, the samples' indices of each batch.
        """
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.interval.value!r}) must override "
                                  "write_on_epoch_end(...).")

    # ---- hooks ---------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """A predict run starts: its loaders are recorded anew."""
        if stage == "predict":
            self._recorders = []

    @hookimpl(wrapper=True)
    def process_dataloader(self, trainer: Any, pl_module: Any, dataloader: Any, stage: str) -> Iterator[None]:
        """Around the other plugins: a predict loader comes back rebuilt on a recording batch sampler."""
        loader = yield
        if stage != "predict":
            return loader
        recorded, recorder = _recording(loader)
        self._recorders.append(recorder)
        return recorded

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Start collecting (what ``write_on_epoch_end`` gets)."""
        count = max(len(self._recorders), 1)
        self._predictions = [[] for _ in range(count)]
        self._batch_indices = [[] for _ in range(count)]

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        """Write the batch (``'batch'``), and keep it for the end (``'epoch'``)."""
        recorder = self._recorders[dataloader_idx] if dataloader_idx < len(self._recorders) else None
        indices = recorder.seen[batch_idx] if recorder is not None and batch_idx < len(recorder.seen) else None
        if self.interval.on_batch:
            self.write_on_batch_end(trainer, pl_module, outputs, indices, batch, batch_idx, dataloader_idx)
        if self.interval.on_epoch:
            while len(self._predictions) <= dataloader_idx:
                self._predictions.append([])
                self._batch_indices.append([])
            self._predictions[dataloader_idx].append(outputs)
            self._batch_indices[dataloader_idx].append(indices)

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Write everything (one dataloader's predictions as one list, as Lightning hands them)."""
        predictions = self._predictions[0] if len(self._predictions) == 1 else self._predictions
        self.write_on_epoch_end(trainer, pl_module, predictions, self._batch_indices)
        self._predictions, self._batch_indices = [], []


class _RecordingBatchSampler(Sampler):
    """A batch sampler that yields its inner one's batches and remembers each (from the epoch's start)."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        #: The index lists yielded so far this epoch (a loader's workers may read ahead; batch ``i`` is ``seen[i]``).
        self.seen: List[List[int]] = []

    def __iter__(self) -> Iterator[List[int]]:
        self.seen = []
        for batch in self.batch_sampler:
            self.seen.append(list(batch))
            yield batch

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _recording(loader: Any) -> Any:
    """``(loader, recorder)``: ``loader`` rebuilt on a recording batch sampler, or as it is with ``None``."""
    if (not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset)
            or loader.batch_sampler is None):
        return loader, None
    recorder = _RecordingBatchSampler(loader.batch_sampler)
    kwargs = dict(batch_sampler=recorder, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                  pin_memory=loader.pin_memory, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                  multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
                  persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    try:
        return type(loader)(loader.dataset, **kwargs), recorder
    except (TypeError, ValueError) as exc:
        warnings.warn(f"BasePredictionWriter could not rebuild the predict dataloader ({type(loader).__name__}: "
                      f"{exc}) to record its batches' indices; the writer gets batch_indices=None for it.")
        return loader, None


__all__ = ["BasePredictionWriter", "WriteInterval"]
