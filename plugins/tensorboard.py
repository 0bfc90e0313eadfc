"""``TensorBoardLogger``: scalars and hyperparameters as TensorBoard event files, through tensorboardX.

Files go to ``save_dir/name/version_N/`` (``N`` one more than the highest existing
version). tensorboardX is imported when the writer is first needed, so importing
``plugins`` stays cheap.

Scalars and hyperparameters are written by this logger itself, synchronously, in
TensorBoard's record format (tensorboardX's protobufs and CRCs): ``SummaryWriter`` hands
every event through a ``multiprocessing.Queue`` to a writer thread, which cost 150–450 µs
of the training process's CPU per logged step. The event file is closed when a run
(``fit``, ``validate``, ``test``) ends, so a kept trainer holds no open file, and reopened to
append when the logger writes again. The ``SummaryWriter`` behind
:attr:`TensorBoardLogger.experiment` is created only when a module asks for it (histograms,
images...) and writes its own event file in the same directory; TensorBoard reads both.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from typing import Any, Dict, Optional, Tuple, Union

from hookloop.engine.markers import hookimpl
from hookloop.plugins.logger_base import (HPARAMS_FILE, DummyExperiment, Logger, add_prefix, flatten, hparams_dict,
                                 next_version, save_hparams_yaml)

#: Ends the name of the event file this logger writes itself (scalars, hyperparameters).
SCALARS_SUFFIX = ".scalars"
_FILE_NUMBERS = itertools.count()


class TensorBoardLogger(Logger):
    """Log to TensorBoard event files in ``save_dir/name/version_N``.

    Args:
        save_dir: Root directory (the default logger uses ``Trainer(default_root_dir=...)``).
        name: Experiment name, a sub-directory of ``save_dir`` (``""`` or ``None``: none).
        version: An int (``version_<int>``), a string (used as the directory name) or ``None``
            for the next free ``version_N``.
        default_hp_metric: Log ``hp_metric = -1`` with the hyperparameters, so TensorBoard's
            hparams view has a metric column until you log ``hp_metric`` yourself.
        prefix: Put before every metric name (``prefix-name``).
        sub_dir: A further sub-directory of the version directory.
        **kwargs: Passed to ``tensorboardX.SummaryWriter``. ``flush_secs`` (default 120, as there) also
            sets how often the scalar file is flushed; it is flushed at every epoch end and at the end too.

    ``experiment`` is the ``SummaryWriter``, created on first use, so a module can call
    ``self.logger.experiment.add_histogram(...)`` (on ranks other than zero it does nothing).
    """

    def __init__(self, save_dir: Union[str, "os.PathLike[str]"], name: Optional[str] = "lightning_logs",
                 version: Union[int, str, None] = None, default_hp_metric: bool = True, prefix: str = "",
                 sub_dir: Optional[str] = None, **kwargs: Any) -> None:
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._sub_dir = sub_dir
        self._kwargs = kwargs
        self._experiment: Any = None
        self._events: Optional[_EventFile] = None  # scalars and hparams; opened on first write, closed at run end
        #: ``(pid, path)`` of this logger's event file: a later run of the same process appends to it.
        self._events_file: Optional[Tuple[int, str]] = None
        self._flush_secs = float(kwargs.get("flush_secs", 120))
        self._flushed_at = 0.0
        #: Every hyperparameter logged so far (written to ``hparams.yaml``).
        self.hparams: Dict[str, Any] = {}

    # ---- where ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The experiment name (``lightning_logs`` by default)."""
        return self._name

    @property
    def save_dir(self) -> str:
        """The root directory given at construction."""
        return self._save_dir

    @property
    def root_dir(self) -> str:
        """``save_dir/name``: the directory that holds the ``version_N`` directories."""
        return os.path.join(self._save_dir, self._name) if self._name else self._save_dir

    @property
    def version(self) -> Union[int, str]:
        """The version: as given, or the next free ``N`` (fixed at first access)."""
        if self._version is None:
            self._version = next_version(self.root_dir)
        return self._version

    @property
    def log_dir(self) -> str:
        """The directory of this run's event files and ``hparams.yaml``."""
        version = self.version
        path = os.path.join(self.root_dir, version if isinstance(version, str) else f"version_{version}")
        return os.path.join(path, self._sub_dir) if self._sub_dir else path

    # ---- the writer --------------------------------------------------------------------------
    @property
    def experiment(self) -> Any:
        """The ``tensorboardX.SummaryWriter`` (a do-nothing stand-in on ranks other than zero)."""
        if not self.rank_zero:
            return DummyExperiment()
        if self._experiment is None:
            from tensorboardX import SummaryWriter  # heavy import: only when something is written

            os.makedirs(self.log_dir, exist_ok=True)
            # A name of its own (see ``_write``): a later run's writer would otherwise truncate this one's file.
            kwargs = dict(self._kwargs)
            kwargs["filename_suffix"] = f"{kwargs.get('filename_suffix', '')}.{os.getpid()}.{next(_FILE_NUMBERS)}"
            self._experiment = SummaryWriter(logdir=self.log_dir, **kwargs)
        return self._experiment

    def _write(self, summary: Any, step: Optional[int] = None) -> None:
        """Append one ``Summary`` as an event (rank zero only), flushing every ``flush_secs``."""
        from tensorboardX.proto.event_pb2 import Event

        if self._events is None:
            pid = os.getpid()
            if self._events_file is None or self._events_file[0] != pid:
                os.makedirs(self.log_dir, exist_ok=True)
                # A name of its own: event files are named by the second and the host, so SummaryWriter's
                # file, or another process's (ddp_spawn workers) or logger's, opened in the same second
                # would otherwise get this name.
                suffix = f"{self._kwargs.get('filename_suffix', '')}.{pid}.{next(_FILE_NUMBERS)}{SCALARS_SUFFIX}"
                name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}{suffix}"
                self._events_file = (pid, os.path.join(self.log_dir, name))
            self._events = _EventFile(self._events_file[1])
            self._flushed_at = time.monotonic()
        event = Event(wall_time=time.time(), summary=summary)
        if step is not None:
            event.step = int(step)
        self._events.write_event(event)
        if time.monotonic() - self._flushed_at >= self._flush_secs:
            self.flush()

    def flush(self) -> None:
        """Hand what is written to the operating system (TensorBoard sees it from then on)."""
        if self._events is not None:
            self._events.flush()
            self._flushed_at = time.monotonic()
        if self._experiment is not None:
            self._experiment.flush()

    @hookimpl(specname="on_train_epoch_end", trylast=True)
    def _flush_at_epoch_end(self) -> None:
        # Last: after the metrics plugin sent the epoch's values.
        self.flush()

    # ---- the logging hooks -------------------------------------------------------------------
    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """One scalar per metric at ``step`` (a dict value becomes one chart with several lines).

        The scalars of one call are one event (one ``Summary`` with a value per metric);
        TensorBoard reads them exactly as ``add_scalar``'s.
        """
        if not self.rank_zero:
            return
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import scalar

        values = []
        for tag, value in add_prefix(metrics, self._prefix).items():
            if isinstance(value, dict):  # several lines in one chart: SummaryWriter's sub-directories
                self.experiment.add_scalars(tag, {k: float(v) for k, v in value.items()}, step)
            else:
                values.extend(scalar(tag, float(value)).value)
        if values:
            self._write(Summary(value=values), step)

    def log_hyperparams(self, params: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        """Hyperparameters to TensorBoard's hparams view and to ``hparams.yaml``."""
        if not self.rank_zero:
            return
        params = hparams_dict(params)
        self.hparams.update(params)
        flat = {k: _tb_value(v) for k, v in flatten(params).items()}
        if metrics is None and self._default_hp_metric:
            metrics = {"hp_metric": -1.0}
        from tensorboardX.summary import hparams  # the hparams plugin's protobufs

        metrics = dict(metrics or {})
        for summary in hparams(flat, metrics):
            self._write(summary)
        if metrics:
            self.log_metrics(metrics, 0)
        self.save()

    def finalize(self, status: str) -> None:
        """Close the scalar file (a later run through this logger, ``test()`` after ``fit()`` or
        another ``fit()``, reopens it and appends) and the ``SummaryWriter``."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()
            self._experiment = None
        self.save()

    def save(self) -> None:
        """Write ``hparams.yaml`` into the log directory (if this run wrote anything there)."""
        if not self.rank_zero:
            return
        log_dir = self.log_dir
        if self.hparams:
            os.makedirs(log_dir, exist_ok=True)
        if os.path.isdir(log_dir):
            save_hparams_yaml(os.path.join(log_dir, HPARAMS_FILE), self.hparams)

    def __getstate__(self) -> Dict[str, Any]:
        # The writers hold threads and open files: never pickle them (ddp_spawn pickles the trainer).
        state = dict(self.__dict__)
        state["_experiment"] = state["_events"] = None
        return state

    def __repr__(self) -> str:
        return f"TensorBoardLogger(save_dir={self._save_dir!r}, name={self._name!r}, version={self._version!r})"


class _EventFile:
    """An event file in TensorBoard's record format, opened to append (tensorboardX's framing and CRCs).

    tensorboardX's own ``EventsWriter`` always starts a new file; this one goes on writing the
    file a closed run of the same logger wrote, so that one run's scalars stay in one file.
    """

    def __init__(self, path: str) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import masked_crc32c

        self.path = path
        self._crc = masked_crc32c
        new = not os.path.exists(path)
        self._file = open(path, "ab")
        if new:  # TensorBoard reads the version first (and then never purges steps that go back)
            self.write_event(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write_event(self, event: Any) -> None:
        """Append one ``Event``."""
        data = event.SerializeToString()
        header = struct.pack("Q", len(data))
        self._file.write(header + struct.pack("I", self._crc(header)) + data + struct.pack("I", self._crc(data)))

    def flush(self) -> None:
        """Hand the written events to the operating system and the disk."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file."""
        try:
            self.flush()
        finally:
            self._file.close()


def _tb_value(value: Any) -> Any:
    """TensorBoard's hparams view shows numbers, bools and strings; anything else as its ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        return value.item()
    return str(value)


__all__ = ["TensorBoardLogger"]
