"""``log_model``: which checkpoint files a logger uploads with its run, and when (Lightning 2.x's rules).

* ``log_model=False``: none.
* ``log_model=True``: when ``fit`` ends successfully, every file the run's ``ModelCheckpoint``
  callbacks keep (their top-k, ``last.ckpt``, the best); right after each save instead when
  a callback keeps every file (``save_top_k=-1``).
* ``log_model="all"``: right after each save.

A file already sent is sent again only when it was rewritten (``last.ckpt``). Each file goes
with its aliases (``latest``, plus ``best`` for the best one) and metadata (its score, its
original name and the callback's settings). A logger mixes in :class:`LogsCheckpoints` and
implements :meth:`LogsCheckpoints.log_checkpoint`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, List, Tuple, Union

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.rank_zero import is_rank_zero

LogModel = Union[bool, str]
# The callback settings that go into each file's metadata (those a ModelCheckpoint has).
_SETTINGS = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only", "every_n_train_steps",
             "every_n_epochs")


@dataclass(frozen=True)
class CheckpointFile:
    """One checkpoint file to upload."""

    #: Where it is.
    path: str
    #: Which write of the file this is: its modification time (ns) and inode (checkpoints are written
    #: to a temporary file and renamed, so a rewrite has a new inode even within one clock tick).
    stamp: Tuple[int, int]
    #: ``("latest",)``, or ``("latest", "best")`` for the callback's best file.
    aliases: Tuple[str, ...]
    #: Its score, original file name and the callback's settings (plain values).
    metadata: Dict[str, Any] = field(default_factory=dict)


def check_log_model(value: Any, logger: str) -> LogModel:
    """``value`` if it is a valid ``log_model`` (``False``, ``True`` or ``"all"``); else an error naming ``logger``."""
    if value is False or value is True or value == "all":
        return value
    raise MisconfigurationException(
        f"{logger}(log_model={value!r}): log_model is False (upload no checkpoint), True (the kept "
        "checkpoints when fit ends) or 'all' (every checkpoint when it is saved).")


def checkpoint_callbacks(trainer: Any) -> List[Any]:
    """The trainer's ``ModelCheckpoint``-like callbacks (those that rank files in ``best_k_models``)."""
    return [cb for cb in getattr(trainer, "callbacks", []) if isinstance(getattr(cb, "best_k_models", None), dict)]


def kept_files(callback: Any) -> List[CheckpointFile]:
    """The files ``callback`` keeps that exist, oldest first."""
    scores: Dict[str, Any] = {}
    last = getattr(callback, "last_model_path", "") or ""
    if last:
        scores[last] = None
    scores.update(callback.best_k_models)
    best = getattr(callback, "best_model_path", "") or ""
    settings = {name: _plain(getattr(callback, name)) for name in _SETTINGS if hasattr(callback, name)}
    files = []
    for path, score in scores.items():
        if not os.path.isfile(path):
            continue
        metadata = {"score": _plain(score), "original_filename": os.path.basename(path),
                    type(callback).__name__: settings}
        aliases = ("latest", "best") if path == best else ("latest",)
        stat = os.stat(path)
        files.append(CheckpointFile(path, (stat.st_mtime_ns, stat.st_ino), aliases, metadata))
    return sorted(files, key=lambda f: f.stamp)


def _plain(value: Any) -> Any:
    # Scores are tensors or floats (inf for a NaN score); metadata keeps JSON/YAML-friendly values.
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


class LogsCheckpoints:
    """Mixin for loggers with a ``log_model`` argument: decides which checkpoint files to upload, and when.

    The logger sets ``self._log_model`` (see :func:`check_log_model`), implements
    :meth:`log_checkpoint`, and calls :meth:`send_checkpoints` from ``finalize`` when the status is
    ``"success"``.
    """

    _log_model: LogModel = False

    @hookimpl(wrapper=True)
    def save_checkpoint(self, trainer: Any) -> Generator[None, Any, Any]:
        """Around every checkpoint save: once the file is written, upload what ``log_model`` asks for."""
        result = yield
        if self._log_model and is_rank_zero(trainer):
            callbacks = checkpoint_callbacks(trainer)
            self._checkpoint_sources = callbacks  # what ``send_checkpoints`` scans at the end
            if self._log_model == "all" or any(getattr(cb, "save_top_k", None) == -1 for cb in callbacks):
                self.send_checkpoints()
        return result

    def send_checkpoints(self) -> None:
        """Upload each kept file not sent yet (or rewritten since), oldest first."""
        sent: Dict[str, Tuple[int, int]] = self.__dict__.setdefault("_sent_checkpoints", {})
        for callback in self.__dict__.get("_checkpoint_sources", []):
            for checkpoint in kept_files(callback):
                if sent.get(checkpoint.path) != checkpoint.stamp:
                    self.log_checkpoint(checkpoint)
                    sent[checkpoint.path] = checkpoint.stamp

    def log_checkpoint(self, checkpoint: CheckpointFile) -> None:
        """Upload one checkpoint file (the logger's own way)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement log_checkpoint(checkpoint)")


__all__ = ["CheckpointFile", "LogsCheckpoints", "check_log_model", "checkpoint_callbacks", "kept_files"]
