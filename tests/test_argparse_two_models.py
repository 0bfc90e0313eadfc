"""The seed's two-model script (examples/two_models.py): ``--model_name`` picks which model adds its flags."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPT = EXAMPLES / "two_models.py"
SMALL = ["--max_epochs", "1", "--limit_train_batches", "2", "--limit_val_batches", "1", "--num_sanity_val_steps", "0",
         "--enable_progress_bar", "false", "--enable_model_summary", "false"]


@pytest.fixture
def two_models(monkeypatch):
    """The example imported as a module (its sibling model files become importable)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("two_models_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def option_names(parser):
    return {opt for action in parser._actions for opt in action.option_strings}


def test_the_chosen_model_adds_its_flags(two_models):
    gan = option_names(two_models.build_parser(["--model_name", "gan"]))
    mnist = option_names(two_models.build_parser(["--model_name", "mnist", "--max_epochs", "2"]))
    assert {"--latent_dim", "--n_modes", "--lr"} <= gan and "--hidden" not in gan
    assert {"--hidden", "--lr"} <= mnist and "--latent_dim" not in mnist
    for names in (gan, mnist):
        assert {"--model_name", "--max_epochs", "--gpus", "-h"} <= names


def test_help_shows_the_chosen_models_flags(two_models, capsys):
    with pytest.raises(SystemExit) as exit_info:
        two_models.build_parser(["--model_name", "mnist", "--help"]).parse_args(["--model_name", "mnist", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--hidden" in out and "--limit_train_batches" in out


@pytest.mark.parametrize("argv", [
    ["--model_name", "gan", "--latent_dim", "4", "--hidden_dim", "16", "--n_modes", "4"],
    ["--model_name", "mnist", "--hidden", "8", "--batch_size", "32"],
], ids=["gan", "mnist"])
def test_the_script_trains_either_model(argv, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", ENGINE_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv, *SMALL], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"trained {argv[1]}" in proc.stdout
    # The run logged the model's hyperparameters, built from the parsed flags.
    hparams = (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()
    for flag, value in zip(argv[2::2], argv[3::2]):
        assert f"{flag[2:]}: {value}" in hparams


def test_an_unknown_model_name_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model_name", "resnet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "invalid choice: 'resnet'" in proc.stderr and "Traceback" not in proc.stderr
