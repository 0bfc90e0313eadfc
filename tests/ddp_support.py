"""A training script for the multi-process tests, and helpers to run it under each launcher.

The script is configured by environment variables (``HL_*``) so one file serves the plain
``python script.py`` launcher, ``ddp_spawn``, torchrun, SLURM variables and failure runs.
Every rank writes what it saw to ``$HL_OUT/rank<global_rank>.json`` at the end of ``fit``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from plugins.environments import find_free_port

SCRIPT = r'''
import json, os, signal, sys, time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from engine import Trainer, LightningModule, seed_everything
from plugins.csv_logger import CSVLogger
from plugins.early_stopping import EarlyStopping

OUT = os.environ["HL_OUT"]
FAIL = os.environ.get("HL_FAIL", "")
# HL_HANG: comma-separated "action:rank:place:batch" (epoch 0 only; batch "*" is every batch).
# action: hang (sleep forever), spin (busy loop forever), pause<seconds>, barrier (an extra
# collective on that rank only); place: train (training_step) or val (validation_step).
HANG = [item.split(":") for item in os.environ.get("HL_HANG", "").split(",") if item]


def maybe_hang(module, place, batch_idx):
    for action, rank, where, at in HANG:
        if (where, int(rank)) != (place, module.global_rank) or module.current_epoch != 0 or \
                at not in ("*", str(batch_idx)):
            continue
        if action.startswith("pause"):
            time.sleep(float(action[len("pause"):]))
        elif action == "barrier":
            torch.distributed.barrier()
        else:
            with open(os.path.join(OUT, f"hang{module.global_rank}"), "w") as f:
                f.write(str(time.time()))
            while action == "spin":
                pass
            time.sleep(10 ** 6)


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(torch.arange(n), x, (x[:, 0] > 0).long())


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.seen = {}

    def prepare_data(self):
        target = os.environ.get("HL_DATA_DIR")
        if target:
            os.makedirs(target, exist_ok=True)
            with open(os.path.join(target, f"prepared_by_rank{self.global_rank}"), "w") as f:
                f.write("data")

    def setup(self, stage):
        with open(os.path.join(OUT, f"pid{self.global_rank}"), "w") as f:
            f.write(str(os.getpid()))

    def training_step(self, batch, batch_idx):
        maybe_hang(self, "train", batch_idx)
        if FAIL:
            kind, rank, at = FAIL.split(":")
            if self.global_rank == int(rank) and batch_idx == int(at):
                if kind == "raise":
                    raise RuntimeError("boom in training_step")
                os.kill(os.getpid(), signal.SIGKILL)
        idx, x, y = batch
        self.seen.setdefault(str(self.current_epoch), []).extend(idx.tolist())
        self.log("rank_value", float(self.global_rank), sync_dist=True, on_step=False, on_epoch=True)
        return nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        maybe_hang(self, "val", batch_idx)
        idx, x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.layer(x), y))
        # Per step and per epoch: the epoch value is averaged across ranks under its returned name too.
        self.log("val_rank", float(self.global_rank), on_step=True, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(data(64, 0), batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(data(32, 1), batch_size=8)

    def on_train_start(self):
        ddp = self.trainer.strategy_model
        if ddp is not None and os.environ.get("HL_COUNT_ALLREDUCE"):
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
            self.allreduces = 0

            def counting(state, bucket):
                self.allreduces += 1
                return allreduce_hook(None, bucket)

            ddp.register_comm_hook(None, counting)

    def on_fit_end(self):
        t = self.trainer
        plugin = t.registry.get_plugin("distributed")
        record = dict(
            global_rank=t.global_rank, local_rank=t.local_rank, node_rank=t.node_rank, world_size=t.world_size,
            is_global_zero=t.is_global_zero, module_global_rank=self.global_rank, module_local_rank=self.local_rank,
            seen=self.seen, epochs_run=len(self.seen), weight=self.layer.weight.tolist(), bias=self.layer.bias.tolist(),
            metrics={k: float(v) for k, v in t.callback_metrics.items()},
            pid=os.getpid(), ppid=os.getppid(), torchelastic=os.environ.get("TORCHELASTIC_RUN_ID"),
            started_children=len(getattr(plugin, "_children", [])),
            broadcast=t.hooks.broadcast(t, f"from rank {t.global_rank}", 0),
            environment=type(plugin.environment).__name__ if plugin is not None else None,
            allreduces=getattr(self, "allreduces", None),
        )
        with open(os.path.join(OUT, f"rank{t.global_rank}.json"), "w") as f:
            json.dump(record, f)


def flags():
    mode = os.environ.get("HL_MODE", "ddp")
    common = dict(max_epochs=int(os.environ.get("HL_EPOCHS", "2")), enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0,
                  prepare_data_per_node=os.environ.get("HL_PER_NODE", "1") == "1",
                  accumulate_grad_batches=int(os.environ.get("HL_ACCUMULATE", "1")))
    if os.environ.get("HL_WRITE"):
        root = os.path.join(OUT, "root" + os.environ.get("RANK", "0"))
        common.update(default_root_dir=root, logger=CSVLogger(root), enable_checkpointing=True,
                      callbacks=[EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)])
    else:
        common.update(logger=False, enable_checkpointing=False)
    if mode == "ddp":
        return dict(accelerator="cpu", devices=2, strategy="ddp", **common)
    if mode == "ddp_cpu":
        return dict(distributed_backend="ddp_cpu", num_processes=2, **common)
    if mode == "external":  # torchrun or SLURM decide the processes
        return dict(accelerator="cpu", num_nodes=int(os.environ.get("HL_NODES", "1")), **common)
    raise SystemExit(f"unknown HL_MODE {mode}")


if __name__ == "__main__":
    seed_everything(7)
    model = Model()
    trainer = Trainer(**flags())
    trainer.fit(model)
    if os.environ.get("HL_MODE") == "ddp_cpu":  # the spawning parent: rank 0's weights came back
        with open(os.path.join(OUT, "parent.json"), "w") as f:
            json.dump(dict(weight=model.layer.weight.tolist(), rank=trainer.global_rank), f)
'''


def write_script(tmp: Path) -> Path:
    """The training script in ``tmp`` (with an ``out`` directory next to it)."""
    (tmp / "out").mkdir(exist_ok=True)
    path = tmp / "train_ddp.py"
    path.write_text(SCRIPT)
    return path


def script_env(tmp: Path, **extra: str) -> Dict[str, str]:
    """A clean environment for the script: no inherited rank variables, one thread per process."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_", "HL_")) and k not in
           ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
            "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")}
    env.update(HL_OUT=str(tmp / "out"), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run(command: List[str], env: Dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run ``command``; never hang the test suite."""
    return subprocess.run(command, env=env, cwd=str(cwd), capture_output=True, text=True, timeout=timeout)


def torchrun(script: Path, nproc: int, port: int, nnodes: int = 1, node_rank: int = 0) -> List[str]:
    """The command line of ``python -m torch.distributed.run`` for ``script``."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
            f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}", str(script)]


def results(tmp: Path, world: int) -> List[dict]:
    """Every rank's record, by global rank."""
    return [json.loads((tmp / "out" / f"rank{r}.json").read_text()) for r in range(world)]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return find_free_port()


def describe(proc: Optional[subprocess.CompletedProcess]) -> str:
    """Output of a finished process, for assertion messages."""
    if proc is None:
        return ""
    return f"rc={proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
