"""What an epoch boundary costs: the time between one epoch's last batch and the next epoch's first.

Usage::

    python benchmarks/bench_epoch.py                # 5 rounds of 12 epochs x 200 batches per contender
    python benchmarks/bench_epoch.py --repeats 9
    python benchmarks/bench_epoch.py --parts        # what the per-epoch checkpoint's parts cost

``bench_step.py`` spreads per-epoch work (checkpoints, logger flushes, bars, generator
captures) over the steps of an epoch; this script times it by itself, so that a difference
between two contenders' per-step costs can be told apart into per-step and per-epoch work.
The data is a generator over pre-built batches that reads the clock when an epoch's
iteration starts and when it runs out (the loop asks once more after the last batch); the
boundary is the time from one epoch's end to the next one's start, median over the epochs
after the second. Contenders run interleaved, one warm-up round first; CPU time by default.

``--parts`` takes the default trainer's per-epoch checkpoint apart: the same run with the
fsyncs made no-ops, with the file written to memory instead of disk, with nothing serialized,
and with no checkpoint dict built (what is left is ModelCheckpoint's own bookkeeping). Each
variant replaces one internal function for the duration of its run; the differences between
neighbouring rows are the parts' costs.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import sys
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from unittest import mock

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from bench_step import PLAIN, Runner, _cpu_model, hookloop_runner, run_plain  # noqa: E402
from common import make_batches  # noqa: E402


class BoundaryTimedBatches:
    """Pre-built batches whose iterator notes when each epoch's iteration starts and when it runs out."""

    def __init__(self, batches: Sequence[Any]) -> None:
        self.batches = list(batches)
        self.starts: List[float] = []
        self.ends: List[float] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        self.starts.append(common.clock())
        yield from self.batches
        self.ends.append(common.clock())

    def boundaries_us(self, skip: int = 2) -> List[float]:
        """µs from each epoch's end to the next epoch's start, after the first ``skip`` epochs."""
        return [(start - end) * 1e6 for end, start in zip(self.ends[skip:], self.starts[skip + 1:])]


def contenders() -> List[Tuple[str, Runner]]:
    """The plain loop and hookloop with each per-epoch feature on or off."""
    off = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0)
    return [
        (PLAIN, run_plain),
        ("hookloop everything off", hookloop_runner(**off)),
        ("hookloop default, no bar", hookloop_runner(enable_progress_bar=False)),
        ("hookloop default, no bar, no checkpoint", hookloop_runner(enable_progress_bar=False, enable_checkpointing=False)),
        ("hookloop default, no bar, no logger", hookloop_runner(enable_progress_bar=False, logger=False)),
        ("hookloop default + bar", hookloop_runner()),
    ]


def _patched(runner: Runner, *patches: Callable[[], Any]) -> Runner:
    """``runner`` with each ``patch()`` context manager active during its run."""
    def run(data: Any, epochs: int, root: str) -> None:
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch())
            runner(data, epochs, root)

    return run


def checkpoint_parts() -> List[Tuple[str, Runner]]:
    """The default trainer (no bar) with the per-epoch checkpoint's parts removed one after another."""
    import plugins.checkpoint_io as checkpoint_io

    def to_memory(obj: Any, filepath: str) -> None:
        torch.save(obj, io.BytesIO())

    no_fsync = lambda: mock.patch("os.fsync", lambda fd: None)  # noqa: E731
    write_to_memory = lambda: mock.patch.object(checkpoint_io, "atomic_save", to_memory)  # noqa: E731
    no_serializing = lambda: mock.patch.object(checkpoint_io, "atomic_save", lambda obj, filepath: None)  # noqa: E731
    no_dict = lambda: mock.patch.object(checkpoint_io.CheckpointIO, "dump_checkpoint",  # noqa: E731
                                        lambda self, trainer, weights_only=False: {})
    off = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0)
    default = hookloop_runner(enable_progress_bar=False)
    return [
        (PLAIN, run_plain),
        ("hookloop everything off", hookloop_runner(**off)),
        ("default, no bar", default),
        ("  ... fsync a no-op", _patched(default, no_fsync)),
        ("  ... torch.save to memory, no file", _patched(default, write_to_memory)),
        ("  ... nothing serialized", _patched(default, no_serializing)),
        ("  ... no checkpoint dict built", _patched(default, no_serializing, no_dict)),
        ("default, no bar, no checkpoint", hookloop_runner(enable_progress_bar=False, enable_checkpointing=False)),
    ]


def measure(runner: Runner, batches: List[Any], epochs: int) -> float:
    """Median boundary (µs) of one run of ``runner`` on fresh data."""
    data = BoundaryTimedBatches(batches)
    gc.collect()
    with tempfile.TemporaryDirectory() as root:
        runner(data, epochs, root)
    gaps = data.boundaries_us()
    if len(gaps) < 3:
        raise RuntimeError(f"expected at least 3 timed epoch boundaries, got {len(gaps)}")
    return statistics.median(gaps)


def collect(n_batches: int, epochs: int, repeats: int, parts: bool = False) -> Dict[str, List[float]]:
    """Interleaved rounds: contender -> median boundary µs of each round."""
    batches = make_batches(n_batches)
    runners = checkpoint_parts() if parts else contenders()
    for _, runner in runners:  # warm-up round: imports, allocator, caches
        measure(runner, batches, epochs)
    times: Dict[str, List[float]] = {name: [] for name, _ in runners}
    for _ in range(repeats):
        for name, runner in runners:
            times[name].append(measure(runner, batches, epochs))
    return times


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run the rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per epoch (default 200)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per run; boundaries after the second are timed")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--clock", choices=sorted(common.CLOCKS), default="cpu")
    parser.add_argument("--parts", action="store_true", help="take the per-epoch checkpoint apart (see above)")
    args = parser.parse_args(argv)
    if args.epochs < 6:
        parser.error("--epochs must be at least 6 (three timed boundaries after two warm-up epochs)")
    torch.set_num_threads(1)
    common.clock = common.CLOCKS[args.clock]
    os.environ.setdefault("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, 1 thread, {args.clock} clock, "
          f"CPU: {_cpu_model()}")
    times = collect(args.batches, args.epochs, args.repeats, args.parts)
    print(f"\n== epoch boundary: {args.batches} batches/epoch, {args.epochs} epochs, "
          f"median of {args.repeats} interleaved rounds ==")
    print(f"{'contender':44s} {'µs/boundary':>12s} {'+µs vs plain':>13s} {'+µs/step at 1000-step epochs':>29s}")
    for name, values in times.items():
        us = statistics.median(values)
        extra = statistics.median(t - p for t, p in zip(values, times[PLAIN]))
        print(f"{name:44s} {us:12.1f} {extra:+13.1f} {extra / 1000:+29.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
