"""Nothing accumulates per step: flat memory over 100 epochs; epoch-end outputs detached and freed."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
import weakref
from pathlib import Path
from typing import Any, Dict, List

import torch
from torch import nn
from torch.nn import functional as F

from engine import Callback, LightningModule, Trainer

OFF = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
           num_sanity_val_steps=0)


class TinyMLP(LightningModule):
    """The benchmark's network (32 -> 64 -> 10), no ``*_epoch_end`` override."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)  # a logged value per step must not pile up either
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Batches:
    """A few pre-built batches (an iterable, not a list of dataloaders)."""

    def __init__(self, n: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
                        for _ in range(n)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _status_kb(field: str) -> int:
    """``VmRSS``/``VmHWM`` of this process in kB, from ``/proc/self/status``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _live_tensors() -> int:
    # type() rather than isinstance(): some lazy torch objects warn when their __class__ is read.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


class MemoryProbe(Callback):
    """Samples memory at the end of epochs ``first`` (after warm-up), ``mid`` and ``last``.

    Python allocations are traced from ``first`` on and compared between ``mid`` and ``last``:
    an object replaced every epoch (an RNG state, say) then counts once on both sides.
    """

    def __init__(self, first: int, mid: int, last: int) -> None:
        self.first, self.mid, self.last = first, mid, last
        self.samples: Dict[int, Dict[str, int]] = {}

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch
        if epoch not in (self.first, self.mid, self.last):
            return
        gc.collect()
        if epoch == self.first:
            tracemalloc.start()
        self.samples[epoch] = {
            "peak_rss_kb": _status_kb("VmHWM"),
            "rss_kb": _status_kb("VmRSS"),
            "tensors": _live_tensors(),
            "python_bytes": tracemalloc.get_traced_memory()[0],
        }
        if epoch == self.last:
            tracemalloc.stop()


class Hoarder(Callback):
    """What a leak looks like: keeps every step's output (used to show the probe notices)."""

    def __init__(self) -> None:
        self.kept: List[Any] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.kept.append(outputs["loss"])


def _fit_100_epochs(*callbacks: Callback) -> MemoryProbe:
    probe = MemoryProbe(first=2, mid=50, last=99)
    trainer = Trainer(max_epochs=100, callbacks=[*callbacks, probe], **OFF)
    trainer.fit(TinyMLP(), train_dataloaders=Batches())
    return probe


#: Steps between the probe's ``mid`` and ``last`` samples (epochs 50 -> 99, 4 batches each).
WINDOW_STEPS = (99 - 50) * 4
#: Python bytes per step above which memory counts as leaking (one kept loss adds ~100).
LEAK_BYTES_PER_STEP = 60


def _growth(probe: MemoryProbe) -> Dict[str, float]:
    first, mid, last = (probe.samples[e] for e in (probe.first, probe.mid, probe.last))
    return {
        "peak_rss_ratio": last["peak_rss_kb"] / first["peak_rss_kb"],
        "rss_ratio": last["rss_kb"] / first["rss_kb"],
        "tensors": last["tensors"] - first["tensors"],
        "python_bytes": last["python_bytes"] - mid["python_bytes"],
    }


def _growth_in_fresh_process(hoard: bool) -> Dict[str, float]:
    """Run the 100 epochs in a fresh interpreter: the test session's own allocations stay out of the count."""
    code = ("import json, tests.test_memory as m; "
            f"print(json.dumps(m._growth(m._fit_100_epochs(*([m.Hoarder()] if {hoard} else [])))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=str(Path(__file__).parent.parent))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_is_flat_over_100_epochs():
    growth = _growth_in_fresh_process(hoard=False)
    # Peak and current RSS within 5% of epoch 2's.
    assert growth["peak_rss_ratio"] <= 1.05, growth
    assert growth["rss_ratio"] <= 1.05, growth
    # Stronger than RSS for a model this small: no tensor piles up over 97 epochs x 4 steps, and
    # Python memory does not grow over the last 49 epochs: less than one small object (a tensor's
    # Python side is ~100 bytes) per step; what is left (1-7 kB measured) is interpreter and torch caches.
    assert growth["tensors"] <= 2, growth
    assert growth["python_bytes"] < LEAK_BYTES_PER_STEP * WINDOW_STEPS, growth


def test_the_probe_notices_a_per_step_leak():
    # The same run with a callback that keeps each step's loss: 388 tensors more, and their memory.
    growth = _growth_in_fresh_process(hoard=True)
    assert growth["tensors"] >= 97 * 4 - 2, growth
    assert growth["python_bytes"] > LEAK_BYTES_PER_STEP * WINDOW_STEPS, growth


class EpochEndModel(TinyMLP):
    """Overrides the seed-era ``training_epoch_end``: gets the epoch's outputs, which must be detached."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: List[weakref.ref] = []
        self.had_grad: List[bool] = []
        self.sizes: List[int] = []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return {"loss": loss, "extra": loss * 2}

    def training_epoch_end(self, outputs):
        self.sizes.append(len(outputs))
        for out in outputs:
            for value in out.values():
                self.had_grad.append(value.requires_grad or value.grad_fn is not None)
                self.refs.append(weakref.ref(value))


def test_training_epoch_end_outputs_are_detached_and_freed():
    model = EpochEndModel()
    trainer = Trainer(max_epochs=3, **OFF)
    trainer.fit(model, train_dataloaders=Batches())
    assert model.sizes == [4, 4, 4]  # each epoch's outputs only, not a running list
    assert model.had_grad and not any(model.had_grad)  # detached: no graph kept alive
    gc.collect()
    alive = [r for r in model.refs if r() is not None]
    assert not alive, f"{len(alive)} of {len(model.refs)} epoch-end outputs still referenced after the hook"
