"""Sharding a dataloader across processes: the ``DistributedSampler`` the distributed plugin inserts.

A loader with the default sampler gets a ``torch.utils.data.DistributedSampler`` (shuffled
when the original shuffled, seeded from ``PL_GLOBAL_SEED``). A custom sampler is kept and
wrapped in :class:`ShardedSampler`, which deals its indices out to the ranks. A custom
``batch_sampler`` cannot be sharded safely and is a clear error.
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterator, List, Optional

from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                              Sampler, SequentialSampler)

from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.seed import SEED_ENV


class ShardedSampler(Sampler):
    """Every ``num_replicas``-th index of a user's ``sampler``, starting at ``rank``.

    The inner sampler's order is drawn in every process (so it must be seeded identically,
    e.g. by ``seed_everything``); the index list is padded by repetition so each rank gets
    the same number of samples, as ``DistributedSampler`` does.
    """

    def __init__(self, sampler: Sampler, num_replicas: int, rank: int) -> None:
        self.sampler = sampler
        self.num_replicas = num_replicas
        self.rank = rank

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.num_replicas)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        indices: List[Any] = list(self.sampler)
        total = len(self) * self.num_replicas
        if indices and len(indices) < total:
            indices += (indices * math.ceil(total / len(indices)))[: total - len(indices)]
        return iter(indices[self.rank:total:self.num_replicas])

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the inner sampler if it reshuffles by epoch."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def distributed_loader(dataloader: Any, stage: str, num_replicas: int, rank: int) -> Optional[DataLoader]:
    """``dataloader`` rebuilt to read this rank's share, or ``None`` when it must stay as it is.

    Stays as it is: not a ``DataLoader``, an ``IterableDataset`` (it shards itself), or a
    sampler that is already distributed.
    """
    if not isinstance(dataloader, DataLoader) or isinstance(dataloader.dataset, IterableDataset):
        return None
    sampler = dataloader.sampler
    if isinstance(sampler, (DistributedSampler, ShardedSampler)):
        return None
    batch_sampler = dataloader.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        raise MisconfigurationException(
            f"The {stage} dataloader uses a custom batch_sampler ({type(batch_sampler).__name__}), which cannot "
            "be split across processes automatically. Shard it yourself (use global_rank/world_size) and pass "
            "Trainer(use_distributed_sampler=False) (seed-era: replace_sampler_ddp=False)."
        )
    if type(sampler) in (RandomSampler, SequentialSampler):
        seed = int(os.environ.get(SEED_ENV, 0))
        new_sampler: Sampler = DistributedSampler(
            dataloader.dataset, num_replicas=num_replicas, rank=rank,
            shuffle=isinstance(sampler, RandomSampler), seed=seed, drop_last=False,
        )
    else:
        new_sampler = ShardedSampler(sampler, num_replicas, rank)
    kwargs = dict(
        batch_size=dataloader.batch_size, shuffle=False, sampler=new_sampler,
        num_workers=dataloader.num_workers, collate_fn=dataloader.collate_fn, pin_memory=dataloader.pin_memory,
        drop_last=dataloader.drop_last, timeout=dataloader.timeout, worker_init_fn=dataloader.worker_init_fn,
        multiprocessing_context=dataloader.multiprocessing_context, generator=dataloader.generator,
        persistent_workers=dataloader.persistent_workers,
    )
    if dataloader.num_workers > 0:
        kwargs["prefetch_factor"] = dataloader.prefetch_factor
    try:
        return type(dataloader)(dataloader.dataset, **kwargs)
    except TypeError as exc:
        raise MisconfigurationException(
            f"Could not rebuild the {stage} dataloader ({type(dataloader).__name__}) with a DistributedSampler: "
            f"{exc}. Give it a sampler yourself and pass Trainer(use_distributed_sampler=False)."
        ) from exc
