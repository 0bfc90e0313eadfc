"""Per-step cost of hookloop's DDP against a hand-written DDP loop, 2 processes under torchrun (CPU, gloo).

Usage::

    python benchmarks/ddp_overhead.py            # starts torchrun --nproc_per_node=2 with itself as worker
    python benchmarks/ddp_overhead.py --quick    # a smoke run

Both contenders train the benchmarks' 32->64->10 MLP (batch 32 per rank, SGD) wrapped in
DistributedDataParallel, on the same per-rank shard of the data (a ``DistributedSampler``),
one torch thread per rank. The hand-written loop is ``for x, y in loader: zero_grad,
loss = ddp(x...), backward, step``; hookloop runs ``Trainer(accelerator='cpu', strategy='ddp')``
with logging, checkpoints, bars and summary off. Rounds alternate (plain, hookloop, plain, ...)
after a warm-up; time covers whole epochs after the first (see ``common.py``). Rank 0 prints
the median µs per step of each and their ratio. DDP's all-reduce of the gradients is in both.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: hookloop's DDP step may cost at most this much more than the hand-written loop's.
TARGET_RATIO = 1.10


def _loader(batches: int) -> Any:
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from common import BATCH_SIZE, make_batches

    class TimedShard(DataLoader):
        """This rank's half of the data; notes when each epoch's iteration starts."""

        def __init__(self) -> None:
            data = make_batches(batches * 2)
            dataset = TensorDataset(torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data]))
            sampler = DistributedSampler(dataset, num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                         shuffle=False)
            super().__init__(dataset, batch_size=BATCH_SIZE, sampler=sampler)
            self.starts: List[float] = []

        def __iter__(self) -> Any:
            self.starts.append(time.perf_counter())
            return super().__iter__()

    return TimedShard()


def run_plain(batches: int, epochs: int) -> float:
    """The hand-written DDP loop; returns µs per step."""
    import torch
    from torch.nn import functional as F
    from torch.nn.parallel import DistributedDataParallel

    from common import make_net, per_step_us

    loader = _loader(batches)
    model = DistributedDataParallel(make_net())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(epochs + 1):  # one more iteration start closes the last timed epoch
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        if epoch == epochs:
            break
    return per_step_us(loader, len(loader))


def run_hookloop(batches: int, epochs: int) -> float:
    """hookloop with strategy='ddp' (torchrun's processes, its process group); returns µs per step."""
    import torch
    from torch.nn import functional as F

    from common import make_net, per_step_us
    from engine import LightningModule, Trainer

    class BenchModule(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    loader = _loader(batches)
    trainer = Trainer(accelerator="cpu", strategy="ddp", max_epochs=epochs + 1, limit_train_batches=1.0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    # max_epochs + 1 epochs: the last epoch's start closes the timed span; its own time is not counted.
    trainer.fit(BenchModule(), loader)
    return per_step_us(loader, len(loader))


def worker(batches: int, epochs: int, repeats: int) -> int:
    """One rank: alternate the contenders, rank 0 reports."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    run_plain(batches, 2)  # warm-up
    run_hookloop(batches, 2)
    plain: List[float] = []
    hook: List[float] = []
    for _ in range(repeats):
        plain.append(run_plain(batches, epochs))
        hook.append(run_hookloop(batches, epochs))
    ratios = [h / p for h, p in zip(hook, plain)]
    ok = statistics.median(ratios) <= TARGET_RATIO
    if dist.get_rank() == 0:
        print(f"DDP, 2 processes (torchrun, gloo, CPU), {batches} steps/epoch/rank, {epochs} timed epochs, "
              f"{repeats} rounds")
        print(f"  hand-written DDP loop : {statistics.median(plain):8.1f} µs/step")
        print(f"  hookloop strategy=ddp : {statistics.median(hook):8.1f} µs/step   "
              f"ratio {statistics.median(ratios):.3f} (target <= {TARGET_RATIO}) {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: Any = None) -> int:
    """Start torchrun with this file as the worker (or be the worker)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer batches and rounds")
    parser.add_argument("--batches", type=int, default=None, help="steps per epoch per rank")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per round")
    parser.add_argument("--repeats", type=int, default=None, help="rounds")
    args = parser.parse_args(argv)
    batches = args.batches or (50 if args.quick else 200)
    epochs = args.epochs or (2 if args.quick else 4)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.worker:
        return worker(batches, epochs, repeats)
    from plugins.environments import find_free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={find_free_port()}", os.path.abspath(__file__), "--worker",
               f"--batches={batches}", f"--epochs={epochs}", f"--repeats={repeats}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
