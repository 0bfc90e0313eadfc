"""Real multi-process DDP runs on CPU (gloo on 127.0.0.1): plain script, spawn, torchrun, two nodes, SLURM.

Each test writes the script of :mod:`tests.ddp_support` to its tmp directory and runs it in
subprocesses; every rank reports what it saw. Tiny model, 8 batches per epoch, no bars.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ddp_support import describe, free_port, results, run, script_env, torchrun, write_script



def _check_trained_together(ranks: list, samples: int = 64) -> None:
    """Identical weights; each rank saw a disjoint half of every epoch; reshuffled between epochs."""
    assert ranks[0]["weight"] == ranks[1]["weight"] and ranks[0]["bias"] == ranks[1]["bias"]
    for epoch in ranks[0]["seen"]:
        a, b = ranks[0]["seen"][epoch], ranks[1]["seen"][epoch]
        assert len(a) == len(b) == samples // 2
        assert sorted(a + b) == list(range(samples))
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"], "set_epoch must reshuffle every epoch"
    for r, rec in enumerate(ranks):
        assert (rec["global_rank"], rec["module_global_rank"], rec["world_size"]) == (r, r, 2)
        assert rec["is_global_zero"] is (r == 0)
        assert rec["metrics"]["rank_value"] == pytest.approx(0.5)  # self.log(..., sync_dist=True)
        assert rec["metrics"]["val_rank"] == rec["metrics"]["val_rank_epoch"] == pytest.approx(0.5)
        assert rec["broadcast"] == "from rank 0"


def test_plain_python_script_starts_two_processes(tmp_path: Path) -> None:
    """`python script.py` with Trainer(accelerator='cpu', devices=2, strategy='ddp'); only rank 0 writes."""
    script = write_script(tmp_path)
    proc = run([sys.executable, str(script)], script_env(tmp_path, HL_MODE="ddp", HL_WRITE="1", HL_EPOCHS="5"),
               tmp_path)
    assert proc.returncode == 0, describe(proc)
    ranks = results(tmp_path, 2)
    _check_trained_together(ranks)
    assert [r["local_rank"] for r in ranks] == [0, 1]
    assert ranks[0]["started_children"] == 1 and ranks[1]["ppid"] == ranks[0]["pid"]
    # Validation metrics are equal on both ranks, so EarlyStopping stops both after epoch 2 of 5.
    assert ranks[0]["metrics"]["val_loss"] == ranks[1]["metrics"]["val_loss"]
    assert ranks[0]["epochs_run"] == ranks[1]["epochs_run"] == 2
    root0 = tmp_path / "out" / "root0"
    assert list(root0.rglob("metrics.csv")) and list(root0.rglob("*.ckpt"))
    assert not (tmp_path / "out" / "root1").exists(), "rank 1 must not write logs or checkpoints"


def test_accumulating_batches_skip_the_all_reduce(tmp_path: Path) -> None:
    """accumulate_grad_batches=2 under DDP: gradients sync only on stepping batches (DDP's no_sync)."""
    script = write_script(tmp_path)
    proc = run([sys.executable, str(script)],
               script_env(tmp_path, HL_MODE="ddp", HL_ACCUMULATE="2", HL_COUNT_ALLREDUCE="1"), tmp_path)
    assert proc.returncode == 0, describe(proc)
    ranks = results(tmp_path, 2)
    _check_trained_together(ranks)  # identical weights: the stepping batch all-reduced the accumulated sum
    # 2 epochs x 4 batches per rank, stepping every 2nd: 4 all-reduces instead of 8.
    assert [r["allreduces"] for r in ranks] == [4, 4]


def test_seed_ddp_cpu_spawns_and_returns_weights(tmp_path: Path) -> None:
    """Seed-era distributed_backend='ddp_cpu', num_processes=2: spawned ranks; the parent gets the weights."""
    script = write_script(tmp_path)
    proc = run([sys.executable, str(script)], script_env(tmp_path, HL_MODE="ddp_cpu"), tmp_path)
    assert proc.returncode == 0, describe(proc)
    ranks = results(tmp_path, 2)
    _check_trained_together(ranks)
    parent = (tmp_path / "out" / "parent.json").read_text()
    assert '"weight": ' + str(ranks[0]["weight"]).replace("'", '"') in parent.replace("'", '"')


def test_torchrun_processes_are_used(tmp_path: Path) -> None:
    """Under torchrun --nproc_per_node=2 the script starts nothing itself."""
    script = write_script(tmp_path)
    proc = run(torchrun(script, 2, free_port()), script_env(tmp_path, HL_MODE="external"), tmp_path)
    assert proc.returncode == 0, describe(proc)
    ranks = results(tmp_path, 2)
    _check_trained_together(ranks)
    assert all(r["torchelastic"] and r["started_children"] == 0 for r in ranks)
    assert ranks[0]["ppid"] == ranks[1]["ppid"]  # both are children of torchrun's agent


@pytest.mark.parametrize("per_node", [True, False])
def test_two_simulated_nodes_and_prepare_data(tmp_path: Path, per_node: bool) -> None:
    """Two `torchrun --nnodes=2 --node_rank=i` commands train together; prepare_data per node or per job."""
    script = write_script(tmp_path)
    port = free_port()
    procs = []
    for node in (0, 1):
        env = script_env(tmp_path, HL_MODE="external", HL_NODES="2", HL_PER_NODE="1" if per_node else "0",
                         HL_DATA_DIR=str(tmp_path / f"node{node}"))
        procs.append(subprocess.Popen(torchrun(script, 1, port, nnodes=2, node_rank=node), env=env,
                                      cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=90) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ranks = results(tmp_path, 2)
    _check_trained_together(ranks)
    assert [r["node_rank"] for r in ranks] == [0, 1] and [r["local_rank"] for r in ranks] == [0, 0]
    node0 = sorted(p.name for p in (tmp_path / "node0").iterdir())
    node1 = sorted(p.name for p in (tmp_path / "node1").iterdir()) if (tmp_path / "node1").exists() else []
    assert node0 == ["prepared_by_rank0"]
    assert node1 == (["prepared_by_rank1"] if per_node else [])


def test_slurm_variables_give_the_ranks(tmp_path: Path) -> None:
    """Two processes with SLURM's variables (as srun sets them) on loopback; the first node-list host is main."""
    script = write_script(tmp_path)
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = script_env(tmp_path, HL_MODE="external", SLURM_NTASKS="2", SLURM_PROCID=str(rank),
                         SLURM_LOCALID=str(rank), SLURM_NODEID="0", SLURM_JOB_NODELIST="127.0.0.1",
                         SLURM_JOB_ID="4242", SLURM_JOB_NAME="train", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, cwd=str(tmp_path),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=90) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ranks = results(tmp_path, 2)
    _check_trained_together(ranks)
    assert all(r["environment"] == "SLURMEnvironment" and r["started_children"] == 0 for r in ranks)


@pytest.mark.parametrize("failure, failed_rank", [("raise:1:2", 1), ("kill:1:2", 1), ("raise:0:2", 0)])
def test_failed_rank_stops_every_rank(tmp_path: Path, failure: str, failed_rank: int) -> None:
    """One rank raises or is killed mid-epoch: the job exits non-zero fast, naming the failed rank."""
    script = write_script(tmp_path)
    start = time.monotonic()
    proc = run([sys.executable, str(script)], script_env(tmp_path, HL_MODE="ddp", HL_FAIL=failure), tmp_path,
               timeout=75)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0, describe(proc)
    assert elapsed < 60
    survivor = 1 - failed_rank
    assert f"rank {survivor}:" in proc.stderr and f"rank {failed_rank}" in proc.stderr, describe(proc)
    if failure.startswith("raise"):
        assert "boom in training_step" in proc.stderr
