"""Exact resume: a run killed mid-epoch and resumed ends with bitwise the same weights.

The kill tests (SIGKILL, SIGTERM/SIGINT, SLURM's SIGUSR1) run training in a child process
(this file run as a script), so the signal is real and nothing of the killed run survives
but its checkpoint files.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from typing import List, Optional

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import Callback, LightningModule, Trainer, hookimpl, seed_everything
from plugins import EarlyStopping, ModelCheckpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, N, BATCH, EVERY = 3, 56, 8, 2  # 7 batches per epoch, 21 steps, a checkpoint every 2 steps


class Noisy(LightningModule):
    """Dropout, and Python/numpy randomness in the loss: every generator matters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("epoch_loss", loss, on_step=False, on_epoch=True)  # a running epoch mean survives a resume
        return loss * (1.0 + 0.01 * random.random() + 0.01 * float(np.random.rand()))

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=0.01)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)]

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N, 8, generator=g)
        return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=BATCH, shuffle=True)

    def val_dataloader(self):
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
        return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8, shuffle=True)


# ---------------------------------------------------------------------------------------
# the child: one training run (optionally killed at a step, optionally resumed)
# ---------------------------------------------------------------------------------------


def _child(root: str, kill_at: int, sig: str, ckpt_path: Optional[str]) -> None:
    torch.set_num_threads(1)

    class KillAt(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == kill_at and trainer.global_step not in self.sent:
                self.sent.add(trainer.global_step)  # once: a resumed run passes this step again
                os.kill(os.getpid(), getattr(signal, "SIG" + sig))

        def on_exception(self, trainer, pl_module, exception):
            with open(os.path.join(root, "exception.txt"), "w") as f:
                f.write(f"{type(exception).__name__} at step {trainer.global_step}")

    KillAt.sent = set() if ckpt_path is None else {kill_at}

    seed_everything(1234 if ckpt_path is None else 999)  # a resumed run must not depend on its own seed
    callbacks = [ModelCheckpoint(dirpath=os.path.join(root, "ckpt"), every_n_train_steps=EVERY, save_top_k=-1,
                                 save_last=True),
                 EarlyStopping(monitor="val_loss", patience=50), KillAt()]
    trainer = Trainer(max_epochs=EPOCHS, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=1, callbacks=callbacks, default_root_dir=root)
    trainer.fit(Noisy(), ckpt_path=ckpt_path)
    torch.save(trainer.lightning_module.state_dict(), os.path.join(root, "final.pt"))
    with open(os.path.join(root, "seen.txt"), "w") as f:
        f.write(f"{trainer.global_step} {trainer.current_epoch}")


def _run(root: str, kill_at: int = -1, ckpt_path: Optional[str] = None, sig: str = "KILL",
         **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, ENGINE_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1", **env_vars)
    args = [sys.executable, __file__, root, str(kill_at), sig] + ([ckpt_path] if ckpt_path else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    root = str(tmp_path_factory.mktemp("uninterrupted"))
    result = _run(root)
    assert result.returncode == 0, result.stderr
    return torch.load(os.path.join(root, "final.pt"), weights_only=True)


def _kill_points() -> List[int]:
    # 5: newest checkpoint mid-epoch 0; 15: newest checkpoint at the end of epoch 1 (its last
    # batch); plus one random step (printed by pytest's parametrize id).
    pick = random.Random().choice([s for s in range(3, EPOCHS * N // BATCH) if s not in (5, 15)])
    return [5, 15, pick]


@pytest.mark.parametrize("kill_at", _kill_points())
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path, uninterrupted, kill_at):
    root = str(tmp_path)
    killed = _run(root, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not os.path.exists(os.path.join(root, "final.pt"))
    last = os.path.join(root, "ckpt", "last.ckpt")
    saved = torch.load(last, weights_only=True)
    newest = saved["global_step"]
    # The newest save before the killing step: a step checkpoint (every EVERY steps) or last.ckpt's update at
    # an epoch end (every N // BATCH steps), whichever came later.
    per_epoch = N // BATCH
    assert newest == max((kill_at - 1) // EVERY * EVERY, (kill_at - 1) // per_epoch * per_epoch)
    resumed = _run(root, ckpt_path="last")
    assert resumed.returncode == 0, resumed.stderr
    weights = torch.load(os.path.join(root, "final.pt"), weights_only=True)
    assert weights.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(weights[name], tensor), f"{name} differs after resuming from step {newest}"
    with open(os.path.join(root, "seen.txt")) as f:
        assert f.read() == f"{EPOCHS * N // BATCH} {EPOCHS}"


def _assert_same_weights(root: str, expected: dict) -> None:
    weights = torch.load(os.path.join(root, "final.pt"), weights_only=True)
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), f"{name} differs"


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, uninterrupted, sig):
    root = str(tmp_path)
    stopped = _run(root, kill_at=9, sig=sig)
    assert stopped.returncode != 0
    assert f"received SIG{sig}" in stopped.stderr and "interrupted.ckpt" in stopped.stderr
    with open(os.path.join(root, "exception.txt")) as f:
        assert f.read() == "TrainingInterrupted at step 10"  # on_exception ran, after the next batch
    checkpoint = torch.load(os.path.join(root, "interrupted.ckpt"), weights_only=True)
    assert checkpoint["global_step"] == 10 and checkpoint["loop"]["resume_batch"] == 3
    if sig == "INT":
        return  # the same path as SIGTERM from here on
    resumed = _run(root, kill_at=9, ckpt_path=os.path.join(root, "interrupted.ckpt"))
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_weights(root, uninterrupted)


def test_slurm_signal_saves_requeues_and_the_next_run_resumes_by_itself(tmp_path, uninterrupted):
    root = str(tmp_path / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'scontrol.txt'}\n")
    scontrol.chmod(0o755)
    slurm = dict(SLURM_JOB_ID="4242", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    stopped = _run(root, kill_at=12, sig="USR1", **slurm)
    assert stopped.returncode != 0
    assert os.path.exists(os.path.join(root, "hpc_ckpt_1.ckpt")), stopped.stderr
    assert (tmp_path / "scontrol.txt").read_text().strip() == "requeue 4242"
    requeued = _run(root, kill_at=12, sig="USR1", **slurm)  # no ckpt_path: found by itself
    assert requeued.returncode == 0, requeued.stderr
    assert "resuming from" in requeued.stderr and "hpc_ckpt_1.ckpt" in requeued.stderr
    _assert_same_weights(root, uninterrupted)


def test_slurm_without_scontrol_saves_and_says_it_cannot_requeue(tmp_path):
    stopped = _run(str(tmp_path), kill_at=3, sig="USR1", SLURM_JOB_ID="77", PATH=str(tmp_path))
    assert stopped.returncode != 0
    assert "scontrol not found" in stopped.stderr and "not requeued" in stopped.stderr
    assert os.path.exists(tmp_path / "hpc_ckpt_1.ckpt")


class NoisyWorkers(Noisy):
    """The same data, loaded by two worker processes."""

    def train_dataloader(self):
        loader = super().train_dataloader()
        return DataLoader(loader.dataset, batch_size=BATCH, shuffle=True, num_workers=2)


@pytest.mark.parametrize("model_class", [Noisy, NoisyWorkers])
def test_a_step_checkpoint_followed_by_validation_resumes_exactly(tmp_path, model_class):
    """The step checkpoint before a mid-epoch validation is rewritten after it (generators, metrics)."""
    flags = dict(max_epochs=2, val_check_interval=3, num_sanity_val_steps=0, logger=False,
                 enable_progress_bar=False, enable_model_summary=False)

    class EpochLoss(Callback):
        @hookimpl(trylast=True)  # after the metrics plugin reduced the epoch's values
        def on_train_epoch_end(self, trainer, pl_module):
            self.seen.append(trainer.callback_metrics["epoch_loss"])

    def run(directory, *extra, ckpt_path=None):
        seed_everything(3)
        checkpoint = ModelCheckpoint(dirpath=str(tmp_path / directory), every_n_train_steps=3, save_last=True)
        model, epoch_loss = model_class(), EpochLoss()
        epoch_loss.seen = []
        Trainer(callbacks=[checkpoint, epoch_loss, *extra], **flags).fit(model, ckpt_path=ckpt_path)
        return model.state_dict(), epoch_loss.seen

    class Crash(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 7:  # step 6 saved, validated, then rewritten
                raise RuntimeError("crash")

    expected, expected_losses = run("a")
    with pytest.raises(RuntimeError, match="crash"):
        run("b", Crash())
    # last.ckpt moved on to the end of epoch 0 (step 7); the step-6 file is the one rewritten after validation.
    assert torch.load(str(tmp_path / "b" / "last.ckpt"), weights_only=True)["global_step"] == 7
    step_file = str(tmp_path / "b" / "epoch=0-step=6.ckpt")
    assert torch.load(step_file, weights_only=True)["loop"]["resume_batch"] == 6
    resumed, losses = run("b", ckpt_path=step_file)
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name
    assert len(losses) == 2 and all(torch.equal(a, b) for a, b in zip(losses, expected_losses))


def test_a_checkpoint_saved_by_a_mid_epoch_validation_resumes_exactly(tmp_path):
    """val_check_interval: ModelCheckpoint saves after each mid-epoch validation; resuming from such
    a file (the validation is not run again) ends with the uninterrupted run's weights, bitwise."""
    flags = dict(max_epochs=2, val_check_interval=3, num_sanity_val_steps=0, logger=False,
                 enable_progress_bar=False, enable_model_summary=False)

    def run(directory, ckpt_path=None):
        seed_everything(5)
        checkpoint = ModelCheckpoint(dirpath=str(tmp_path / directory), monitor="val_loss", save_top_k=-1)
        model = Noisy()
        Trainer(callbacks=[checkpoint], **flags).fit(model, ckpt_path=ckpt_path)
        return model.state_dict()

    expected = run("a")
    # 7 batches per epoch: validations after batches 3 and 6 of each; epoch 1's first is at step 10.
    mid = str(tmp_path / "a" / "epoch=1-step=10.ckpt")
    assert torch.load(mid, weights_only=True)["loop"]["resume_batch"] == 3
    resumed = run("b", ckpt_path=mid)
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name


def test_a_mid_epoch_checkpoint_taken_while_accumulating_resumes_exactly(tmp_path):
    """accumulate_grad_batches=2, validation every 3 batches: some saves fall between the two batches of a
    step. The partly accumulated gradients travel in the checkpoint; every file resumes bitwise."""
    flags = dict(max_epochs=2, val_check_interval=3, accumulate_grad_batches=2, num_sanity_val_steps=0,
                 logger=False, enable_progress_bar=False, enable_model_summary=False)

    def run(directory, ckpt_path=None):
        seed_everything(5)
        checkpoint = ModelCheckpoint(dirpath=str(tmp_path / directory), save_top_k=-1)
        model = Noisy()
        Trainer(callbacks=[checkpoint], **flags).fit(model, ckpt_path=ckpt_path)
        return model.state_dict()

    expected = run("a")
    files = sorted(os.listdir(tmp_path / "a"))
    accumulating = [f for f in files if torch.load(str(tmp_path / "a" / f), weights_only=True)["loop"].get(
        "accumulated_grads")]
    assert accumulating == ["epoch=0-step=1.ckpt", "epoch=1-step=5.ckpt"]  # validated after batch 3 (odd)
    for name in files:
        resumed = run("b_" + name, ckpt_path=str(tmp_path / "a" / name))
        assert all(torch.equal(resumed[k], v) for k, v in expected.items()), name


def test_resume_reads_no_trained_batch(tmp_path):
    """The resumed epoch starts at the next batch and loads none of the trained samples."""
    from torch.utils.data import DataLoader, Dataset

    from tests.models import SeedModel, make_data

    class Counting(Dataset):
        def __init__(self) -> None:
            self.data = make_data(64)
            self.loaded: List[int] = []

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i):
            self.loaded.append(i)
            return self.data[i]

    class SaveAt(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                trainer.save_checkpoint("mid.ckpt")
                self.loaded = list(data.loaded)

    class Record(Callback):
        seen: List[int] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.append(batch_idx)

    data = Counting()
    loader = DataLoader(data, batch_size=8, shuffle=True)
    flags = dict(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                 checkpoint_callback=False, limit_val_batches=0)
    saver = SaveAt()
    Trainer(callbacks=[saver], **flags).fit(SeedModel(), train_dataloaders=loader)
    trained = saver.loaded
    assert len(trained) == 24
    data.loaded.clear()
    record = Record()
    resumed = Trainer(callbacks=[record], **flags)
    resumed.fit(SeedModel(), train_dataloaders=loader, ckpt_path="mid.ckpt")
    assert record.seen == [3, 4, 5, 6, 7]
    assert len(data.loaded) == 40 and not set(data.loaded) & set(trained)
    assert sorted(data.loaded + trained) == list(range(64))  # the same permutation, continued
    assert resumed.global_step == 8


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
