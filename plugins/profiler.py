"""Built-in ``profiler``: where a run's time goes, per event and per plugin implementation.

``Trainer(profiler="simple")`` times every event and, inside it, every plugin's
implementation (call count, total, mean), and says how much of the training loop is spent
outside the model's forward/backward/optimizer step. ``profiler="advanced"`` adds a cProfile
report of the whole stage. A profiler instance (``SimpleProfiler(dirpath=..., filename=...)``)
may be passed instead of a name. The report is printed when a stage (fit, validate, test,
predict) ends, and written to ``{dirpath}/{stage}-{filename}.txt`` when a filename is given.

Nothing of this is registered unless ``Trainer(profiler=...)`` is set: with the flag off the
dispatch is exactly what it would be without this module. When on, the profiler sets the
dispatch's ``wrap`` extension point (:attr:`engine.dispatch.Dispatch.wrap`), so each
implementation is wrapped by a timer when the dispatch is built; nothing is patched and the
registered implementations stay untouched. Times include nested events (``run_training_batch``
contains ``training_step``, ``backward``...). Wrapper implementations (``wrapper=True``) are
timed including what they wrap.

Code may time its own sections, as with Lightning's profilers::

    with self.trainer.profiler.profile("augment"):
        ...
"""
from __future__ import annotations

import contextlib
import cProfile
import io
import inspect
import os
import pstats
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from hookloop.engine import hookimpl
from hookloop.engine.errors import FlagError, MisconfigurationException, did_you_mean

#: The behaviour hooks whose time is the model's own work (forward in ``training_step``, backward, step).
MODEL_EVENTS = ("training_step", "backward", "optimizer_step", "optimizer_zero_grad")
#: Key of sections timed with :meth:`SimpleProfiler.profile` (not events).
ACTION = "[action]"

_clock = time.perf_counter


class SimpleProfiler:
    """Times events and plugin implementations; prints a table when a stage ends.

    Args:
        dirpath: Directory for the report file (default: the trainer's ``log_dir``); only used with ``filename``.
        filename: Write each stage's report to ``{dirpath}/{stage}-{filename}.txt`` as well as printing it.
    """

    def __init__(self, dirpath: Optional[str] = None, filename: Optional[str] = None) -> None:
        self.dirpath = dirpath
        self.filename = filename
        #: ``(event, plugin name)`` -> ``[calls, total seconds]``; plugin name ``""`` is the whole event.
        self.stats: Dict[Tuple[str, str], List[float]] = {}
        #: The last report printed (also what :meth:`summary` returned then).
        self.last_report = ""
        self._trainer: Any = None
        self._stage_start: Optional[float] = None
        self._stage_seconds = 0.0
        self._epoch_start: Optional[float] = None
        self._train_seconds = 0.0
        self._val_start: Optional[float] = None
        self._open: Dict[str, float] = {}

    # ---- Lightning-style API ----------------------------------------------------------------
    def start(self, action_name: str) -> None:
        """Start timing the section ``action_name`` (ended by :meth:`stop`)."""
        self._open[action_name] = _clock()

    def stop(self, action_name: str) -> None:
        """Stop timing the section ``action_name``, started by :meth:`start`."""
        started = self._open.pop(action_name, None)
        if started is None:
            raise ValueError(f"profiler.stop({action_name!r}) without a matching profiler.start({action_name!r}).")
        self._add((ACTION, action_name), _clock() - started)

    @contextlib.contextmanager
    def profile(self, action_name: str) -> Iterator[None]:
        """Time the ``with`` block as the section ``action_name``."""
        self.start(action_name)
        try:
            yield
        finally:
            self.stop(action_name)

    def describe(self) -> None:
        """Print the report of what was recorded so far."""
        print(self.summary())

    # ---- installing the timers ----------------------------------------------------------------
    @hookimpl
    def on_init_end(self, trainer: Any) -> None:
        """Become ``trainer.profiler`` and have the dispatch wrap every implementation in a timer."""
        self._trainer = trainer
        trainer.profiler = self
        trainer.registry.wrap_implementations(self._wrap)

    def _wrap(self, event: str, impl: Any, function: Callable[..., Any]) -> Callable[..., Any]:
        """The dispatch's ``wrap``: a timer around ``function`` (an implementation, or the event if ``impl`` is None)."""
        if impl is None:
            impls = self._trainer.registry.implementations(event)
            if all(i.plugin is self for i in impls):  # only the profiler's own bookkeeping
                return function
            shared = getattr(function, "_profiler_entry", None)
            if shared is not None:  # the event is one implementation's timer: count it once, for both rows
                self.stats[(event, "")] = shared
                return function
            return _timer(self._entry((event, "")), function)
        if impl.plugin is self:
            return function
        entry = self._entry((event, impl.plugin_name))
        if impl.wrapper or impl.hookwrapper:
            return _generator_timer(entry, function)
        return _timer(entry, function)

    def _entry(self, key: Tuple[str, str]) -> List[float]:
        entry = self.stats.get(key)
        if entry is None:
            entry = self.stats[key] = [0, 0.0]
        return entry

    def _add(self, key: Tuple[str, str], seconds: float) -> None:
        entry = self._entry(key)
        entry[0] += 1
        entry[1] += seconds

    # ---- stage and training-loop clocks -------------------------------------------------------
    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, stage: str) -> None:
        """A stage starts: clear the counters (the dispatch's timers keep their entries)."""
        for entry in self.stats.values():
            entry[0], entry[1] = 0, 0.0
        self._train_seconds = 0.0
        self._stage_start = _clock()

    @hookimpl(tryfirst=True)
    def on_train_epoch_start(self, trainer: Any) -> None:
        """The training batches of an epoch start now."""
        self._epoch_start = _clock()

    @hookimpl(tryfirst=True)
    def on_train_epoch_end(self, trainer: Any) -> None:
        """The training batches of an epoch (and any validation among them) are done."""
        if self._epoch_start is not None:
            self._train_seconds += _clock() - self._epoch_start
            self._epoch_start = None

    @hookimpl(tryfirst=True)
    def on_validation_start(self, trainer: Any) -> None:
        """Validation inside a training epoch is not training-loop time."""
        self._val_start = _clock() if self._epoch_start is not None else None

    @hookimpl(trylast=True)
    def on_validation_end(self, trainer: Any) -> None:
        """Take the validation run out of the training-loop time."""
        if self._val_start is not None:
            self._train_seconds -= _clock() - self._val_start
            self._val_start = None

    @hookimpl(trylast=True)
    def teardown(self, trainer: Any, stage: str) -> None:
        """The stage is over: print (and maybe write) the report."""
        if self._stage_start is not None:
            self._stage_seconds = _clock() - self._stage_start
            self._stage_start = None
        self._report(trainer, stage, self.summary(stage))

    def _report(self, trainer: Any, stage: str, report: str) -> None:
        self.last_report = report
        write_report(trainer, stage, report, self.dirpath, self.filename)

    # ---- the report ---------------------------------------------------------------------------
    def summary(self, stage: str = "") -> str:
        """The report: the training-loop split, then one row per event with its implementations below."""
        lines = [f"hookloop profiler report{' — ' + stage if stage else ''}"
                 + (f": {self._stage_seconds:.3f} s" if self._stage_seconds else "")]
        lines += self._loop_split()
        header = f"{'event / plugin implementation':58s} {'calls':>8s} {'total s':>10s} {'mean µs':>11s} {'% stage':>8s}"
        lines += [header, "-" * len(header)]
        events: Dict[str, List[Tuple[str, List[float]]]] = {}
        for (event, plugin), entry in self.stats.items():
            if entry[0]:
                events.setdefault(event, []).append((plugin, entry))
        for event, rows in sorted(events.items(), key=_event_total, reverse=True):
            whole = [e for p, e in rows if p == ""]
            if event == ACTION:
                lines.append("sections timed with profiler.profile(...)")
            elif whole:
                lines.append(self._row(event, whole[0]))
            else:  # still running: ``teardown``, whose last implementation prints this report
                lines.append(event)
            for plugin, entry in sorted((r for r in rows if r[0] != ""), key=lambda r: r[1][1], reverse=True):
                lines.append(self._row("  " + self._describe(plugin), entry))
        lines.append("Times include nested events; rows indented under an event are its implementations.")
        return "\n".join(lines)

    def _loop_split(self) -> List[str]:
        batches = self.stats.get(("run_training_batch", ""), [0, 0.0])[0]
        if not batches or self._train_seconds <= 0:
            return []
        model = sum(self.stats.get((e, ""), [0, 0.0])[1] for e in MODEL_EVENTS)
        outside = max(self._train_seconds - model, 0.0)
        return [
            f"training loop: {int(batches)} batches in {self._train_seconds:.4f} s "
            f"({self._train_seconds / batches * 1e6:.1f} µs per batch)",
            f"  in the model (training_step, backward, optimizer_step, optimizer_zero_grad): "
            f"{100 * model / self._train_seconds:.1f}%",
            f"  outside the model (data, events, plugins, loop): {100 * outside / self._train_seconds:.1f}% "
            f"({outside / batches * 1e6:.1f} µs per batch)",
        ]

    def _row(self, name: str, entry: List[float]) -> str:
        calls, total = int(entry[0]), entry[1]
        share = f"{100 * total / self._stage_seconds:7.2f}%" if self._stage_seconds else ""
        return f"{name[:58]:58s} {calls:8d} {total:10.4f} {total / max(calls, 1) * 1e6:11.1f} {share:>8s}"

    def _describe(self, plugin_name: str) -> str:
        registry = getattr(self._trainer, "registry", None)
        plugin = registry.get_plugin(plugin_name) if registry is not None else None
        if plugin is None:
            return plugin_name
        cls = plugin if inspect.isclass(plugin) else type(plugin)
        what = plugin.__name__ if inspect.ismodule(plugin) else cls.__name__
        return plugin_name if what == plugin_name else f"{plugin_name} ({what})"


class AdvancedProfiler(SimpleProfiler):
    """:class:`SimpleProfiler`'s table plus a cProfile report of the whole stage.

    Args:
        dirpath: As for :class:`SimpleProfiler`.
        filename: As for :class:`SimpleProfiler`.
        line_count_restriction: How many functions of the cProfile report to show (by cumulative time).
    """

    def __init__(self, dirpath: Optional[str] = None, filename: Optional[str] = None,
                 line_count_restriction: int = 30) -> None:
        super().__init__(dirpath, filename)
        self.line_count_restriction = line_count_restriction
        self._cprofile: Optional[cProfile.Profile] = None

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, stage: str) -> None:
        """Start cProfile for the stage, after clearing the counters."""
        super().setup(trainer, stage)
        profile = cProfile.Profile()
        try:
            profile.enable()
        except ValueError as exc:  # another profiler (coverage, a debugger) holds the interpreter's hook
            print(f"[hookloop] profiler='advanced': cProfile could not start ({exc}); "
                  "only the event table will be reported.", file=sys.stderr)
            return
        self._cprofile = profile

    @hookimpl(trylast=True)
    def teardown(self, trainer: Any, stage: str) -> None:
        """Stop cProfile and print the table followed by the top functions by cumulative time."""
        profile, self._cprofile = self._cprofile, None
        if profile is not None:
            profile.disable()
        if self._stage_start is not None:
            self._stage_seconds = _clock() - self._stage_start
            self._stage_start = None
        report = self.summary(stage)
        if profile is not None:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction)
            report += "\n\ncProfile, by cumulative time:\n" + out.getvalue().strip()
        self._report(trainer, stage, report)


def report_dir(trainer: Any, dirpath: Optional[str]) -> str:
    """Where a profiler writes: ``dirpath``, else the trainer's ``log_dir``, else ``default_root_dir``."""
    return dirpath or getattr(trainer, "log_dir", None) or trainer.default_root_dir


def write_report(trainer: Any, stage: str, report: str, dirpath: Optional[str], filename: Optional[str]) -> None:
    """Print ``report`` on rank zero; with ``filename``, write it to ``{dirpath}/{stage}-{filename}[-rankN].txt``."""
    if trainer.global_rank == 0:
        print(report)
    if filename:
        directory = report_dir(trainer, dirpath)
        os.makedirs(directory, exist_ok=True)
        rank = f"-rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        with open(os.path.join(directory, f"{stage}-{filename}{rank}.txt"), "w", encoding="utf-8") as handle:
            handle.write(report + "\n")


def _pytorch_profiler() -> type:
    from hookloop.plugins.pytorch_profiler import PyTorchProfiler  # torch.profiler is imported only when asked for

    return PyTorchProfiler


#: ``Trainer(profiler=NAME)`` choices: a class, or a function returning one.
PROFILERS: Dict[str, Any] = {"simple": SimpleProfiler, "advanced": AdvancedProfiler, "pytorch": _pytorch_profiler}


def make_profiler(flag: Any) -> Optional[Any]:
    """The profiler plugin for ``Trainer(profiler=flag)``: ``None`` when off.

    ``flag`` is ``None``/``False`` (off), ``True`` or ``"simple"``, ``"advanced"``, ``"pytorch"``
    (:class:`~hookloop.plugins.pytorch_profiler.PyTorchProfiler`), or a profiler instance (any object with ``@hookimpl`` methods), used as it is.
    """
    if flag is None or flag is False or flag == "":
        return None
    if flag is True:
        return SimpleProfiler()
    if isinstance(flag, str):
        cls = PROFILERS.get(flag.lower())
        if cls is None:
            raise FlagError(
                "profiler", f"Trainer(profiler={flag!r}) is not a profiler name; use one of {sorted(PROFILERS)} "
                "or pass a profiler instance." + did_you_mean(flag.lower(), list(PROFILERS))
            )
        return (cls if inspect.isclass(cls) else cls())()
    if inspect.isclass(flag):
        raise MisconfigurationException(
            f"Trainer(profiler={flag.__name__}) got a class; pass an instance, e.g. profiler={flag.__name__}().")
    return flag


def _event_total(item: Tuple[str, List[Tuple[str, List[float]]]]) -> float:
    """Sort key of an event's rows: the whole event's time, else the sum of its implementations'."""
    rows = item[1]
    whole = [entry for plugin, entry in rows if plugin == ""]
    return whole[0][1] if whole else sum(entry[1] for _, entry in rows)


def _timer(entry: List[float], function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its calls counted and timed into ``entry`` (``[calls, seconds]``)."""
    clock = _clock

    def timed(*args: Any) -> Any:
        start = clock()
        try:
            return function(*args)
        finally:
            entry[0] += 1
            entry[1] += clock() - start

    timed.__wrapped__ = function  # type: ignore[attr-defined]
    timed._profiler_entry = entry  # type: ignore[attr-defined]
    return timed


def _generator_timer(entry: List[float], function: Callable[..., Any]) -> Callable[..., Any]:
    """A timer for a pluggy wrapper (a generator function): from its start to its end, inner calls included."""
    clock = _clock

    def timed(*args: Any) -> Any:
        start = clock()
        try:
            return (yield from function(*args))
        finally:
            entry[0] += 1
            entry[1] += clock() - start

    timed.__wrapped__ = function  # type: ignore[attr-defined]
    return timed
