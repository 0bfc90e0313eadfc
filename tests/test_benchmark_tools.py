"""The benchmarks' own logic (no timing is asserted): the noise warning, the epoch-boundary clock, the bytecode count."""
from __future__ import annotations

import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, BENCHMARKS)
    try:
        import bench_epoch
        import bench_step

        yield bench_step, bench_epoch
    finally:
        sys.path.remove(BENCHMARKS)
        for name in ("bench_step", "bench_epoch", "common", "paired", "count_bytecodes"):  # generic names: leave no trace
            sys.modules.pop(name, None)


def test_no_warning_when_the_rounds_agree(bench):
    bench_step, _ = bench
    times = {bench_step.PLAIN: [100.0, 100.5, 99.8, 100.2, 100.1],
             bench_step.PLAIN_MODULE: [101.0, 101.2, 100.9, 101.1, 101.0]}
    assert bench_step.noise_warning(times) is None


def test_a_wide_spread_of_the_plain_loop_is_reported(bench):
    bench_step, _ = bench
    times = {bench_step.PLAIN: [100.0, 130.0, 90.0, 120.0, 100.0],
             bench_step.PLAIN_MODULE: [101.0, 131.0, 91.0, 121.0, 101.0]}
    warning = bench_step.noise_warning(times)
    assert warning is not None and "plain loop's rounds spread" in warning and "not reliable" in warning


def test_reference_loops_far_apart_are_reported(bench):
    bench_step, _ = bench
    times = {bench_step.PLAIN: [100.0, 100.0, 100.0, 100.0, 100.0],
             bench_step.PLAIN_MODULE: [110.0, 110.0, 110.0, 110.0, 110.0]}
    assert "1.100x the plain loop" in bench_step.noise_warning(times)


def test_the_boundary_clock_times_the_gap_between_epochs(bench, monkeypatch):
    _, bench_epoch = bench
    ticks = iter(range(100))
    monkeypatch.setattr(bench_epoch.common, "clock", lambda: next(ticks) / 1e6)
    data = bench_epoch.BoundaryTimedBatches(["a", "b"])
    for _ in range(6):
        assert list(data) == ["a", "b"]
        next(ticks)  # the boundary's work takes one tick
    # start, end per epoch; between an end and the next start, two ticks passed (one here, one read)
    assert data.boundaries_us(skip=2) == pytest.approx([2.0, 2.0, 2.0])


def test_checkpoint_parts_remove_what_they_name_and_only_during_their_run(bench, tmp_path, monkeypatch):
    """``bench_epoch.py --parts``: each variant trains, writes (or not) as its name says, and restores the functions."""
    import plugins.checkpoint_io as checkpoint_io

    _, bench_epoch = bench
    monkeypatch.setenv("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    real = (os.fsync, checkpoint_io.atomic_save, checkpoint_io.CheckpointIO.dump_checkpoint)
    runners = dict(bench_epoch.checkpoint_parts())
    expect_files = {"default, no bar": True, "  ... fsync a no-op": True, "  ... torch.save to memory, no file": False,
                    "  ... nothing serialized": False, "  ... no checkpoint dict built": False}
    for name, writes in expect_files.items():
        root = tmp_path / str(len(os.listdir(tmp_path)))
        root.mkdir()
        runners[name](bench_epoch.BoundaryTimedBatches(bench_epoch.make_batches(3)), 2, str(root))
        written = [f for _, _, files in os.walk(root) for f in files if f.endswith(".ckpt")]
        assert bool(written) == writes, name
        assert (os.fsync, checkpoint_io.atomic_save, checkpoint_io.CheckpointIO.dump_checkpoint) == real, name


# ---- the paired method (bench_step.py --method paired, benchmarks/paired.py) ----------------


def test_paired_warning_ignores_host_drift_but_not_a_biased_self_check(bench):
    """Paired runs cancel the host's drift between runs; the plain loop against its twin must stay near 1."""
    bench_step, _ = bench
    drifting = [100.0, 130.0, 90.0, 120.0, 100.0]  # the host's speed moved by a third between runs
    times = {bench_step.PLAIN: drifting, bench_step.PLAIN_MODULE: [t * 1.01 for t in drifting]}
    paired = {bench_step.PLAIN: list(drifting), bench_step.PLAIN_MODULE: list(drifting)}
    assert bench_step.noise_warning(times, paired) is None
    assert "rounds spread" in bench_step.noise_warning(times)  # the rounds method would have warned

    biased = {bench_step.PLAIN: [t / 1.02 for t in drifting], bench_step.PLAIN_MODULE: list(drifting)}
    assert "1.020x the plain loop alternating with it" in bench_step.noise_warning(times, biased)

    unsteady = {bench_step.PLAIN: [t * f for t, f in zip(drifting, (1.0, 1.02, 0.98, 1.0, 1.03))],
                bench_step.PLAIN_MODULE: list(drifting)}
    assert "ratios to its alternating twin spread by" in bench_step.noise_warning(times, unsteady)


def test_paired_report_takes_each_ratio_against_its_own_run(bench, capsys):
    bench_step, _ = bench
    times = {bench_step.PLAIN: [50.0] * 5, bench_step.PLAIN_MODULE: [50.0] * 5,
             "hookloop everything off": [110.0, 220.0, 55.0, 110.0, 110.0]}
    references = {bench_step.PLAIN: [50.0] * 5, bench_step.PLAIN_MODULE: [50.0] * 5,
                  "hookloop everything off": [100.0, 200.0, 50.0, 100.0, 100.0]}
    assert bench_step.report("list", times, references, 1000, 4, "test", method="paired") is False
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hookloop everything off"))
    assert "1.100x" in row and "+10.0" in row and "1.03x FAIL" in row


def _counting(data):
    """Make ``data``'s plain loop count the batches it steps on."""
    stepped = []
    run = data._plain.run

    def counting_run(batches):
        batches = list(batches)
        stepped.append(len(batches))
        return run(batches)

    data._plain.run = counting_run
    return stepped


@pytest.mark.parametrize("feed", ["list", "loader"])
def test_paired_feeds_hand_out_every_batch_and_step_the_plain_loop_on_copies(bench, feed):
    import paired
    import torch

    _, bench_epoch = bench
    batches = bench_epoch.make_batches(7)
    data = (paired.PairedBatches(batches, paired.twin_batches(batches), chunk=3) if feed == "list"
            else paired.PairedLoader(batches, chunk=3))
    stepped = _counting(data)
    before = [p.detach().clone() for p in data._plain.model.parameters()]
    for epoch in range(3):
        handed = list(data)
        assert len(handed) == 7
        for (x, y), (bx, by) in zip(handed, batches):
            assert torch.equal(x, bx) and torch.equal(y, by)
    assert sum(stepped) == 21 and max(stepped) == 3  # the plain loop stepped as many batches, 3 at a time
    assert not all(torch.equal(a, p) for a, p in zip(before, data._plain.model.parameters()))
    assert len(data.starts) == len(data.plain_seconds) == 3 and all(s > 0 for s in data.plain_seconds)
    # copies: the plain loop does not warm the contender's own tensors in the cache
    if feed == "list":
        assert all(px.data_ptr() != x.data_ptr() for (px, _), (x, _) in zip(data._plain_batches, data.batches))
    else:
        assert data._plain_loader.dataset.tensors[0].data_ptr() != data.dataset.tensors[0].data_ptr()


def test_paired_per_step_time_is_the_epochs_less_the_plain_loop(bench):
    import paired

    _, bench_epoch = bench
    batches = bench_epoch.make_batches(2)
    data = paired.PairedBatches(batches, paired.twin_batches(batches))
    data.starts = [0.0, 1.0, 2.0, 3.0, 4.0]  # epochs 1..3 timed (1 s each)
    data.plain_seconds = [9.0, 0.25, 0.5, 0.25, 9.0]  # the first and the last epoch fall outside the window
    own, plain = data.per_step_us(steps_per_epoch=1000)
    assert own == pytest.approx((3.0 - 1.0) / 3000 * 1e6)
    assert plain == pytest.approx(1.0 / 3000 * 1e6)
    data.keep_last(3)
    assert data.starts == [2.0, 3.0, 4.0] and data.plain_seconds == [0.5, 0.25, 9.0]


@pytest.mark.parametrize("processes", [1, 2])
def test_bench_step_runs_the_paired_method_end_to_end(bench, capsys, monkeypatch, processes):
    """The CLI wiring of ``--method paired`` (default), also through ``--processes`` workers; no timing is asserted."""
    bench_step, _ = bench
    monkeypatch.setenv("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    status = bench_step.main(["--feed", "list", "--batches", "40", "--epochs", "3", "--repeats", "5",
                              "--only", "no contender has this name", "--processes", str(processes)])
    out = capsys.readouterr().out
    assert status == 0  # no targeted contender ran
    assert "each run paired with a plain loop" in out and "to the plain loop run in alternation with it" in out
    rows = [line for line in out.splitlines() if line.startswith(("plain PyTorch loop", "plain loop, module's"))]
    assert len(rows) == 2


def test_the_bytecode_count_of_a_step_is_deterministic_and_sees_the_trainer(bench, monkeypatch):
    """count_bytecodes.py: two counts agree exactly; hookloop's fast path counts more than the loop it wraps."""
    import count_bytecodes

    monkeypatch.setenv("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    module_loop = count_bytecodes.per_step(count_bytecodes.run_plain_module, 10, 20)
    assert module_loop > 0 and module_loop == count_bytecodes.per_step(count_bytecodes.run_plain_module, 10, 20)
    assert count_bytecodes.per_step(count_bytecodes.hookloop_runner(**count_bytecodes.OFF), 10, 20) > module_loop
