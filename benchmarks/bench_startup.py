"""Import time and start-up time of hookloop (and Lightning, when installed).

Usage::

    python benchmarks/bench_startup.py              # 7 fresh processes per measurement

Each number is the median over fresh interpreter processes, run interleaved:

* ``import torch`` against ``import engine`` — the target is that ``import engine`` costs at
  most 0.15 s more than ``import torch`` (exit status 1 and FAIL otherwise); it also checks
  that ``import engine`` loads none of the heavy optional modules (tensorboardX, tensorboard,
  protobuf), which must wait until first used.
* start-up: the time from ``Trainer(...)`` (imports already done) to the first training
  batch reaching the loop, for hookloop's default Trainer (without the bar) and Lightning's,
  beside a plain loop's time from building the model and optimizer to its first batch. The
  first optimizer a process builds imports ``torch._dynamo`` (about a second); that happens
  before the clock starts, for every contender.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

IMPORT_BUDGET_S = 0.15
#: Modules ``import engine`` must not load (they are imported when first used).
HEAVY = ("tensorboardX", "tensorboard", "google.protobuf", "pytorch_lightning", "lightning")

_TIME_IMPORT = """
import sys, time
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
heavy = [m for m in {heavy!r} if m in sys.modules]
print(elapsed, ",".join(heavy))
"""

# Runs in a fresh process: imports first (not timed), then Trainer(...) -> first batch.
_TIME_STARTUP = """
import os, sys, time, warnings, logging
sys.path.insert(0, {bench_dir!r})
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)
import common
from common import TimedBatches, make_batches
import bench_step
common.clock = time.perf_counter  # start-up is wall time
batches = make_batches(8)
# The first optimizer built in a process imports torch._dynamo (about a second): do it before
# the clock starts, so every contender is timed on its own work (Lightning's import does it too).
torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
data = TimedBatches(batches)
root = {root!r}
if {which!r} == "plain":  # the floor: building the model and optimizer, one step
    start = time.perf_counter()
    bench_step.run_plain(data, 1, root)
elif {which!r} == "hookloop":
    from engine import Trainer
    module = bench_step._hookloop_module()
    start = time.perf_counter()
    trainer = Trainer(max_epochs=1, default_root_dir=root, enable_progress_bar=False)
    with bench_step._quiet():
        trainer.fit(module, train_dataloaders=data)
else:
    import pytorch_lightning as pl
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    runner = bench_step.lightning_runner(enable_progress_bar=False)
    start = time.perf_counter()
    runner(data, 1, root)  # builds pl.Trainer(...) and the module, then fits
print(data.starts[0] - start)
"""


def _run(code: str) -> str:
    env = dict(os.environ, ENGINE_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def import_times(repeats: int) -> bool:
    """Median ``import torch`` and ``import engine`` times; True if within the budget and nothing heavy loaded."""
    times: Dict[str, List[float]] = {"torch": [], "engine": []}
    heavy_loaded = set()
    for _ in range(repeats + 1):  # the first round warms the file cache (and the .pyc files) and is dropped
        for module in times:
            parts = _run(_TIME_IMPORT.format(module=module, heavy=HEAVY)).split(" ", 1)
            times[module].append(float(parts[0]))
            if module == "engine" and len(parts) > 1 and parts[1].strip():
                heavy_loaded.update(parts[1].strip().split(","))
    torch_s = statistics.median(times["torch"][1:])
    engine_s = statistics.median(times["engine"][1:])
    ok = engine_s - torch_s <= IMPORT_BUDGET_S and not heavy_loaded
    print(f"import torch : {torch_s:.3f} s (median of {repeats} fresh processes)")
    print(f"import engine: {engine_s:.3f} s  -> +{engine_s - torch_s:.3f} s over torch "
          f"(budget +{IMPORT_BUDGET_S:.2f} s) {'PASS' if engine_s - torch_s <= IMPORT_BUDGET_S else 'FAIL'}")
    print(f"heavy modules loaded by `import engine`: {', '.join(sorted(heavy_loaded)) or 'none'} "
          f"{'FAIL' if heavy_loaded else 'PASS'}")
    return ok


def startup_times(repeats: int) -> None:
    """Median time from ``Trainer(...)`` to the first training batch, hookloop and (if installed) Lightning."""
    which = ["plain", "hookloop"]
    try:
        import pytorch_lightning  # noqa: F401
        which.append("lightning")
    except ImportError:
        pass
    results: Dict[str, List[float]] = {w: [] for w in which}
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    for _ in range(repeats):
        for w in which:
            with tempfile.TemporaryDirectory() as root:
                results[w].append(float(_run(_TIME_STARTUP.format(bench_dir=bench_dir, root=root, which=w))))
    for w in which:
        what = "model + optimizer -> first batch" if w == "plain" else "Trainer(...) -> first training batch"
        print(f"{what:38s} {w:9s}: {statistics.median(results[w]) * 1e3:7.1f} ms "
              f"(median of {repeats} fresh processes)")
    if "lightning" not in which:
        print("Lightning is not installed (pip install -e .[bench]): no comparison.")


def main(argv: Optional[List[str]] = None) -> int:
    """Run both measurements; exit status 1 if the import budget is exceeded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per measurement (median)")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}")
    ok = import_times(args.repeats)
    startup_times(args.repeats)
    print("ALL TARGETS PASS" if ok else "SOME TARGETS FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
