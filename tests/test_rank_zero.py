"""``rank_zero_only`` / ``rank_zero_info`` / ``rank_zero_warn`` / ``rank_zero_debug`` (Lightning's
``lightning.pytorch.utilities.rank_zero``), at ``engine.rank_zero`` and, for plugins, ``plugins.rank_zero``."""
from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

import plugins.rank_zero
from engine.rank_zero import (rank_zero_debug, rank_zero_deprecation, rank_zero_info, rank_zero_only,
                              rank_zero_warn)


@pytest.fixture
def rank(monkeypatch):
    """Sets this process's rank as a distributed plugin would, and forgets it afterwards."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)

    def set_rank(value):
        rank_zero_only.rank = value

    yield set_rank
    rank_zero_only.rank = None


@pytest.fixture
def records():
    """What the ``hookloop`` loggers write, at every level."""
    caught = []

    class Keep(logging.Handler):
        def emit(self, record):
            caught.append(record)

    logger = logging.getLogger("hookloop")
    handler, level = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield caught
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_the_rank_is_the_environments_until_set(rank, monkeypatch):
    assert rank_zero_only.rank == 0
    monkeypatch.setenv("RANK", "2")
    assert rank_zero_only.rank == 2
    rank(0)  # the distributed plugin sets it when the process joins its group
    assert rank_zero_only.rank == 0
    assert plugins.rank_zero.rank_zero_only is rank_zero_only and plugins.rank_zero.rank_zero_info is rank_zero_info


def test_messages_on_rank_zero_only(rank, records):
    rank(0)
    with pytest.warns(UserWarning, match="careful") as caught:
        rank_zero_warn("careful")
    assert caught[0].filename == __file__  # the caller is named, past the wrappers
    with pytest.warns(DeprecationWarning, match="old"):
        rank_zero_deprecation("old")
    rank_zero_info("hello %s", "there")
    rank_zero_debug("details")
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.INFO, "hello there"),
                                                             (logging.DEBUG, "details")]
    assert records[0].pathname == __file__ and records[0].name == "hookloop.engine.rank_zero"
    rank(1)
    records.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rank_zero_warn("careful")
        rank_zero_deprecation("old")
    rank_zero_info("hello")
    rank_zero_debug("details")
    assert records == []


def test_rank_zero_only_returns_default_elsewhere(rank):
    calls = []

    def save(path):
        calls.append(path)
        return path

    on_zero = rank_zero_only(save, default="skipped")
    rank(1)
    assert on_zero("a") == "skipped" and calls == []
    rank(0)
    assert on_zero("b") == "b" and calls == ["b"]


def test_info_is_shown_by_default_when_logging_is_not_configured():
    """Lightning's rank_zero_info lines reach stderr without any logging set-up: here too."""
    code = ("import logging; logging.root.handlers.clear()\n"
            "from engine.rank_zero import rank_zero_info\nrank_zero_info('GPU available: False')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "GPU available: False"
