"""Shared fixtures: small synthetic models and data, each test in its own directory."""
from __future__ import annotations

import os

import pytest
import torch

# Entry-point plugins installed in the environment must not leak into unrelated tests.
os.environ.setdefault("ENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own working directory with one torch thread (stable and quick on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    yield
