"""``python -m engine fit|validate|test MODULE:CLASS`` and the ``hookloop`` console script.

Runs go through real subprocesses; argument errors are also checked in-process through
``engine.__main__.main`` (a ``SystemExit(2)`` there proves no traceback escaped).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.__main__ import main

REPO = Path(__file__).resolve().parent.parent
HOOKLOOP = Path(sys.executable).parent / "hookloop"
QUIET = ["--enable_progress_bar", "false", "--enable_model_summary", "false"]

TINY = '''\
"""A tiny model for the command-line tests."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import LightningModule


def helper():
    """Not a model."""


class TinyModel(LightningModule):
    """A small classifier on synthetic data.

    Args:
        hidden: Hidden units of the tiny network.
        lr: SGD learning rate.
        seed: Seed of the initial weights.
    """

    def __init__(self, hidden: int = 4, lr: float = 0.1, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x):
        return self.net(x)

    def weight_sum(self):
        return sum(p.detach().sum() for p in self.parameters())

    def _loss(self, batch):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch))
        self.log("weight_sum", self.weight_sum())

    def on_fit_start(self):
        print(f"MODEL hidden={self.hparams.hidden} lr={self.hparams.lr}")

    def on_fit_end(self):
        print(f"WEIGHTS: {float(self.weight_sum()):.5f}")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    def _loader(self, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(64, 8, generator=g)
        return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)

    def train_dataloader(self):
        return self._loader(0)

    def val_dataloader(self):
        return self._loader(1)

    def test_dataloader(self):
        return self._loader(2)
'''


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """``tiny.py`` (defining ``TinyModel``) in the working directory; imports made in-process are undone."""
    (tmp_path / "tiny.py").write_text(TINY)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "tiny", raising=False)
    yield tmp_path
    sys.modules.pop("tiny", None)


# A launcher's variables left in this process must not make a child think it is one rank of a job.
_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_JOB_ID")


def run(*argv, cwd, command=(sys.executable, "-m", "engine")):
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", ENGINE_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([*map(str, command), *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)
    return proc


def line_value(text, label):
    match = re.search(rf"{label}: (.+)$", text, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{text}"
    return match.group(1).strip()


# ---- the top level -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [(sys.executable, "-m", "engine"), (HOOKLOOP,)], ids=["python -m engine", "hookloop"])
def test_help_lists_the_subcommands(command, tmp_path):
    proc = run("--help", cwd=tmp_path, command=command)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: hookloop")
    for sub in ("fit", "validate", "test", "plugins"):
        assert re.search(rf"^\s+{sub}\s+\S", proc.stdout, re.MULTILINE), sub


def test_an_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


# ---- fit, then validate and test from its checkpoint ----------------------------------------------


def test_fit_then_test_and_validate_from_the_best_checkpoint(tiny):
    proc = run("fit", "tiny.py:TinyModel", "--hidden", "6", "--lr", "0.2", "--max_epochs", "1",
               "--limit_train_batches", "2", "--limit_val_batches", "1", *QUIET, cwd=tiny, command=(HOOKLOOP,))
    assert proc.returncode == 0, proc.stderr
    assert "MODEL hidden=6 lr=0.2" in proc.stdout  # model flags reached the model
    logs = Path(line_value(proc.stdout, "logs"))
    best = line_value(proc.stdout, "best checkpoint")
    assert logs.is_dir() and logs.is_relative_to(tiny)
    assert Path(best).is_file(), proc.stdout
    trained = float(line_value(proc.stdout, "WEIGHTS"))

    # The checkpoint's hyperparameters (hidden=6) rebuild the model: no --hidden needed.
    proc = run("test", "tiny.py:TinyModel", "--ckpt_path", best, "--logger", "false", *QUIET, cwd=tiny)
    assert proc.returncode == 0, proc.stderr
    metrics = dict(kv.split("=") for kv in line_value(proc.stdout, "hookloop test").split())
    assert float(metrics["weight_sum"]) == pytest.approx(trained, abs=1e-4)
    assert "test_loss" in metrics

    proc = run("validate", "tiny.py:TinyModel", "--ckpt_path", best, "--limit_val_batches", "2",
               "--logger", "false", *QUIET, cwd=tiny)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"hookloop validate: val_loss=\d", proc.stdout), proc.stdout

    # Without --ckpt_path the freshly built model is evaluated.
    proc = run("test", "tiny:TinyModel", "--hidden", "6", "--seed", "1", "--logger", "false", *QUIET, cwd=tiny)
    assert proc.returncode == 0, proc.stderr
    fresh = dict(kv.split("=") for kv in line_value(proc.stdout, "hookloop test").split())
    assert float(fresh["weight_sum"]) != pytest.approx(trained, abs=1e-4)


def test_fit_a_dotted_module_without_a_class_name_after_trainer_flags(tiny):
    # MODULE found in the working directory even from the console script; :CLASS optional when unique.
    proc = run("fit", "--max_epochs", "1", "--limit_train_batches", "1", "tiny", "--hidden", "3",
               "--fast_dev_run", "--logger", "false", *QUIET, cwd=tiny, command=(HOOKLOOP,))
    assert proc.returncode == 0, proc.stderr
    assert "MODEL hidden=3 lr=0.1" in proc.stdout
    assert line_value(proc.stdout, "best checkpoint") == "none saved"  # fast_dev_run writes none
    assert line_value(proc.stdout, "logs") == "none (logger disabled)"


def test_fit_under_ddp_relaunches_the_command_and_reports_once(tiny):
    # Every process runs `hookloop fit ...` again (real gloo DDP on 2 CPU processes); rank 0 reports.
    proc = run("fit", "tiny.py:TinyModel", "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu",
               "--max_epochs", "1", "--limit_train_batches", "2", "--limit_val_batches", "1", *QUIET,
               cwd=tiny, command=(HOOKLOOP,))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("MODEL hidden=4") == 2
    assert proc.stdout.count("best checkpoint:") == 1
    assert Path(line_value(proc.stdout, "best checkpoint")).is_file()


def test_fit_the_digits_example_with_its_add_model_specific_args(tmp_path):
    proc = run("fit", REPO / "examples" / "digits.py:DigitsClassifier", "--hidden", "8", "--batch_size", "32",
               "--max_epochs", "1", "--limit_train_batches", "2", "--limit_val_batches", "1",
               "--num_sanity_val_steps", "0", *QUIET, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    logs = Path(line_value(proc.stdout, "logs"))
    assert "hidden: 8" in (logs / "hparams.yaml").read_text()
    assert Path(line_value(proc.stdout, "best checkpoint")).is_file()


def test_help_of_a_model_shows_its_flags_and_the_trainers(tiny, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "tiny.py:TinyModel", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: hookloop fit MODULE:CLASS")
    assert "TinyModel: A small classifier on synthetic data." in out
    assert "--hidden INT Hidden units of the tiny network. (default: 4)" in out
    assert "--max_epochs INT|NONE Stop after this many epochs" in out
    assert "--ckpt_path PATH" in out


def test_help_without_a_model_shows_the_trainer_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "-h"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: hookloop validate MODULE:CLASS" in out and "--limit_val_batches" in out


# ---- mistakes: argparse errors, exit status 2 ------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["fit"], "the following arguments are required: MODULE:CLASS"),
    (["fit", "tiny.py:TinyModel", "--max_epochs", "two"], "argument --max_epochs: expected int|none; got 'two'"),
    (["fit", "tiny.py:TinyModel", "--lr", "fast"], "argument --lr: expected float; got 'fast'"),
    (["fit", "tiny.py:TinyModel", "--fast_dev_run", "maybe"], "argument --fast_dev_run"),
    (["fit", "tiny.py:TinyModel", "--hiden", "3"], "unrecognized arguments: --hiden 3"),
    (["fit", "tiny.py:TinyModel", "--callbacks", "x"], "unrecognized arguments: --callbacks x"),
    (["fit", "nosuchmodule:Model"], "no module named 'nosuchmodule'"),
    (["fit", "nosuchpkg.models:Model"], "no module named 'nosuchpkg.models'"),
    (["fit", "tiny:TinyModle"], "module 'tiny' has no class 'TinyModle'. Did you mean `TinyModel`?"),
    (["fit", "missing/model.py:Model"], "file 'missing/model.py' does not exist"),
    (["fit", "tiny.py:helper"], "'tiny.py:helper' is not a LightningModule subclass"),
    (["test", "tiny.py:TinyModel", "--ckpt_path", "nothing.ckpt"], "--ckpt_path 'nothing.ckpt': no such file"),
])
def test_mistakes_are_argparse_errors(argv, message, tiny, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: hookloop {argv[0]} MODULE:CLASS")
    assert f"hookloop {argv[0]}: error: {message}" in err


@pytest.mark.parametrize("flags, message", [
    (["--max_epochs", "-5"], "argument --max_epochs: Trainer(max_epochs=-5): max_epochs must be an int >= -1"),
    (["--min_steps", "-1"], "argument --min_steps: Trainer(min_steps=-1): min_steps must be an int >= 0"),
    (["--check_val_every_n_epoch", "0"], "argument --check_val_every_n_epoch: Trainer(check_val_every_n_epoch=0)"),
    (["--limit_train_batches", "1.5"], "argument --limit_train_batches: `limit_train_batches=1.5` is a fraction"),
    (["--val_check_interval", "100"], "argument --val_check_interval: `val_check_interval=100` is more than"),
    (["--precision", "13"], "argument --precision: Trainer(precision=13) is not supported"),
    (["--accelerator", "tpu"], "argument --accelerator: accelerator='tpu' is unknown"),
    (["--devices", "0", "--accelerator", "cpu"], "argument --devices: devices=0: on the CPU pass"),
    (["--strategy", "ddp2"], "argument --strategy: strategy='ddp2' is not supported"),
    (["--gradient_clip_algorithm", "max"], "argument --gradient_clip_algorithm: gradient_clip_algorithm='max'"),
    (["--accumulate_grad_batches", "0"], "argument --accumulate_grad_batches: accumulate_grad_batches must be"),
    (["--max_time", "soon"], "argument --max_time: max_time='soon' is not 'DD:HH:MM:SS'"),
    (["--profiler", "fast"], "argument --profiler: Trainer(profiler='fast') is not a profiler name"),
    (["--truncated_bptt_steps", "0"], "argument --truncated_bptt_steps: Trainer(truncated_bptt_steps=0)"),
], ids=lambda v: "_".join(v[::2]).strip("-") if isinstance(v, list) else None)
def test_flag_values_the_trainer_refuses_are_usage_errors_naming_the_flag(flags, message, tiny, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "tiny.py:TinyModel", "--logger", "false", *QUIET, *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: hookloop fit MODULE:CLASS")
    lines = err.splitlines()
    assert lines[-1].startswith(f"hookloop fit: error: {message}"), err
    assert "Traceback" not in err


def _bad_checkpoints(tiny):
    """Files that are no checkpoint of TinyModel: random bytes, a directory, another model's weights."""
    import random

    import torch

    (tiny / "noise.ckpt").write_bytes(random.Random(0).randbytes(2000))
    (tiny / "a_directory.ckpt").mkdir()
    torch.save({"state_dict": {"other.weight": torch.zeros(2, 2)}}, tiny / "other.ckpt")
    return [("noise.ckpt", "argument --ckpt_path: Checkpoint 'noise.ckpt' (2000 bytes) is corrupt or not a checkpoint"),
            ("a_directory.ckpt", "--ckpt_path 'a_directory.ckpt': is a directory, not a checkpoint file"),
            ("other.ckpt", "argument --ckpt_path: Checkpoint 'other.ckpt' does not match TinyModel: missing in the "
                           "checkpoint: net.0.weight")]


@pytest.mark.parametrize("stage", ["fit", "test"])
def test_a_bad_checkpoint_file_is_a_usage_error_naming_it(stage, tiny, capsys):
    for path, message in _bad_checkpoints(tiny):
        with pytest.raises(SystemExit) as exit_info:
            main([stage, "tiny.py:TinyModel", "--ckpt_path", path, "--logger", "false", *QUIET])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith(f"hookloop {stage}: error: {message}"), err
        assert "Traceback" not in err


def test_a_bad_flag_value_and_a_corrupt_checkpoint_in_a_real_process_exit_2_without_a_traceback(tiny):
    _bad_checkpoints(tiny)
    for argv in (["--max_epochs", "-5"], ["--ckpt_path", "noise.ckpt"]):
        proc = run("fit", "tiny.py:TinyModel", *argv, *QUIET, cwd=tiny, command=(HOOKLOOP,))
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.splitlines()[-1].startswith(f"hookloop fit: error: argument {argv[0]}: "), proc.stderr


def test_a_module_that_fails_to_import_is_named(tiny, capsys):
    (tiny / "broken.py").write_text("import not_installed_dependency\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "broken.py:Model"])
    assert exit_info.value.code == 2
    assert "importing file 'broken.py' failed: No module named 'not_installed_dependency'" in capsys.readouterr().err


def test_a_bad_flag_in_a_real_process_prints_usage_and_no_traceback(tiny):
    proc = run("fit", "tiny.py:TinyModel", "--limit_train_batches", "half", cwd=tiny, command=(HOOKLOOP,))
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: hookloop fit MODULE:CLASS")
    assert "argument --limit_train_batches: expected int|float; got 'half'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_the_seed_template_signature_with_root_dir(tiny, capsys):
    # pl_examples' template model: `add_model_specific_args(parent_parser, root_dir)`, flags added in place.
    (tiny / "template.py").write_text(TINY + '''

class TemplateModel(TinyModel):
    @staticmethod
    def add_model_specific_args(parent_parser, root_dir):
        parent_parser.add_argument("--data_root", default=root_dir)
        parent_parser.add_argument("--hidden", type=int, default=5)
        return parent_parser

    def __init__(self, hidden, data_root, **kwargs):
        super().__init__(hidden=hidden)
        print(f"ROOT {data_root}")
''')
    assert main(["fit", "template.py:TemplateModel", "--fast_dev_run", "--logger", "false", *QUIET]) == 0
    out = capsys.readouterr().out
    assert f"ROOT {os.getcwd()}" in out and "MODEL hidden=5" in out
