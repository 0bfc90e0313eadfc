"""Paired feeds: data that runs a plain PyTorch loop, timed, between every few batches it hands out.

``bench_step.py --method paired`` feeds every contender through one of these. Before each
``chunk`` batches it gives the contender, the feed trains ``chunk`` steps of its own plain loop
(its own network and optimizer, its own copy of the batches) and adds their time to the epoch's
``plain_seconds``. A run thus measures the contender and the plain loop alternating every few
milliseconds, and the contender's time is the epoch's time less the plain loop's part:

    contender = (start of epoch E - start of epoch 2) - plain time inside epochs 2 .. E-1

On a machine shared with other work, whose speed drifts by tens of per cent over seconds, both
sides of the ratio then see the same machine; rounds of whole runs (the ``rounds`` method) see
it change between one contender's run and the next.

The plain loop's batches are copies, so that it does not warm the contender's batches in the
cache just before the contender reads them (nor the other way round). Make the copies once, next
to the originals (:func:`twin_batches`): copies made anew for every run land wherever the
earlier runs left room in the heap, and on the project's machine that alone made the plain loop
1.7% slower than the same loop as a contender. Everything the contender
does at epoch boundaries (checkpoints, logger flushes) falls outside the plain chunks and counts
for the contender.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator, List, Sequence, Tuple

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import common

#: Plain steps (and contender batches) per alternation: about 2-5 ms of the benchmark's steps.
DEFAULT_CHUNK = 20


def twin_batches(batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Copies of ``batches`` for the plain loop of :class:`PairedBatches` (make them once, with the originals)."""
    return [(x.clone(), y.clone()) for x, y in batches]


class PlainSteps:
    """The reference loop of a paired feed: its own network and optimizer, stepped a few batches at a time."""

    def __init__(self) -> None:
        self.model = common.make_net()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.model.train()

    def run(self, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Train one step per batch of ``batches`` (fetching included); the seconds it took on ``common.clock``."""
        model, optimizer = self.model, self.optimizer
        start = common.clock()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return common.clock() - start


class _PairedTiming:
    """Epoch starts and the plain loop's seconds inside each epoch, and the per-step times they give."""

    starts: List[float]
    plain_seconds: List[float]

    def _open_epoch(self) -> None:
        self.starts.append(common.clock())
        self.plain_seconds.append(0.0)

    def keep_last(self, epochs: int) -> None:
        """Forget iterations before the last ``epochs`` (a trainer that iterates the data once to check it)."""
        self.starts = self.starts[-epochs:]
        self.plain_seconds = self.plain_seconds[-epochs:]

    def per_step_us(self, steps_per_epoch: int) -> Tuple[float, float]:
        """``(contender, plain)`` µs per step over the epochs after the first, up to the last one's start."""
        if len(self.starts) < 3:
            raise RuntimeError(f"expected at least 3 epoch starts to time, got {len(self.starts)}")
        steps = (len(self.starts) - 2) * steps_per_epoch
        plain = sum(self.plain_seconds[1:-1])
        whole = self.starts[-1] - self.starts[1]
        return (whole - plain) / steps * 1e6, plain / steps * 1e6


class PairedBatches(_PairedTiming):
    """Pre-built batches (an iterable, not a list: see ``common.TimedBatches``) paired with a plain loop."""

    def __init__(self, batches: Sequence[Any], twins: Sequence[Any], chunk: int = DEFAULT_CHUNK) -> None:
        if len(twins) != len(batches):
            raise ValueError(f"the plain loop needs one copy per batch: {len(batches)} batches, {len(twins)} copies")
        self.batches = list(batches)
        self.chunk = chunk
        self._plain = PlainSteps()
        self._plain_batches = list(twins)
        self.starts = []
        self.plain_seconds = []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        self._open_epoch()
        return self._alternate()

    def _alternate(self) -> Iterator[Any]:
        own, theirs, chunk, seconds = self.batches, self._plain_batches, self.chunk, self.plain_seconds
        for i in range(0, len(own), chunk):
            seconds[-1] += self._plain.run(theirs[i:i + chunk])
            yield from own[i:i + chunk]


class PairedLoader(DataLoader, _PairedTiming):
    """A ``DataLoader`` (batch 32, no workers, no shuffling) paired with a plain loop fed by its own ``DataLoader``."""

    def __init__(self, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]], chunk: int = DEFAULT_CHUNK) -> None:
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        super().__init__(TensorDataset(x, y), batch_size=common.BATCH_SIZE, shuffle=False)
        self.chunk = chunk
        self._plain = PlainSteps()
        # Unlike the list feed's, both datasets are made here, for every run, one after the other:
        # the two sides' data are equally new to the heap.
        self._plain_loader = DataLoader(TensorDataset(x.clone(), y.clone()), batch_size=common.BATCH_SIZE, shuffle=False)
        self.starts = []
        self.plain_seconds = []

    def __iter__(self) -> Any:
        self._open_epoch()
        return self._alternate(super().__iter__())

    def _alternate(self, own: Iterator[Any]) -> Iterator[Any]:
        chunk, seconds = self.chunk, self.plain_seconds
        start = common.clock()
        theirs = iter(self._plain_loader)
        seconds[-1] += common.clock() - start
        while True:
            seconds[-1] += self._plain.run(itertools.islice(theirs, chunk))
            handed = 0
            for batch in itertools.islice(own, chunk):
                handed += 1
                yield batch
            if handed < chunk:
                return
