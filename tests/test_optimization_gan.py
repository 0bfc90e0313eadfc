"""examples/gan.py: the seed's GoodGAN learns a 2-D mixture of Gaussians with two optimizers."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "gan.py"


def test_gan_example_learns_every_mode(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", ENGINE_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--max_epochs", "12"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr
    covered = int(re.search(r"modes covered .*: (\d+)/8", proc.stdout).group(1))
    before, after = map(float, re.search(r"before training ([\d.]+), after ([\d.]+)", proc.stdout).groups())
    assert covered >= 6, proc.stdout
    assert after < 0.4 and after < before / 3, proc.stdout


def test_goodgan_takes_any_parsed_flag_and_adds_its_own(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    from argparse import ArgumentParser

    from gan import GoodGAN

    parser = GoodGAN.add_model_specific_args(ArgumentParser(add_help=False))
    args = parser.parse_args(["--latent_dim", "4"])
    model = GoodGAN(**vars(args), max_epochs=3, gpus=None)  # Trainer flags travel along and are ignored
    assert model.hparams.latent_dim == 4 and "max_epochs" not in model.hparams
    assert model(torch.randn(5, 4)).shape == (5, 2)
