"""The benchmarks' own logic (no timing is asserted): the noise warning and the epoch-boundary clock."""
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
        for name in ("bench_step", "bench_epoch", "common"):  # generic names: leave no trace for other tests
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
