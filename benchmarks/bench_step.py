"""Per-step cost of hookloop against a plain PyTorch loop (and Lightning/Ignite when installed).

Usage::

    python benchmarks/bench_step.py                 # pre-built batches, then a DataLoader-fed run
    python benchmarks/bench_step.py --quick         # fewer batches and repeats (a smoke run)
    python benchmarks/bench_step.py --feed list     # only the pre-built-batches run
    python benchmarks/bench_step.py --processes 3 --repeats 5   # rounds in 3 fresh processes, pooled
    python benchmarks/bench_step.py --method rounds  # ratios to the plain loop's own run of each round

One process, one torch thread. Every contender trains the same 32->64->10 MLP (batch 32,
SGD) for ``--epochs`` epochs of ``--batches`` batches. Contenders run interleaved
(A B C ... A B C ...) after one warm-up round; each prints the median µs per step over
``--repeats`` rounds and the median of its per-round ratio to the plain loop: by default
the plain loop that ran in alternation with the contender, every 20 batches, inside its own
run (``--method paired``, see ``paired.py``: the machine's drift cancels out), or the plain
loop's own run of the same round (``--method rounds``). Targets (checked here, never in
unit tests) are printed as PASS/FAIL and the exit status is 1 when one fails. Per-step time
covers whole epochs (see ``common.py``), so per-epoch work — checkpoints, logger flushes —
counts. Time is the process's CPU time by
default (``--clock wall`` for wall time): on a shared machine, waiting for a core is noise.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import TimedBatches, TimedLoader, make_batches, make_net, per_step_us  # noqa: E402
from paired import PairedBatches, PairedLoader, twin_batches  # noqa: E402

#: Ratio-to-plain targets, by contender name.
TARGETS: Dict[str, float] = {
    "hookloop default, no bar": 1.05,
    "hookloop default + bar": 1.10,
    "hookloop everything off": 1.03,
}

Runner = Callable[[Any, int, str], None]

#: The two references: a hand-written loop on a bare ``nn.Module``, and the same loop calling the
#: benchmark module's own ``training_step`` (Lightning's parity benchmark calls that its vanilla loop).
PLAIN = "plain PyTorch loop"
PLAIN_MODULE = "plain loop, module's training_step"


# ---------------------------------------------------------------------------------------
# contenders: each trains ``epochs`` epochs over ``data`` in a fresh model and trainer
# ---------------------------------------------------------------------------------------

def run_plain(data: Any, epochs: int, root: str) -> None:
    """The reference: a hand-written PyTorch loop."""
    model = make_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        for x, y in data:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()


def run_plain_module(data: Any, epochs: int, root: str) -> None:
    """The plain loop over hookloop's module: its ``training_step`` called by hand.

    What Lightning's own parity benchmark calls its vanilla loop. Against it, a ratio is the
    trainer's cost alone; against :func:`run_plain`, it also holds what the module's own code
    costs (a Python method and its ``self.net`` lookups through ``nn.Module.__getattr__``).
    """
    module = _hookloop_module()
    optimizer = module.configure_optimizers()
    module.train()
    for _ in range(epochs):
        for batch_idx, batch in enumerate(data):
            loss = module.training_step(batch, batch_idx)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()


def _hookloop_module(log: bool = False) -> Any:
    from engine import LightningModule

    class BenchModule(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            if log:
                self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return BenchModule()


def hookloop_runner(log: bool = False, terminal: bool = False, **flags: Any) -> Runner:
    """A contender that fits hookloop's public ``Trainer`` with ``flags`` (stdout on a terminal if ``terminal``)."""
    def run(data: Any, epochs: int, root: str) -> None:
        from engine import Trainer

        trainer = Trainer(max_epochs=epochs, default_root_dir=root, **flags)
        with _terminal() if terminal else _quiet():
            trainer.fit(_hookloop_module(log), train_dataloaders=data)

    return run


def lightning_runner(**flags: Any) -> Optional[Runner]:
    """Lightning's Trainer on the same network, or ``None`` when Lightning is not installed."""
    try:
        import pytorch_lightning as pl
    except ImportError:
        try:
            import lightning.pytorch as pl  # type: ignore[no-redef]
        except ImportError:
            return None
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    class LitBench(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def run(data: Any, epochs: int, root: str) -> None:
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=root,
                             num_sanity_val_steps=0, **flags)
        with _quiet():
            trainer.fit(LitBench(), train_dataloaders=data)

    return run


def ignite_runner() -> Optional[Runner]:
    """Ignite's ``create_supervised_trainer`` on the same network, or ``None`` when not installed."""
    try:
        from ignite.engine import create_supervised_trainer
    except ImportError:
        return None

    def run(data: Any, epochs: int, root: str) -> None:
        model = make_net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        create_supervised_trainer(model, optimizer, F.cross_entropy).run(data, max_epochs=epochs)

    return run


@contextlib.contextmanager
def _quiet() -> Any:
    """Send progress bars and summaries to /dev/null; silence warnings (same for every contender)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _terminal() -> Any:
    """Like :func:`_quiet`, but stdout is a pseudo-terminal, so bars draw (tqdm) as they do for a user.

    A ``cat`` child process drains the terminal: its reading costs this process nothing.
    """
    import fcntl  # POSIX only; needed by this contender alone
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 x 0, and tqdm draws nothing 0 columns wide: give it a usual size.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    drain = subprocess.Popen(["cat"], stdin=master, stdout=subprocess.DEVNULL)
    try:
        with open(slave, "w", buffering=1) as term, open(os.devnull, "w") as sink, \
                contextlib.redirect_stdout(term), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        drain.kill()
        drain.wait()
        os.close(master)


def contenders(feed: str) -> List[Tuple[str, Runner]]:
    """Every contender available in this environment, plain loop first."""
    off = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0)
    found: List[Tuple[str, Optional[Runner]]] = [
        (PLAIN, run_plain),
        (PLAIN_MODULE, run_plain_module),
        ("hookloop default, no bar", hookloop_runner(enable_progress_bar=False)),
        ("hookloop default + bar", hookloop_runner()),
        ("hookloop default + bar in a terminal", hookloop_runner(terminal=True)),
        ("hookloop everything off", hookloop_runner(**off)),
        ("hookloop default, no bar, self.log/step", hookloop_runner(log=True, enable_progress_bar=False)),
        ("hookloop everything off, profiler='simple'", hookloop_runner(profiler="simple", **off)),
        ("Lightning default, no bar", lightning_runner(enable_progress_bar=False)),
        ("Lightning default + bar", lightning_runner()),
        ("Ignite create_supervised_trainer", ignite_runner()),
    ]
    if feed == "loader":  # the bar, self.log and profiler variants add nothing new here
        found = [c for c in found if ("bar" not in c[0] or "no bar" in c[0])
                 and "self.log" not in c[0] and "profiler" not in c[0]]
    return [(name, runner) for name, runner in found if runner is not None]


# ---------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------

#: ``{contender: [µs per step, one per round]}``.
Times = Dict[str, List[float]]


def measure(runner: Runner, feed: str, batches: List[Any], epochs: int, method: str = "rounds",
            twins: Optional[List[Any]] = None) -> Tuple[float, float]:
    """Run ``runner`` once on fresh data: ``(µs per step, the paired plain loop's µs per step)`` over epochs 2..E-1.

    ``method="paired"`` feeds the run through ``paired.py``; the list feed's plain loop then steps
    on ``twins`` (copies of ``batches`` made once). For ``rounds`` the second value is ``nan`` (the
    reference is the plain loop's own run).
    """
    if method == "paired":
        data: Any = PairedBatches(batches, twins or []) if feed == "list" else PairedLoader(batches)
    else:
        data = TimedBatches(batches) if feed == "list" else TimedLoader(batches)
    gc.collect()
    with tempfile.TemporaryDirectory() as root:
        runner(data, epochs, root)
    if len(data.starts) < epochs:
        raise RuntimeError(f"expected {epochs} epochs to start, saw {len(data.starts)}")
    # Lightning iterates a plain iterable once before training to check it: keep the epochs' starts.
    if method == "paired":
        data.keep_last(epochs)
        return data.per_step_us(len(batches))
    data.starts = data.starts[-epochs:]
    return per_step_us(data, len(batches)), math.nan


def collect(feed: str, n_batches: int, epochs: int, repeats: int, only: Optional[str] = None,
            method: str = "paired") -> Tuple[Times, Times]:
    """Interleaved rounds of every contender in this process: ``(times, references)``.

    ``times[name]`` holds the contender's µs per step, one per round; ``references[name]`` the
    plain loop's µs per step its ratios are taken against, paired by position: the plain loop's
    run of the same round (``rounds``), or the plain loop run in alternation inside the
    contender's own run (``paired``). ``only``: keep the two plain loops and the contenders whose
    name contains this text.
    """
    batches = make_batches(n_batches)
    # The list feed's plain loop steps on copies made once, beside the originals (see paired.py).
    twins = twin_batches(batches) if method == "paired" and feed == "list" else None
    runners = contenders(feed)
    if only:
        runners = [c for c in runners if c[0] in (PLAIN, PLAIN_MODULE) or only.lower() in c[0].lower()]
    for _, runner in runners:  # warm-up round: imports, allocator, caches
        measure(runner, feed, batches, epochs, method, twins)
    times: Times = {name: [] for name, _ in runners}
    paired: Times = {name: [] for name, _ in runners}
    for _ in range(repeats):
        for name, runner in runners:
            own, plain = measure(runner, feed, batches, epochs, method, twins)
            times[name].append(own)
            paired[name].append(plain)
    if method == "paired":
        return times, paired
    return times, {name: times[PLAIN] for name in times}


def report(feed: str, times: Times, references: Times, n_batches: int, epochs: int, how: str,
           method: str = "paired") -> bool:
    """Print the table of ``times`` against ``references`` (see :func:`collect`); True if every target holds."""
    what = "pre-built batches in a list" if feed == "list" else "a DataLoader (batch 32, no workers)"
    print(f"\n== {what}: {n_batches} batches/epoch, {epochs} epochs (timed: {epochs - 2}), {how} ==")
    against = ("the plain loop run in alternation with it" if method == "paired"
               else "the plain loop of the same round")
    print(f"+µs and ratio: to {against} (medians over rounds); module: ratio to the plain loop calling\n"
          "the module's training_step (the trainer's own cost). Targets are checked on the ratio to the plain loop.")
    print("spread: interquartile range of the per-round ratios to the plain loop.")
    print(f"{'contender':44s} {'µs/step':>8s} {'+µs':>7s} {'ratio':>7s} {'spread':>7s} {'module':>7s}  target")
    ratios = {name: [t / r for t, r in zip(times[name], references[name])] for name in times}
    ok = True
    for name in times:
        us = statistics.median(times[name])
        extra = statistics.median(t - r for t, r in zip(times[name], references[name]))
        ratio = statistics.median(ratios[name])
        module_ratio = (statistics.median(a / b for a, b in zip(ratios[name], ratios[PLAIN_MODULE]))
                        if PLAIN_MODULE in ratios else math.nan)
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            passed = ratio <= target
            ok &= passed
            verdict = (f"<= {target:.2f}x {'PASS' if passed else 'FAIL'}"
                       f" (module ratio {'PASS' if module_ratio <= target else 'FAIL'})")
        spread = _spread(ratios[name])
        print(f"{name:44s} {us:8.1f} {extra:+7.1f} {ratio:6.3f}x {spread:7.3f} {module_ratio:6.3f}x  {verdict}")
    warning = noise_warning(times, references if method == "paired" else None)
    if warning:
        print(f"\nWARNING: {warning}")
    return ok


#: Above this, the rounds disagree by more than the margins the targets are about (on the project's
#: machine, idle, the plain loop's rounds spread by about 1% and the two reference loops differ by 1-2%).
NOISE_LIMIT = 0.03
#: The paired method's self-check: the plain loop measured against the plain loop run in alternation
#: with it must come out within this of 1 (the method itself must not favour either side), and its
#: per-run ratios must not spread by more than this (0.4-0.8% on a quiet day; the targets' margins
#: are often less than a per cent).
PAIRED_BIAS_LIMIT = 0.01


def noise_warning(times: Times, paired: Optional[Times] = None) -> Optional[str]:
    """A sentence saying why this machine was too noisy for the verdicts to mean much, or ``None``.

    Signs independent of hookloop: the two reference loops (which differ by one Python method
    call) differ by more than that call costs; and, for rounds (``paired`` is ``None``), the
    plain loop's own rounds spread widely, or, for the paired method (``paired`` holds each run's
    alternating plain loop), the plain loop against its alternating twin is off 1 or spreads.
    """
    plain = times[PLAIN]
    reasons = []
    if paired is None:
        relative = _spread(plain) / statistics.median(plain)
        if relative > NOISE_LIMIT:
            reasons.append(f"the plain loop's rounds spread by {relative:.1%} (interquartile range / median; "
                           f"limit {NOISE_LIMIT:.0%})")
        references = _median_ratio(times[PLAIN_MODULE], plain) if PLAIN_MODULE in times else 1.0
    else:
        twins = [t / r for t, r in zip(plain, paired[PLAIN])]
        self_check = statistics.median(twins)
        if abs(self_check - 1) > PAIRED_BIAS_LIMIT:
            reasons.append(f"the plain loop measured {self_check:.3f}x the plain loop alternating with it "
                           f"(limit: {PAIRED_BIAS_LIMIT:.0%} off 1)")
        if _spread(twins) > PAIRED_BIAS_LIMIT:
            reasons.append(f"the plain loop's ratios to its alternating twin spread by {_spread(twins):.1%} "
                           f"(limit {PAIRED_BIAS_LIMIT:.0%})")
        references = (statistics.median(
            (m / pm) / (t / r) for m, pm, t, r in zip(times[PLAIN_MODULE], paired[PLAIN_MODULE], plain, paired[PLAIN]))
            if PLAIN_MODULE in times else 1.0)
    if abs(references - 1) > NOISE_LIMIT:
        reasons.append(f"the loop calling the module's training_step measured {references:.3f}x the plain loop "
                       f"(limit: {NOISE_LIMIT:.0%} off 1)")
    if not reasons:
        return None
    return ("this machine was noisy: " + "; ".join(reasons) + ". Differences of a few per cent, and the PASS/FAIL "
            "verdicts above, are not reliable; run again on an idle machine.")


def _spread(values: List[float]) -> float:
    """Interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q3 - q1


def collect_in_processes(feed: str, args: argparse.Namespace) -> Tuple[Times, Times]:
    """:func:`collect` in ``args.processes`` fresh interpreters, one after the other; their rounds pooled.

    Where objects land in memory differs from process to process, and a trainer's Python objects,
    touched between torch's kernels, are sensitive to it: in one process all rounds share one
    layout, so fresh processes sample what rounds cannot.
    """
    pooled: Times = {}
    pooled_references: Times = {}
    for _ in range(args.processes):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "times.json")
            command = [sys.executable, os.path.abspath(__file__), "--feed", feed, "--batches", str(args.batches),
                       "--epochs", str(args.epochs), "--repeats", str(args.repeats), "--clock", args.clock,
                       "--method", args.method, "--times-to", out] + (["--only", args.only] if args.only else [])
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            with open(out) as f:
                saved = json.load(f)
            for name, values in saved["times"].items():
                pooled.setdefault(name, []).extend(values)
                pooled_references.setdefault(name, []).extend(saved["references"][name])
    return pooled, pooled_references


def _median_ratio(times: List[float], reference: List[float]) -> float:
    """Median of per-round ratios: neighbours in time share the machine's state."""
    return statistics.median(t / r for t, r in zip(times, reference))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run the benchmarks, return the exit status (1 if a target failed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=1000, help="batches per epoch (default 1000)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first and last are not timed")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (median; at least 5)")
    parser.add_argument("--feed", choices=("list", "loader", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 batches, 5 rounds")
    parser.add_argument("--only", help="run the plain loops and the contenders whose name contains this text")
    parser.add_argument("--clock", choices=sorted(common.CLOCKS), default="cpu",
                        help="cpu: CPU time of the process (default; steady on a shared machine); wall: wall time")
    parser.add_argument("--processes", type=int, default=1,
                        help="run the rounds in this many fresh processes, one after the other, and pool them")
    parser.add_argument("--method", choices=("paired", "rounds"), default="paired",
                        help="paired (default): each run alternates every 20 batches with a plain loop, the ratio's "
                             "reference (see paired.py); rounds: ratios to the plain loop's run of the same round")
    parser.add_argument("--times-to", help=argparse.SUPPRESS)  # a worker of --processes: write the times here
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.repeats = 200, 5
    if args.repeats < 5:
        parser.error("--repeats must be at least 5 (a median of fewer rounds says little on a shared machine)")
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (the first and the last epoch are not timed)")
    torch.set_num_threads(1)
    common.clock = common.CLOCKS[args.clock]
    os.environ.setdefault("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")  # measure hookloop, not what else is installed
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, 1 thread, {args.clock} clock, "
          f"CPU: {_cpu_model()}")
    if args.times_to:
        times, references = collect(args.feed, args.batches, args.epochs, args.repeats, args.only, args.method)
        with open(args.times_to, "w") as f:
            json.dump({"times": times, "references": references}, f)
        return 0
    ok = True
    for feed in (("list", "loader") if args.feed == "both" else (args.feed,)):
        if args.processes > 1:
            times, references = collect_in_processes(feed, args)
            how = f"median of {args.processes} processes x {args.repeats} interleaved rounds"
        else:
            times, references = collect(feed, args.batches, args.epochs, args.repeats, args.only, args.method)
            how = f"median of {args.repeats} interleaved rounds"
        if args.method == "paired":
            how += ", each run paired with a plain loop"
        ok &= report(feed, times, references, args.batches, args.epochs, how, args.method)
    print("\nALL TARGETS PASS" if ok else "\nSOME TARGETS FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
