"""examples/digits.py: the README's main job trains a real classifier to >= 0.95 test accuracy."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits.py"


def load_example():
    spec = importlib.util.spec_from_file_location("digits_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_reach_095_test_accuracy(capsys):
    accuracy = load_example().main([])  # the example's own defaults, with the default Trainer
    assert accuracy >= 0.95
    assert f"test accuracy: {accuracy:.4f}" in capsys.readouterr().out


def test_splits_are_disjoint_and_stratified():
    splits = load_example().digits_splits(seed=0)
    sizes = {name: len(ds) for name, ds in splits.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 360
    assert all(len(ds.tensors[1].unique()) == 10 for ds in splits.values())


def test_runs_as_a_script_with_flags(tmp_path):
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(EXAMPLE), "--max_epochs", "2", "--hidden", "32"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"test accuracy: (\d\.\d+)", result.stdout)
    assert match and 0.5 < float(match.group(1)) <= 1.0
