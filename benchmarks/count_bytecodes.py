"""Python bytecodes executed per training step, counted (not timed): deterministic, unlike the clock.

Usage::

    python benchmarks/count_bytecodes.py                 # every contender, 200 counted steps
    python benchmarks/count_bytecodes.py --only "off"    # the contenders whose name contains "off"
    python benchmarks/count_bytecodes.py --json out.json

Every contender trains the benchmark's MLP (``bench_step.py``) on pre-built batches for one
epoch, twice: ``--batches`` batches, then ``--batches`` plus ``--steps`` more. Each run is counted
with ``sys.settrace`` opcode events in every Python frame (the trainer's, torch's, the module's);
the difference of the two counts over ``--steps`` is the cost of one step, with everything a run
does once (imports, set-up, the epoch's start and end) cancelled out. The two reference loops of
``bench_step.py`` are counted too: a trainer's own bytecodes per step are its count less that of
the loop calling the module's ``training_step``.

Besides ``bench_step.py``'s contenders, the everything-off Trainer is counted on the fast path's
other forms — a module with ``training_step_end`` (the ``training_step`` hook called, as under DDP),
a callback listening around the step (the step's events fired) — and off its fast path (clipping,
accumulation over 2 batches, manual optimization), so that a change there shows as well.
Counts move with the Python version and with torch's Python code; compare runs of one environment.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Callable, Dict, List, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step import PLAIN, PLAIN_MODULE, Runner, _hookloop_module, _quiet, hookloop_runner, run_plain, \
    run_plain_module  # noqa: E402
from common import TimedBatches, make_batches  # noqa: E402

#: The everything-off flags of ``bench_step.py``.
OFF = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
           num_sanity_val_steps=0)


def manual_runner(**flags: Any) -> Runner:
    """The benchmark module under manual optimization: ``manual_backward``, ``opt.step()``, ``opt.zero_grad()``."""
    def run(data: Any, epochs: int, root: str) -> None:
        from engine import Trainer

        module = _hookloop_module()
        step = type(module).training_step

        def training_step(batch: Any, batch_idx: int) -> torch.Tensor:
            opt = module.optimizers()
            loss = step(module, batch, batch_idx)
            module.manual_backward(loss)
            opt.step()
            opt.zero_grad()
            return loss

        module.automatic_optimization = False
        module.training_step = training_step
        trainer = Trainer(max_epochs=epochs, default_root_dir=root, **flags)
        with _quiet():
            trainer.fit(module, train_dataloaders=data)

    return run


def listener_runner(**flags: Any) -> Runner:
    """hookloop with a callback listening to ``on_before_zero_grad``: the fast path's step then fires its events."""
    def run(data: Any, epochs: int, root: str) -> None:
        from engine import Callback

        class ZeroGradListener(Callback):
            def on_before_zero_grad(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
                pass  # being called is the point

        hookloop_runner(callbacks=[ZeroGradListener()], **flags)(data, epochs, root)

    return run


def step_end_runner(**flags: Any) -> Runner:
    """hookloop on a module with ``training_step_end``: the fast path calls the ``training_step`` hook
    (its direct form is off, as under DDP), still bare."""
    def run(data: Any, epochs: int, root: str) -> None:
        from engine import Trainer

        module = _hookloop_module()
        module.training_step_end = lambda output: output
        trainer = Trainer(max_epochs=epochs, default_root_dir=root, **flags)
        with _quiet():
            trainer.fit(module, train_dataloaders=data)

    return run


def contenders() -> List[Tuple[str, Runner]]:
    """``bench_step.py``'s references and hookloop contenders, then everything off on the general paths."""
    return [
        (PLAIN, run_plain),
        (PLAIN_MODULE, run_plain_module),
        ("hookloop default, no bar", hookloop_runner(enable_progress_bar=False)),
        ("hookloop everything off", hookloop_runner(**OFF)),
        ("hookloop everything off, training_step_end", step_end_runner(**OFF)),
        ("hookloop everything off, profiler='simple'", hookloop_runner(profiler="simple", **OFF)),
        ("hookloop everything off, on_before_zero_grad listener",
         listener_runner(**OFF)),
        ("hookloop everything off, gradient_clip_val=1", hookloop_runner(gradient_clip_val=1.0, **OFF)),
        ("hookloop everything off, accumulate_grad_batches=2", hookloop_runner(accumulate_grad_batches=2, **OFF)),
        ("hookloop everything off, manual optimization", manual_runner(**OFF)),
    ]


def count_opcodes(fn: Callable[[], None]) -> int:
    """How many bytecodes Python executes while ``fn()`` runs (every frame started inside it)."""
    count = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "opcode":
            count += 1
        return local

    def start(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True  # opcode events for this frame; no line events are asked for
        return local

    sys.settrace(start)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def per_step(runner: Runner, batches: int, steps: int) -> float:
    """Bytecodes per step of ``runner``: the difference of a one-epoch run of ``batches + steps`` and of ``batches``."""
    data = make_batches(batches + steps)
    with tempfile.TemporaryDirectory() as root:  # warm-up: imports and first-use work happen once, uncounted
        runner(TimedBatches(data[:batches]), 1, root)
    counts = []
    for n in (batches, batches + steps):
        with tempfile.TemporaryDirectory() as root:
            feed = TimedBatches(data[:n])
            counts.append(count_opcodes(lambda: runner(feed, 1, root)))
    return (counts[1] - counts[0]) / steps


def main(argv: List[str] = None) -> int:
    """Count every contender and print the table (and write ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="batches of the shorter run (default 100)")
    parser.add_argument("--steps", type=int, default=200, help="extra batches of the longer run (default 200)")
    parser.add_argument("--only", help="count the references and the contenders whose name contains this")
    parser.add_argument("--json", help="also write {contender: bytecodes per step} to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    runners = contenders()
    if args.only:
        runners = [c for c in runners if c[0] in (PLAIN, PLAIN_MODULE) or args.only.lower() in c[0].lower()]
    results: Dict[str, float] = {}
    print(f"bytecodes per step (sys.settrace opcode events; {args.batches}- and {args.batches + args.steps}-batch "
          "runs differenced); own: over the loop calling the module's training_step")
    for name, runner in runners:
        results[name] = per_step(runner, args.batches, args.steps)
        own = results[name] - results[PLAIN_MODULE] if PLAIN_MODULE in results else float("nan")
        print(f"{name:52s} {results[name]:9.1f}  own {own:+7.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
