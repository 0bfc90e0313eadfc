"""Failure detection for multi-process runs: no rank waits forever for a rank that is gone.

A collective (all-reduce, barrier) blocks until every rank joins it; if one rank raised or
was killed, the others would wait until the process group's timeout (30 minutes by default).
The :class:`Watchdog` thread in every rank prevents that, through keys in the job's
rendezvous store (``MASTER_ADDR:MASTER_PORT``):

* a rank that raises writes ``failed`` (its rank and error) before it exits;
* every rank bumps its own heartbeat counter every ``interval`` seconds; a rank whose
  counter stops moving for ``HOOKLOOP_DDP_HEARTBEAT_TIMEOUT`` seconds (default 30) is dead;
* losing the store itself means its host (global rank 0) is gone;
* the launching process also watches the exit codes of the ranks it started.

On any of these the surviving rank prints which rank failed and why, and exits with code 1
(``os._exit``: the main thread may be stuck inside a collective). A rank that finishes
normally writes ``done/<rank>`` so the others do not mistake its exit for a failure.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch.distributed as dist

HEARTBEAT_TIMEOUT_ENV = "HOOKLOOP_DDP_HEARTBEAT_TIMEOUT"
#: Exit code of a rank stopped because another rank failed.
EXIT_PEER_FAILED = 1


def _die(rank: int, message: str) -> None:
    sys.stderr.write(f"[hookloop] rank {rank}: {message}; exiting.\n")
    sys.stderr.flush()
    os._exit(EXIT_PEER_FAILED)


class Watchdog:
    """A daemon thread watching the other ranks of this job through the rendezvous store."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, store_host: bool,
                 interval: float = 0.5, timeout: Optional[float] = None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.store_host = store_host
        self.interval = interval
        self.timeout = float(os.environ.get(HEARTBEAT_TIMEOUT_ENV, "30")) if timeout is None else timeout
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
        """Tell every other rank that this one failed with ``exc`` (then this rank raises as usual)."""
        self._failed_here = True
        try:
            self._store.set("failed", f"{self.rank}\n{type(exc).__name__}: {exc}"[:2000])
        except Exception:  # the store is gone too: the others will notice that
            return
        if self.store_host:
            # This process holds the store: give the others a moment to read why before it closes.
            time.sleep(3 * self.interval)

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
        while not self._stop.is_set():
            try:
                beats += 1
                store.set(f"hb/{self.rank}", str(beats))
                if store.check(["failed"]):
                    failed = store.get("failed").decode(errors="replace")
                    who, _, why = failed.partition("\n")
                    if int(who) != self.rank:
                        _die(self.rank, f"rank {who} failed ({why})")
                now = time.monotonic()
                for r in others:
                    key = f"hb/{r}"
                    if not store.check([key]) or store.check([f"done/{r}"]):
                        changed[r] = now
                        continue
                    value = store.get(key).decode()
                    if seen.get(r) != value:
                        seen[r], changed[r] = value, now
                    elif now - changed.get(r, now) > self.timeout:
                        _die(self.rank, f"rank {r} stopped responding for {self.timeout:.0f} s (killed or hung)")
            except Exception as exc:  # the store is unreachable
                if self._stop.is_set() or self._failed_here:
                    return
                _die(self.rank, f"lost the rendezvous store at {self.address}:{self.port} held by global rank 0 "
                                f"(rank 0 exited or was killed: {type(exc).__name__})")
            self._stop.wait(self.interval)


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


def parent_watch(parent_pid: int, rank: int) -> None:
    """In a rank started by hookloop's launcher: exit if the launching process (rank 0) disappears."""
    def run() -> None:
        while True:
            if os.getppid() != parent_pid:
                _die(rank, f"the launching process (global rank 0, pid {parent_pid}) is gone")
            time.sleep(0.5)

    threading.Thread(target=run, name="hookloop-ddp-parent", daemon=True).start()
