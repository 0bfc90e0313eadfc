"""``CSVLogger``: ``metrics.csv`` (one row per logging step) and ``hparams.yaml``; standard library only."""
from __future__ import annotations

import csv
import os
from typing import Any, Dict, List, Optional, Union

from hookloop.plugins.logger_base import (HPARAMS_FILE, Logger, add_prefix, hparams_dict, next_version,
                                         save_hparams_yaml)

METRICS_FILE = "metrics.csv"


class CSVWriter:
    """Buffers metric rows and writes them to ``metrics.csv``; the columns are the union of all keys.

    Values logged at the same step (e.g. training values and the validation epoch's values)
    share one row. When a new column appears, the file is rewritten with the wider header.
    """

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, METRICS_FILE)
        self.hparams: Dict[str, Any] = {}
        self.columns: List[str] = []
        self._rows: List[Dict[str, Any]] = []  # not yet written
        self._last_step: Optional[int] = None  # step of the last row written

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """Add ``metrics`` at ``step``: to the last row if it has the same step and no clash, else a new row.

        A name already in the row with the same value (the ``epoch`` every row carries) is no clash.
        """
        row = self._rows[-1] if self._rows else None
        if row is not None and row["step"] == step and all(row.get(k, v) == v for k, v in metrics.items()):
            row.update(metrics)
            return
        self._rows.append({"step": step, **metrics})

    def log_hparams(self, params: Dict[str, Any]) -> None:
        """Remember hyperparameters for ``hparams.yaml``."""
        self.hparams.update(params)

    def save(self) -> None:
        """Write buffered rows (and ``hparams.yaml``)."""
        os.makedirs(self.log_dir, exist_ok=True)
        save_hparams_yaml(os.path.join(self.log_dir, HPARAMS_FILE), self.hparams)
        if not self._rows:
            return
        new = [k for row in self._rows for k in row if k not in self.columns]
        new = list(dict.fromkeys(new))
        if new or not os.path.exists(self.metrics_file_path):
            old_rows = self._read_existing()
            self.columns = _ordered(self.columns + new)
            self._write(old_rows + self._rows, "w")
        else:
            self._write(self._rows, "a")
        self._rows = []

    def _read_existing(self) -> List[Dict[str, Any]]:
        if not os.path.exists(self.metrics_file_path):
            return []
        with open(self.metrics_file_path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def _write(self, rows: List[Dict[str, Any]], mode: str) -> None:
        with open(self.metrics_file_path, mode, newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, restval="")
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)


def _ordered(columns: List[str]) -> List[str]:
    # ``step`` first and ``epoch`` second, so the file reads like a table of runs.
    head = [c for c in ("step", "epoch") if c in columns]
    return head + [c for c in columns if c not in head]


class CSVLogger(Logger):
    """Log to ``save_dir/name/version_N/metrics.csv`` (+ ``hparams.yaml``).

    Args:
        save_dir: Root directory.
        name: Experiment name, a sub-directory of ``save_dir`` (``""``: none).
        version: An int (``version_<int>``), a string (the directory name) or ``None`` for the next free one.
        prefix: Put before every metric name (``prefix-name``).
        flush_logs_every_n_steps: Write buffered rows every this many ``log_metrics`` calls (and at the end).
    """

    def __init__(self, save_dir: Union[str, "os.PathLike[str]"], name: Optional[str] = "lightning_logs",
                 version: Union[int, str, None] = None, prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_every = max(1, int(flush_logs_every_n_steps))
        self._experiment: Optional[CSVWriter] = None
        self._calls = 0

    @property
    def name(self) -> str:
        """The experiment name."""
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
        """The directory of ``metrics.csv`` and ``hparams.yaml``."""
        version = self.version
        return os.path.join(self.root_dir, version if isinstance(version, str) else f"version_{version}")

    @property
    def experiment(self) -> CSVWriter:
        """The :class:`CSVWriter` (created, with its directory, on first use)."""
        if self._experiment is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = CSVWriter(self.log_dir)
        return self._experiment

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """Add a row (or fill the current step's row); written every ``flush_logs_every_n_steps`` calls."""
        if not self.rank_zero:
            return
        values = {k: float(v) for k, v in add_prefix(metrics, self._prefix).items()}
        if "epoch" in values and values["epoch"].is_integer():
            values["epoch"] = int(values["epoch"])  # an epoch reads as 3, not 3.0
        self.experiment.log_metrics(values, step)
        self._calls += 1
        if self._calls % self._flush_every == 0:
            self.experiment.save()

    def log_hyperparams(self, params: Any) -> None:
        """Hyperparameters go to ``hparams.yaml``."""
        if not self.rank_zero:
            return
        self.experiment.log_hparams(hparams_dict(params))
        self.experiment.save()

    def save(self) -> None:
        """Write what is buffered."""
        if self._experiment is not None and self.rank_zero:
            self._experiment.save()

    def __repr__(self) -> str:
        return f"CSVLogger(save_dir={self._save_dir!r}, name={self._name!r}, version={self._version!r})"


__all__ = ["CSVLogger", "CSVWriter", "METRICS_FILE"]
