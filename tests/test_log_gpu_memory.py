"""Seed-era ``Trainer(log_gpu_memory='all'|'min_max')`` (Lightning 0.9).

No GPU is used: CUDA is faked at the narrowest point (``torch.cuda.is_available``,
``device_count``, ``memory_reserved``) while the run itself trains on the CPU.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from engine import Trainer
from engine.errors import MisconfigurationException
from plugins.gpu_memory import get_memory_profile
from tests.core_support import RecordingLogger
from tests.models import ModernModel, SeedModel

QUIET = dict(enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
MB = 2 ** 20


@pytest.fixture
def two_gpus(monkeypatch):
    """CUDA with two devices holding 3 MB and 5 MB, as far as the memory readers can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: {0: 3 * MB, 1: 5 * MB}[device])


def test_profiles_name_each_gpu_as_0_9_did(two_gpus) -> None:
    assert get_memory_profile("all") == {"gpu_id: 0/memory.used (MB)": 3.0, "gpu_id: 1/memory.used (MB)": 5.0}
    assert get_memory_profile("min_max") == {"min_gpu_mem": 3.0, "max_gpu_mem": 5.0}


@pytest.mark.parametrize("mode, keys", [
    ("all", {"gpu_id: 0/memory.used (MB)": 3.0, "gpu_id: 1/memory.used (MB)": 5.0}),
    ("min_max", {"min_gpu_mem": 3.0, "max_gpu_mem": 5.0}),
])
def test_memory_reaches_the_logger_at_the_logging_steps(two_gpus, mode, keys) -> None:
    logger = RecordingLogger()
    trainer = Trainer(accelerator="cpu", max_epochs=1, log_every_n_steps=3, limit_train_batches=7,
                      limit_val_batches=0, log_gpu_memory=mode, logger=logger, **QUIET)
    assert "gpu_memory" in trainer.registry.names()
    trainer.fit(ModernModel())
    memory_rows = [(step, row) for step, row in logger.rows if set(keys) <= set(row)]
    assert [step for step, _ in memory_rows] == [2, 5]  # steps 3 and 6, at the x-axis of the step values
    assert all({k: row[k] for k in keys} == keys for _, row in memory_rows)
    assert [step for step, _ in logger.with_key("train_loss")] == [2, 5]  # the same steps as the step metrics


def test_with_accumulation_memory_is_logged_once_per_logging_step(two_gpus) -> None:
    logger = RecordingLogger()
    trainer = Trainer(accelerator="cpu", max_epochs=1, log_every_n_steps=1, limit_train_batches=4,
                      accumulate_grad_batches=2, limit_val_batches=0, log_gpu_memory="min_max", logger=logger,
                      **QUIET)
    trainer.fit(SeedModel())
    assert [step for step, _ in logger.with_key("max_gpu_mem")] == [0, 1]


def test_without_cuda_it_warns_once_and_logs_nothing(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    logger = RecordingLogger()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(max_epochs=1, limit_train_batches=2, log_every_n_steps=1, limit_val_batches=0,
                          log_gpu_memory="all", logger=logger, **QUIET)
        trainer.fit(ModernModel())
    ours = [w for w in caught if "log_gpu_memory" in str(w.message)]
    assert len(ours) == 1 and "CUDA is not available" in str(ours[0].message)
    assert "gpu_memory" not in trainer.registry.names()
    assert not any("memory" in key for _, row in logger.rows for key in row)


def test_unknown_mode_is_an_error_naming_the_flag() -> None:
    with pytest.raises(MisconfigurationException, match=r"log_gpu_memory='max'.*'all'.*'min_max'"):
        Trainer(log_gpu_memory="max", **QUIET)
