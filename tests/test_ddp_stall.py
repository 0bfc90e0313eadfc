"""A rank whose main loop stops moving ends the whole DDP job, named, within the stall limit.

The multi-process tests run the script of :mod:`tests.ddp_support` (2 ranks, gloo on 127.0.0.1)
with ``HL_HANG`` making one rank hang, spin, pause or add a collective at a given batch, and
``HOOKLOOP_DDP_STALL_TIMEOUT`` set to a few seconds. Without the stall watchdog these runs
would wait for the 1800 s collective timeout (the helpers' own timeout fails them first).
The last tests check the pieces the watchdog thread uses, without processes.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

from engine.errors import MisconfigurationException
from engine.state import LoopState
from plugins.distributed_progress import LoopProgress, Position, describe_frame, stall_culprits, stall_message
from plugins.distributed_watchdog import EXIT_STALLED, STALL_TIMEOUT_ENV, Watchdog, seconds_from_env
from tests.ddp_support import describe, free_port, results, run, script_env, torchrun, write_script

#: The stall limit of these runs (seconds).
LIMIT = 5
#: "Did not hang": from the moment a rank hangs, the job must be over within this (the README
#: promises the limit plus a few seconds).
BOUND = 4 * LIMIT


@dataclass
class _Job:
    """A finished run: the launcher's process, when it ended, and the ranks still running then."""

    proc: subprocess.CompletedProcess
    ended: float
    left_running: List[int]


def _run_hanging(tmp_path: Path, launcher: str, hang: str) -> _Job:
    script = write_script(tmp_path)
    env = script_env(tmp_path, HL_HANG=hang, **{STALL_TIMEOUT_ENV: str(LIMIT)})
    if launcher == "torchrun":
        env["HL_MODE"] = "external"
        command = torchrun(script, 2, free_port())
    else:
        env["HL_MODE"] = launcher
        command = [sys.executable, str(script)]
    try:
        proc = run(command, env, tmp_path, timeout=120)
        return _Job(proc, time.time(), _running_ranks(tmp_path))
    finally:
        # A run that timed out leaves the ranks its launcher started: end them (the test fails anyway).
        for pid in _running_ranks(tmp_path):
            os.kill(pid, signal.SIGKILL)


def _running_ranks(tmp_path: Path) -> List[int]:
    """Pids of this run's ranks that still run (each rank writes its pid in ``setup``)."""
    running = []
    for pid_file in (tmp_path / "out").glob("pid*"):
        pid = int(pid_file.read_text())
        try:
            if "zombie" not in Path(f"/proc/{pid}/status").read_text():
                running.append(pid)
        except OSError:  # gone
            pass
    return running


def _check_ended_in_time(tmp_path: Path, job: _Job) -> None:
    """The job ended within BOUND of the hang, and no rank was left running when it did."""
    hung_at = [float(p.read_text()) for p in (tmp_path / "out").glob("hang*")]
    if hung_at:
        assert job.ended - min(hung_at) < BOUND, describe(job.proc)
    assert len(list((tmp_path / "out").glob("pid*"))) == 2, describe(job.proc)
    assert job.left_running == [], describe(job.proc)


def _line(stderr: str, rank: int) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(f"[hookloop] rank {rank}: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("launcher, how", [("ddp", "hang"), ("torchrun", "spin"), ("ddp_cpu", "hang")])
def test_rank_hung_in_training_step_ends_every_rank(tmp_path: Path, launcher: str, how: str) -> None:
    """Rank 1 sleeps (or spins) forever in training_step at batch 2; rank 0 waits in the gradient all-reduce.

    Every launcher ends non-zero within the bound; both ranks print one line naming rank 1, where
    it is and how to raise the limit; every rank exits with EXIT_STALLED.
    """
    job = _run_hanging(tmp_path, launcher, f"{how}:1:train:2")
    _check_ended_in_time(tmp_path, job)
    proc = job.proc
    assert proc.returncode != 0, describe(proc)
    if launcher == "ddp":  # the launching process is rank 0
        assert proc.returncode == EXIT_STALLED, describe(proc)
    elif launcher == "torchrun":
        assert len(re.findall(rf"exitcode\s*: {EXIT_STALLED} ", proc.stderr)) == 2, describe(proc)
    else:
        assert f"terminated with exit code {EXIT_STALLED}" in proc.stderr, describe(proc)
    position = "at epoch 0, global_step 2, batch 2 (fit, phase train_batch), in maybe_hang (train_ddp.py:"
    culprit, other = _line(proc.stderr, 1), _line(proc.stderr, 0)
    assert culprit.startswith(f"[hookloop] rank 1: this rank made no progress for {LIMIT} s {position}"), culprit
    assert "called from training_step (train_ddp.py:" in culprit
    assert re.match(rf"\[hookloop\] rank 0: rank 1 \(pid \d+ on .+\) made no progress for {LIMIT} s {re.escape(position)}",
                    other), other
    assert "this rank was waiting in backward (gradient all-reduce)" in other
    for line in (culprit, other):
        assert f"exit code {EXIT_STALLED}" in line and f"raise {STALL_TIMEOUT_ENV} (now {LIMIT} s)" in line


@pytest.mark.parametrize("hang, expected", [
    # Rank 1 hangs before the all-gather that ends the validation run; rank 0 waits in it.
    ("hang:1:val:1", [r"\[hookloop\] rank 0: rank 1 \(pid \d+ on .+\) made no progress for \d+ s at epoch 0, "
                      r"global_step 4, after batch 3, validation batch 1 \(fit, phase validate\), in maybe_hang "
                      r".*called from validation_step .*; this rank was waiting in all_gather from "
                      r"_equalize_eval_metrics \(distributed.py:\d+\)",
                      r"\[hookloop\] rank 1: this rank made no progress .* validation batch 1 "]),
    # Rank 0 makes a barrier that rank 1 skips: each waits in a collective the other never joins.
    ("barrier:0:train:2", [r"\[hookloop\] rank [01]: ranks 0 and 1 made no progress for \d+ s, each waiting in a "
                           r"collective the others do not join .*: rank 0 waiting in barrier from maybe_hang "
                           r"\(train_ddp.py:\d+\), called from training_step \(train_ddp.py:\d+\) at epoch 0, "
                           r"global_step 2, batch 2 .*; rank 1 waiting in backward \(gradient all-reduce\)"]),
])
def test_stall_in_a_collective_ends_every_rank(tmp_path: Path, hang: str, expected: List[str]) -> None:
    """A collective some rank never joins: caught, and named by what each rank waits in."""
    job = _run_hanging(tmp_path, "ddp", hang)
    _check_ended_in_time(tmp_path, job)
    proc = job.proc
    assert proc.returncode == EXIT_STALLED, describe(proc)
    for pattern in expected:
        assert re.search(pattern, proc.stderr), f"{pattern}\n{describe(proc)}"


def test_slow_steps_warm_up_and_long_validation_are_not_stalls(tmp_path: Path) -> None:
    """Pauses the limit allows: a first batch longer than the limit (warm-up, not timed), a step shorter
    than it, and a validation run longer than it in total whose every batch is shorter."""
    limit = 6
    script = write_script(tmp_path)
    hang = "pause9:1:train:0,pause3.5:1:train:3,pause4:1:val:*"  # 2 validation batches per rank: 8 s
    env = script_env(tmp_path, HL_MODE="ddp", HL_EPOCHS="1", HL_HANG=hang, **{STALL_TIMEOUT_ENV: str(limit)})
    proc = run([sys.executable, str(script)], env, tmp_path, timeout=150)
    assert proc.returncode == 0, describe(proc)
    assert "made no progress" not in proc.stderr
    assert [r["epochs_run"] for r in results(tmp_path, 2)] == [1, 1]


# ---- the pieces, without processes -----------------------------------------------------------


def _report(rank: int, order: tuple, waiting: bool) -> dict:
    return dict(rank=rank, order=list(order), waiting=waiting, idle=7.0, pid=100 + rank, host="node",
                at=f"place {rank}", where=("waiting in barrier" if waiting else "in training_step (m.py:3)"))


def test_culprit_is_the_rank_in_its_own_code_then_the_one_behind() -> None:
    """Not waiting in a collective beats waiting; among the candidates the one behind is named."""
    same = (0, 1, 0, 2, 2, 2, -1, -1)
    ahead = (0, 1, 0, 3, 3, 2, -1, -1)
    # gloo: the hung rank and the waiting one are at the same batch.
    assert stall_culprits([_report(0, same, True), _report(1, same, False)]) == [1]
    # nccl: the waiting rank ran ahead (asynchronous collectives) and blocks in its own code later.
    assert stall_culprits([_report(0, ahead, False), _report(1, same, False)]) == [1]
    # every rank waits: the one that did not reach the others' collective; at one place, all of them.
    assert stall_culprits([_report(0, ahead, True), _report(1, same, True)]) == [1]
    assert stall_culprits([_report(0, same, True), _report(1, same, True), _report(2, ahead, True)]) == [0, 1]


def test_stall_message_names_the_culprit_for_each_rank() -> None:
    reports = {0: _report(0, (0,), True), 1: _report(1, (0,), False)}
    mine = stall_message([1], reports, 1, 30, STALL_TIMEOUT_ENV, EXIT_STALLED)
    other = stall_message([1], reports, 0, 30, STALL_TIMEOUT_ENV, EXIT_STALLED)
    assert mine.startswith("this rank made no progress for 7 s at place 1, in training_step (m.py:3). ")
    assert other.startswith("rank 1 (pid 101 on node) made no progress for 7 s at place 1, in training_step "
                            "(m.py:3); this rank was waiting in barrier. ")
    assert other.endswith(f"(exit code {EXIT_STALLED}); if such a pause is legitimate, raise {STALL_TIMEOUT_ENV} "
                          "(now 30 s)")


def _position(**fields: object) -> Position:
    base = dict(stage_index=0, stage="fit", phase="train_batch", sanity_checking=False, epoch=0, global_step=0,
                batch_idx=0)
    base.update(fields)
    return Position(**base)  # type: ignore[arg-type]


def test_positions_order_as_the_loop_runs() -> None:
    """Sanity check, then batches, their validation, the epoch's end, the next epoch, the next stage."""
    in_order = [
        _position(phase="validate", sanity_checking=True, eval_loader=0, eval_batch=1),
        _position(phase="train_epoch_start"),
        _position(),
        _position(global_step=1),
        _position(batch_idx=1, global_step=1),
        _position(batch_idx=1, global_step=2, phase="validate", eval_loader=0, eval_batch=0),
        _position(batch_idx=1, global_step=2, phase="validate", eval_loader=0, eval_batch=3),
        _position(batch_idx=1, global_step=2, phase="validate_epoch_end", eval_loader=0, eval_batch=3),
        _position(batch_idx=1, global_step=2, phase="train_epoch_end"),
        _position(epoch=1, global_step=2, phase="train_epoch_start"),
        _position(stage_index=1, stage="test", phase="test", epoch=2, global_step=4, eval_loader=0, eval_batch=0),
    ]
    assert sorted(in_order, key=Position.order) == in_order
    assert in_order[6].describe() == ("epoch 0, global_step 2, after batch 1, validation batch 3 "
                                      "(fit, phase validate)")
    assert in_order[0].describe() == "validation batch 1 of the sanity check (fit, phase validate)"
    assert _position(stage="test", phase="test", eval_loader=1, eval_batch=2, num_loaders=2).describe() == \
        "test batch 2 of dataloader 1 (test, phase test)"


def test_first_batch_of_a_stage_and_of_training_is_warm_up() -> None:
    """Not timed until the first evaluation batch (next one started) or training batch is over."""
    state, progress = LoopState(fn="fit"), LoopProgress()
    assert progress.position() is None and not progress.armed()
    progress.begin_stage(state)
    state.phase, state.sanity_checking = "validate", True
    progress.begin_evaluation()
    progress.eval_batch(0, 0)
    assert not progress.armed()  # the sanity check's first batch
    progress.eval_batch(1, 0)
    assert progress.armed() and progress.position().eval_batch == 1
    state.phase, state.sanity_checking = "train_epoch_start", False
    progress.begin_training()
    assert not progress.armed()
    state.phase = "train_batch"
    assert not progress.armed()  # batch 0 runs: DataLoader start-up, compilation...
    state.global_step = 1
    assert progress.armed()  # its optimizer step is done
    progress.end_stage()
    assert progress.position() is None and not progress.armed()
    # A resumed epoch starts at batch 5: that batch is the warm-up, the next one is timed.
    resumed = LoopState(fn="fit", batch_idx=4, start_batch=5, global_step=5)
    progress.begin_stage(resumed)
    progress.begin_training()
    resumed.batch_idx = 5
    assert not progress.armed()
    resumed.batch_idx = 6
    assert progress.armed()


def _blocked_thread(module: str, code: str) -> threading.Thread:
    """A thread blocked (on an event) in a function defined in a module named ``module``."""
    namespace: dict = {"__name__": module}
    exec(compile(code, f"/src/{module.replace('.', '/')}.py", "exec"), namespace)
    release = threading.Event()
    thread = threading.Thread(target=namespace["entry"], args=(release,), daemon=True)
    thread.release = release  # type: ignore[attr-defined]
    thread.start()
    time.sleep(0.1)
    return thread


def test_describe_frame_tells_waiting_in_a_collective_from_hanging_in_own_code() -> None:
    user = _blocked_thread("my_model", "def helper(ev):\n    ev.wait()\n\ndef entry(ev):\n    helper(ev)\n")
    collective = _blocked_thread("torch.distributed.fake_c10d",
                                 "def barrier(ev):\n    ev.wait()\n\nentry = barrier\n")
    try:
        frames = sys._current_frames()
        # The innermost frame is the standard library's: named by the user's code that called it.
        waiting, text = describe_frame(frames[user.ident])
        assert not waiting
        assert text == "in wait (threading) from helper (my_model.py:2), called from entry (my_model.py:5)", text
        barrier = frames[collective.ident]
        while barrier.f_code.co_name != "barrier":  # the collective's own frame, as in torch.distributed
            barrier = barrier.f_back
        waiting, text = describe_frame(barrier)
        assert waiting and text.startswith("waiting in barrier from "), text
    finally:
        user.release.set()  # type: ignore[attr-defined]
        collective.release.set()  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["-1", "ten", "nan"])
def test_bad_limits_are_errors_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(STALL_TIMEOUT_ENV, value)
    with pytest.raises(MisconfigurationException, match=rf"{STALL_TIMEOUT_ENV}='{value}': expected a number of "
                                                         r"seconds >= 0 \(0 turns it off\)"):
        Watchdog("127.0.0.1", 1, 0, 2, store_host=True)


def test_limits_default_and_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STALL_TIMEOUT_ENV, raising=False)
    assert Watchdog("127.0.0.1", 1, 0, 2, store_host=True).stall_timeout == 600
    monkeypatch.setenv(STALL_TIMEOUT_ENV, "0")
    assert Watchdog("127.0.0.1", 1, 0, 2, store_host=True).stall_timeout == 0
    monkeypatch.setenv("HOOKLOOP_TEST_SECONDS", "0")
    with pytest.raises(MisconfigurationException, match="expected a number of seconds > 0"):
        seconds_from_env("HOOKLOOP_TEST_SECONDS", 30.0)
