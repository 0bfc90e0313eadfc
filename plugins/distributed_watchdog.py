"""Failure and stall detection for multi-process runs: no rank waits forever for one that is gone or stuck.

A collective (all-reduce, barrier) blocks until every rank joins it; if one rank raised, was
killed or hangs, the others would wait until the process group's timeout (30 minutes by
default). The :class:`Watchdog` thread in every rank prevents that, through keys in the job's
rendezvous store (``MASTER_ADDR:MASTER_PORT``):

* a rank that raises writes ``failed`` (its rank and error) before it exits;
* every rank bumps its own heartbeat counter every ``interval`` seconds; a rank whose
  counter stops moving for ``HOOKLOOP_DDP_HEARTBEAT_TIMEOUT`` seconds (default 30) is dead
  (killed, stopped, or frozen so hard that its watchdog thread cannot run);
* the thread also samples its rank's *main loop* position (:mod:`plugins.distributed_progress`):
  a rank whose position has not moved for ``HOOKLOOP_DDP_STALL_TIMEOUT`` seconds (default 600;
  its first batch's warm-up excepted) writes a stall report ``stall/<rank>``. When every running
  rank has one and at least one is past its warm-up, one rank (the first to claim it) names the
  culprit and writes ``stalled``; every rank then prints one line naming it and exits with
  :data:`EXIT_STALLED`;
* losing the store itself means its host (global rank 0, or torchrun's agent on node 0) is gone;
* the launching process also watches the exit codes of the ranks it started, and stops them
  when it exits itself.

On a failure the surviving rank prints which rank failed and why, and exits with code 1
(``os._exit``: the main thread may be stuck inside a collective). A rank that finishes
normally writes ``done/<rank>`` so the others do not mistake its exit for a failure.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch.distributed as dist

from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.distributed_progress import LoopProgress, report_order, stall_culprits, stall_message

HEARTBEAT_TIMEOUT_ENV = "HOOKLOOP_DDP_HEARTBEAT_TIMEOUT"
STALL_TIMEOUT_ENV = "HOOKLOOP_DDP_STALL_TIMEOUT"
#: Seconds a rank's watchdog thread may stay silent before the others call the rank dead.
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0
#: Seconds a rank's main loop may make no progress (after its warm-up) before the job is stopped.
#: Ten minutes: far beyond a training step, an evaluation batch or a checkpoint save of a model
#: that fits one process, and a third of the collective timeout that would otherwise end the job.
DEFAULT_STALL_TIMEOUT_S = 600.0
#: Exit code of a rank stopped because another rank failed (raised, was killed, stopped responding).
EXIT_PEER_FAILED = 1
#: Exit code of every rank of a job stopped because its main loops made no progress.
EXIT_STALLED = 3

_STALLED_KEY = "stalled"
_EXIT_LOCK = threading.Lock()
_BEFORE_EXIT: List[Callable[[], None]] = []


def before_forced_exit(function: Callable[[], None]) -> None:
    """Run ``function`` when a watchdog ends this process (the launcher stops the ranks it started)."""
    _BEFORE_EXIT.append(function)


def _die(rank: int, message: str, code: int = EXIT_PEER_FAILED,
         after_message: Optional[Callable[[], None]] = None) -> None:
    """Print ``message`` and end this process with ``code`` (once, whichever thread gets here first)."""
    if not _EXIT_LOCK.acquire(blocking=False):
        threading.Event().wait()  # another thread is already ending this process, with its own message
    sys.stderr.write(f"[hookloop] rank {rank}: {message}; exiting.\n")
    sys.stderr.flush()
    for function in ([after_message] if after_message is not None else []) + _BEFORE_EXIT:
        try:
            function()
        except Exception:  # best effort: the process ends either way
            pass
    os._exit(code)


def seconds_from_env(name: str, default: float, zero_means_off: bool = False) -> float:
    """A number of seconds from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 or (zero_means_off and value == 0)):
        allowed = "a number of seconds >= 0 (0 turns it off)" if zero_means_off else "a number of seconds > 0"
        raise MisconfigurationException(f"{name}={raw!r}: expected {allowed}, e.g. {name}={default:g}.")
    return value


class Watchdog:
    """A daemon thread watching this job's ranks, and this rank's main loop, through the rendezvous store."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, store_host: bool,
                 interval: float = 0.5, timeout: Optional[float] = None,
                 progress: Optional[LoopProgress] = None, stall_timeout: Optional[float] = None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.store_host = store_host
        self.interval = interval
        self.timeout = seconds_from_env(HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT_S) \
            if timeout is None else timeout
        #: Seconds without progress of the main loop before the job is stopped (0: not watched).
        self.stall_timeout = seconds_from_env(STALL_TIMEOUT_ENV, DEFAULT_STALL_TIMEOUT_S, zero_means_off=True) \
            if stall_timeout is None else stall_timeout
        self.progress = progress
        self.address, self.port = address, port
        self._stop = threading.Event()
        self._failed_here = False
        self._store: Any = None
        self._thread: Optional[threading.Thread] = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to the store and start watching (from the main thread, after the group is up)."""
        base = dist.TCPStore(self.address, self.port, is_master=False, timeout=timedelta(seconds=10),
                             wait_for_workers=False)
        self._store = dist.PrefixStore("hookloop_watchdog", base)
        self._store.set(f"hb/{self.rank}", "0")
        self._thread = threading.Thread(target=self._run, name="hookloop-ddp-watchdog", daemon=True)
        self._thread.start()

    @property
    def failed_here(self) -> bool:
        """True once this rank reported its own failure."""
        return self._failed_here

    def report_failure(self, exc: BaseException) -> None:
        """Tell every other rank that this one failed with ``exc`` (then this rank raises as usual).

        An error raised here because the job was already ending — a collective broken by a rank
        that exited for a stall or a failure — is only its echo: this rank then exits with the
        job's own message instead of blaming itself.
        """
        self.exit_if_job_ended()
        self._failed_here = True
        try:
            self._store.set("failed", f"{self.rank}\n{type(exc).__name__}: {exc}"[:2000])
        except Exception:  # the store is gone too: the others will notice that
            return
        if self.store_host:
            # This process holds the store: give the others a moment to read why before it closes.
            time.sleep(3 * self.interval)

    def exit_if_job_ended(self) -> None:
        """If the job was stopped (a stall) or a rank reported its failure, exit now with that message.

        For the launcher's :class:`ChildMonitor`: a child that exits for one of these reasons is
        explained by the job's own message rather than by its exit code.
        """
        store = self._store
        if store is None or self._failed_here:
            return
        try:
            if store.check([_STALLED_KEY]):
                self._stop_for_stall(store)
            if store.check(["failed"]):
                self._stop_for_failure(store)
        except Exception:  # the store is gone: the caller reports the exit code
            return

    def finish(self, wait_s: float = 60.0) -> None:
        """Normal end of this rank: say so, and (store host) keep the store up until every rank is done.

        The thread stops first, while the store is certainly still up: a thread left inside a
        store call when the interpreter exits would abort the process.
        """
        if self._store is None or self._failed_here or self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            self._store.set(f"done/{self.rank}", "1")
        except Exception:  # the store is already gone: nothing left to tell
            return
        if self.store_host:
            self._wait_for_keys([f"done/{r}" for r in range(self.world_size)], wait_s)

    def closed(self) -> None:
        """After this rank left its process group: say so (global rank 0 waits for it, see below)."""
        if self._store is None or self._failed_here:
            return
        try:
            self._store.set(f"closed/{self.rank}", "1")
        except Exception:  # the store is already gone: nothing left to tell
            pass

    def wait_until_others_closed(self, wait_s: float = 30.0) -> None:
        """Global rank 0: wait (bounded) until every other rank has left its process group.

        Rank 0 leaves last. Its peers' process groups then shut down while rank 0's is intact and
        the rendezvous store is up (rank 0 holds it in jobs hookloop launched; under torchrun,
        rank 0's exit lets node 0's agent, which holds it, exit): a gloo group whose peer vanished
        mid-teardown can abort the process.
        """
        if self._store is None or self._failed_here or self.rank != 0:
            return
        self._wait_for_keys([f"closed/{r}" for r in range(self.world_size) if r != self.rank], wait_s)

    def _wait_for_keys(self, keys: List[str], wait_s: float) -> None:
        """Wait until every key is in the store, at most ``wait_s`` seconds; stop early if a rank failed."""
        deadline = time.monotonic() + wait_s
        try:
            while keys and not self._store.check(keys) and time.monotonic() < deadline:
                if self._store.check(["failed"]):
                    return
                time.sleep(0.05)
        except Exception:  # the store is gone: nobody is left to wait for
            pass

    # ---- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        store = self._store
        beats = 0
        seen: Dict[int, str] = {}
        changed: Dict[int, float] = {}
        others = [r for r in range(self.world_size) if r != self.rank]
        watch_loop = self.progress is not None and self.stall_timeout > 0
        position: Any = None
        moved_at = time.monotonic()
        reported = False
        while not self._stop.is_set():
            try:
                beats += 1
                store.set(f"hb/{self.rank}", str(beats))
                if store.check(["failed"]):
                    self._stop_for_failure(store)
                if store.check([_STALLED_KEY]):
                    self._stop_for_stall(store)
                now = time.monotonic()
                running = []
                for r in others:
                    key = f"hb/{r}"
                    if not store.check([key]) or store.check([f"done/{r}"]):
                        changed[r] = now
                        continue
                    running.append(r)
                    value = store.get(key).decode()
                    if seen.get(r) != value:
                        seen[r], changed[r] = value, now
                    elif now - changed.get(r, now) > self.timeout:
                        _die(self.rank, f"rank {r} stopped responding for {self.timeout:.0f} s (killed, stopped, "
                                        f"or frozen so that its watchdog thread cannot run); raise "
                                        f"{HEARTBEAT_TIMEOUT_ENV} if that rank is only slow")
                if watch_loop:
                    current = self.progress.position()  # type: ignore[union-attr]
                    if current != position:
                        position, moved_at = current, now
                        if reported:
                            store.delete_key(f"stall/{self.rank}")
                            reported = False
                    elif now - moved_at >= self.stall_timeout:
                        self._report_stall(store, current, now - moved_at)
                        reported = True
                        self._decide_stall(store, running)
            except Exception as exc:  # the store is unreachable
                if self._stop.is_set() or self._failed_here:
                    return
                _die(self.rank, f"lost the rendezvous store at {self.address}:{self.port} held by global rank 0 "
                                f"(rank 0 exited or was killed: {type(exc).__name__}: {exc})")
            self._stop.wait(self.interval)

    def _stop_for_failure(self, store: Any) -> None:
        who, _, why = store.get("failed").decode(errors="replace").partition("\n")
        if int(who) != self.rank:
            _die(self.rank, f"rank {who} failed ({why})")

    def _report_stall(self, store: Any, position: Any, idle: float) -> None:
        """Publish where this rank's main loop has been stuck for ``idle`` seconds."""
        progress = self.progress
        assert progress is not None
        waiting, where = progress.where()
        report = dict(rank=self.rank, pid=os.getpid(), host=socket.gethostname(), armed=progress.armed(),
                      idle=round(idle, 1), order=list(report_order(position)), waiting=waiting, where=where,
                      at=position.describe() if position is not None else "outside the Trainer (between stages)")
        store.set(f"stall/{self.rank}", json.dumps(report))

    def _decide_stall(self, store: Any, running: Sequence[int]) -> None:
        """If every running rank is stalled and one is past its warm-up, name the culprit (once per job)."""
        keys = [f"stall/{r}" for r in (self.rank, *running)]
        if not store.check(keys):
            return  # a rank still moves: it may be doing legitimate work the others wait for
        reports = [json.loads(store.get(key)) for key in keys]
        if not any(r["armed"] for r in reports):
            return  # every rank is still warming up (first batch): not timed
        if store.add("stall_claim", 1) != 1:
            return  # another rank is writing the verdict
        verdict = dict(culprits=stall_culprits(reports), limit=self.stall_timeout,
                       reports={str(r["rank"]): r for r in reports})
        store.set(_STALLED_KEY, json.dumps(verdict))
        self._stop_for_stall(store)

    def _stop_for_stall(self, store: Any) -> None:
        """Print this rank's line about the stall verdict and exit with :data:`EXIT_STALLED`."""
        verdict = json.loads(store.get(_STALLED_KEY))
        reports = {int(r): report for r, report in verdict["reports"].items()}
        message = stall_message(verdict["culprits"], reports, self.rank, float(verdict["limit"]),
                                STALL_TIMEOUT_ENV, EXIT_STALLED)

        def wait_for_the_others() -> None:
            # Every rank prints its line before any exits: an exit breaks the others' collectives (and
            # ddp_spawn/torchrun stop the rest), and the store host's exit takes the verdict with it.
            try:
                store.set(f"stall_seen/{self.rank}", "1")
            except Exception:  # the store is gone: nobody is left to wait for
                return
            self._wait_for_keys([f"stall_seen/{r}" for r in reports], 5.0)

        _die(self.rank, message, EXIT_STALLED, after_message=wait_for_the_others)


class ChildMonitor:
    """In the launching process: watches the ranks it started and stops the job if one fails."""

    def __init__(self, rank: int, processes: Sequence[Any], ranks: Sequence[int],
                 on_failure: Optional[Callable[[str], None]] = None) -> None:
        self.rank = rank
        self.processes: List[Any] = list(processes)
        self.ranks = list(ranks)
        self.on_failure = on_failure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookloop-ddp-children", daemon=True)

    def start(self) -> None:
        """Start polling the children."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (the children finished normally)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc, rank in zip(self.processes, self.ranks):
                code = proc.poll()
                if code is not None and code != 0 and not self._stop.is_set():
                    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                    message = f"rank {rank} (pid {proc.pid}) {how}"
                    if self.on_failure is not None:
                        self.on_failure(message)
                    self.kill_all()
                    _die(self.rank, message)
            self._stop.wait(0.2)

    def kill_all(self) -> None:
        """Terminate every child still running (then kill those that do not stop)."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except Exception:
                proc.kill()

    def end_children(self, grace_s: float = 5.0) -> None:
        """This process is being ended: give the children ``grace_s`` to exit on their own, then stop them.

        Their own watchdogs see the same failure or stall and exit with their own message; a child
        too stuck for that (its watchdog thread cannot run) must not outlive the launcher.
        """
        self._stop.set()
        deadline = time.monotonic() + grace_s
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except Exception:  # still running: stopped below
                pass
        self.kill_all()


def parent_watch(parent_pid: int, rank: int) -> None:
    """In a rank started by hookloop's launcher: exit if the launching process (rank 0) disappears."""
    def run() -> None:
        while True:
            if os.getppid() != parent_pid:
                _die(rank, f"the launching process (global rank 0, pid {parent_pid}) is gone")
            time.sleep(0.5)

    threading.Thread(target=run, name="hookloop-ddp-parent", daemon=True).start()
