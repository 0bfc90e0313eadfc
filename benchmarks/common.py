"""Shared pieces of the benchmarks: the tiny MLP, its batches, and a clock that costs nothing per step.

Every contender trains the same network (32 -> 64 -> 10, ReLU, SGD) on the same batches.
Time is read only when an epoch's iteration *starts* (``TimedBatches.__iter__``), so the
per-step path of every contender is untouched by the measurement. A run trains ``E``
epochs; the time between the start of epoch 2 and the start of epoch ``E`` is ``E - 2``
full epochs (the first warms up, the last only closes the window), including whatever each
framework does at epoch boundaries (logging, checkpointing, bars).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

IN_FEATURES, HIDDEN, CLASSES, BATCH_SIZE = 32, 64, 10, 32

#: The clock every timestamp is read from. ``time.process_time`` (CPU seconds of this process,
#: all threads) by default: on a machine shared with other work, time spent waiting for a core
#: is not the contender's. ``bench_step.py --clock wall`` switches to ``time.perf_counter``.
CLOCKS: Dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
clock: Callable[[], float] = CLOCKS["cpu"]


def make_net(seed: int = 0) -> nn.Module:
    """The benchmark's network: 32 -> 64 -> 10 with a ReLU."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


def make_batches(n: int, seed: int = 0) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``n`` pre-built ``(x, y)`` batches of ``BATCH_SIZE`` samples."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH_SIZE, IN_FEATURES, generator=g), torch.randint(0, CLASSES, (BATCH_SIZE,), generator=g))
            for _ in range(n)]


class TimedBatches:
    """An iterable over pre-built batches that notes the time each epoch's iteration starts.

    Not a list on purpose: a trainer given a list takes it for a list of dataloaders.
    ``__iter__`` returns the list's own iterator, so fetching a batch costs what it costs
    in a plain ``for`` loop.
    """

    def __init__(self, batches: Sequence[Any]) -> None:
        self.batches = list(batches)
        self.starts: List[float] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        self.starts.append(clock())
        return iter(self.batches)


class TimedLoader(DataLoader):
    """A ``DataLoader`` (batch 32, no workers, no shuffling) that notes when each epoch starts."""

    def __init__(self, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> None:
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        super().__init__(TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=False)
        self.starts: List[float] = []

    def __iter__(self) -> Any:
        self.starts.append(clock())
        return super().__iter__()


def per_step_us(data: Any, steps_per_epoch: int) -> float:
    """Mean µs per step over the epochs after the first (from ``data.starts``)."""
    starts = data.starts
    if len(starts) < 3:
        raise RuntimeError(f"expected at least 3 epoch starts to time, got {len(starts)}")
    return (starts[-1] - starts[1]) / ((len(starts) - 2) * steps_per_epoch) * 1e6

