"""DeviceStatsMonitor: on the CPU, Lightning's CPU stats (psutil) reach the loggers at the step-logging steps."""
from __future__ import annotations

import csv
import sys

import pytest

from engine import MisconfigurationException, Trainer
from plugins import CSVLogger, DeviceStatsMonitor
from tests.callback_support import QUIET
from tests.models import ModernModel

pytest.importorskip("psutil")

STATS = ("cpu_percent", "cpu_vm_percent", "cpu_swap_percent")


def _rows(logger):
    with open(f"{logger.log_dir}/metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cpu_stats_are_read_back_from_the_csv_file(tmp_path):
    logger = CSVLogger(tmp_path)
    trainer = Trainer(max_epochs=1, log_every_n_steps=2, callbacks=[DeviceStatsMonitor()],
                      **{**QUIET, "logger": logger, "limit_val_batches": 2})
    trainer.fit(ModernModel())
    rows = _rows(logger)
    for hook in ("on_train_batch_start", "on_train_batch_end"):
        for stat in STATS:
            key = f"DeviceStatsMonitor.{hook}/{stat}"
            logged = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
            # Every second optimizer step (log_every_n_steps=2), at x = the step, a percentage.
            assert [step for step, _ in logged] == [1, 3, 5, 7]
            assert all(0.0 <= value <= 100.0 for _, value in logged)


def test_filter_keys_keeps_only_the_named_stats(tmp_path):
    logger = CSVLogger(tmp_path)
    monitor = DeviceStatsMonitor(filter_keys={"cpu_percent"})
    Trainer(max_epochs=1, log_every_n_steps=1, callbacks=[monitor], **{**QUIET, "logger": logger,
                                                                        "limit_val_batches": 1}).fit(ModernModel())
    stats = {c for c in _rows(logger)[0] if c.startswith("DeviceStatsMonitor")}
    assert stats == {f"DeviceStatsMonitor.{hook}/cpu_percent" for hook in (
        "on_train_batch_start", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end")}


def test_cpu_stats_false_logs_nothing_on_the_cpu(tmp_path):
    logger = CSVLogger(tmp_path)
    Trainer(max_epochs=1, log_every_n_steps=1, callbacks=[DeviceStatsMonitor(cpu_stats=False)],
            **{**QUIET, "logger": logger, "limit_val_batches": 0}).fit(ModernModel())
    assert not any(c.startswith("DeviceStatsMonitor") for c in _rows(logger)[0])


def test_no_logger_is_a_clear_error():
    with pytest.raises(MisconfigurationException, match="DeviceStatsMonitor needs a logger"):
        Trainer(max_epochs=1, callbacks=[DeviceStatsMonitor()], **QUIET).fit(ModernModel())


def test_missing_psutil_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)
    with pytest.raises(ModuleNotFoundError, match="pip install psutil"):
        Trainer(max_epochs=1, callbacks=[DeviceStatsMonitor()], **{**QUIET, "logger": CSVLogger(tmp_path)}).fit(
            ModernModel())
