"""Device flags of both eras, placement of the model and batches, and the sampler helpers (one process).

CUDA is faked only at the narrowest point (``torch.cuda.is_available``/``device_count``);
nothing here touches a real GPU.
"""
from __future__ import annotations

import threading
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler, SequentialSampler

from engine import LightningModule, Trainer
from engine.errors import MisconfigurationException
from plugins.device import parse_gpu_ids, resolve_devices, select_root_device
from plugins.distributed import DistributedPlugin, find_unpicklable
from plugins.distributed_sampler import ShardedSampler, distributed_loader
from plugins.environments import (LocalEnvironment, SLURMEnvironment, TorchElasticEnvironment, detect_environment,
                                  expand_nodelist, first_host)
from tests.models import ModernModel, make_data, make_loader

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


@pytest.fixture
def gpus4(monkeypatch):
    """A machine with 4 CUDA devices, as far as device selection can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID",
                "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)


# ---- device selection ---------------------------------------------------------------------------------
@pytest.mark.parametrize("gpus, ids", [
    (None, None), (0, None), ("0", None), ("", None), ([], None),
    (2, [0, 1]), ("2", [0, 1]), ([1, 2], [1, 2]), ("1, 2", [1, 2]), ("0,", [0]), (-1, [0, 1, 2, 3]),
    ("-1", [0, 1, 2, 3]), ([3], [3]),
])
def test_seed_gpus_forms(gpus4, gpus, ids) -> None:
    assert parse_gpu_ids(gpus) == ids


@pytest.mark.parametrize("gpus", [5, [1, 4], "3, 7"])
def test_asking_for_missing_gpus_names_request_and_machine(gpus4, gpus) -> None:
    with pytest.raises(MisconfigurationException) as info:
        Trainer(gpus=gpus, **QUIET)
    message = str(info.value)
    assert f"gpus={gpus!r}" in message and "this machine has 4" in message and "[0, 1, 2, 3]" in message


def test_gpus_on_a_machine_without_cuda_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MisconfigurationException, match=r"asks for CUDA GPU\(s\) \[0, 1\].*has 0"):
        Trainer(gpus=2, **QUIET)
    with pytest.raises(MisconfigurationException, match="every CUDA GPU"):
        Trainer(gpus=-1, **QUIET)
    with pytest.raises(MisconfigurationException, match="devices=1"):
        Trainer(accelerator="gpu", devices=1, **QUIET)


@pytest.mark.parametrize("flags, expected", [
    (dict(gpus=[1, 2]), ("cuda", [1, 2], 1, "ddp")),
    (dict(gpus=1), ("cuda", [0], 1, "single")),
    (dict(gpus="0,"), ("cuda", [0], 1, "single")),
    (dict(gpus=2, distributed_backend="ddp_spawn"), ("cuda", [0, 1], 1, "ddp_spawn")),
    (dict(gpus=2, num_nodes=3, distributed_backend="ddp"), ("cuda", [0, 1], 3, "ddp")),
    (dict(accelerator="gpu", devices=2), ("cuda", [0, 1], 1, "ddp")),
    (dict(accelerator="cuda", devices=[3]), ("cuda", [3], 1, "single")),
    (dict(accelerator="cuda", devices="1, 3", strategy="ddp_spawn"), ("cuda", [1, 3], 1, "ddp_spawn")),
    (dict(accelerator="auto"), ("cuda", [0, 1, 2, 3], 1, "ddp")),
    (dict(accelerator="auto", devices=1), ("cuda", [0], 1, "single")),
    (dict(accelerator="cpu"), ("cpu", [0], 1, "single")),
    (dict(accelerator="cpu", devices=2, strategy="ddp"), ("cpu", [0, 1], 1, "ddp")),
    (dict(accelerator="cpu", devices=3, strategy="ddp_spawn"), ("cpu", [0, 1, 2], 1, "ddp_spawn")),
    (dict(distributed_backend="ddp_cpu", num_processes=2), ("cpu", [0, 1], 1, "ddp_spawn")),
    (dict(accelerator="cpu", num_processes=2, num_nodes=2), ("cpu", [0, 1], 2, "ddp")),
])
def test_flags_resolve(gpus4, flags, expected) -> None:
    config = resolve_devices(Trainer(**flags, **QUIET))
    assert (config.accelerator, config.device_ids, config.num_nodes, config.strategy) == expected
    assert config.world_size == len(expected[1]) * expected[2]


def test_auto_without_cuda_is_cpu_and_mps_when_present(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_devices(Trainer(**QUIET)).accelerator in ("cpu", "mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    config = resolve_devices(Trainer(accelerator="mps", **QUIET))
    assert config.accelerator == "mps" and config.device_for(0) == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(MisconfigurationException, match="MPS"):
        Trainer(accelerator="mps", **QUIET)


def test_bad_flags_are_clear_errors(gpus4) -> None:
    with pytest.raises(MisconfigurationException, match="strategy/distributed_backend='horovodd'"):
        Trainer(strategy="horovodd", **QUIET)
    with pytest.raises(MisconfigurationException, match="accelerator='tpu'"):
        Trainer(accelerator="tpu", **QUIET)
    with pytest.raises(MisconfigurationException, match="gpus=.* accelerator='cpu'"):
        Trainer(gpus=1, accelerator="cpu", **QUIET)
    with pytest.raises(MisconfigurationException, match="num_processes=0"):
        Trainer(accelerator="cpu", num_processes=0, **QUIET)


def test_root_device_follows_local_rank(gpus4) -> None:
    trainer = Trainer(gpus=[1, 2], **QUIET)
    trainer.local_rank = 1
    assert select_root_device(trainer) == torch.device("cuda", 2)
    trainer.local_rank = 0
    assert select_root_device(trainer) == torch.device("cuda", 1)


def test_distributed_plugin_registered_only_when_needed(monkeypatch) -> None:
    assert "distributed" not in Trainer(**QUIET).registry.names()
    assert isinstance(Trainer(accelerator="cpu", devices=2, strategy="ddp", **QUIET).plugin("distributed"),
                      DistributedPlugin)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert "distributed" in Trainer(**QUIET).registry.names()  # started by torchrun: join its job


# ---- environments --------------------------------------------------------------------------------------
def test_environments_read_their_variables() -> None:
    torchrun = detect_environment(env={"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "GROUP_RANK": "1",
                                       "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"})
    assert isinstance(torchrun, TorchElasticEnvironment)
    assert (torchrun.global_rank(), torchrun.local_rank(), torchrun.node_rank(), torchrun.world_size()) == (3, 1, 1, 4)
    slurm = detect_environment(env={"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
                                    "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[07-09,12],login1",
                                    "SLURM_JOB_ID": "123456", "SLURM_JOB_NAME": "train"})
    assert isinstance(slurm, SLURMEnvironment)
    assert (slurm.global_rank(), slurm.local_rank(), slurm.node_rank(), slurm.world_size()) == (5, 1, 2, 8)
    assert slurm.main_address == "gpu07" and slurm.main_port == 13456
    local = detect_environment(processes_per_node=2, num_nodes=2, env={"NODE_RANK": "1"})
    assert isinstance(local, LocalEnvironment) and local.global_rank() == 2 and local.world_size() == 4
    assert expand_nodelist("a[1-2],b") == ["a1", "a2", "b"] and first_host("node001") == "node001"


# ---- placement -------------------------------------------------------------------------------------------
Pair = namedtuple("Pair", "x y")


@dataclass
class Example:
    x: torch.Tensor
    label: str


class Movable:
    def __init__(self) -> None:
        self.moved_to = None

    def to(self, device):
        self.moved_to = device
        return self


def test_batches_move_through_the_behaviour_hook(gpus4) -> None:
    # With a GPU on the machine, even CPU training checks every batch (a dataset could yield CUDA tensors).
    trainer = Trainer(accelerator="cpu", **QUIET)
    model = ModernModel()
    meta = torch.device("meta")  # a real non-CPU device every machine has
    t = torch.ones(2)
    batch = [t, (t, {"a": t, "b": [t]}), Pair(t, t), Example(t, "keep"), Movable(), "text"]
    moved = trainer.hooks.transfer_batch_to_device(trainer, model, batch, meta, 0)
    assert moved[0].device == meta and moved[1][0].device == meta
    assert moved[1][1]["a"].device == meta and moved[1][1]["b"][0].device == meta
    assert isinstance(moved[2], Pair) and moved[2].y.device == meta
    assert isinstance(moved[3], Example) and moved[3].x.device == meta and moved[3].label == "keep"
    assert moved[4].moved_to == meta and moved[5] == "text"


class TypeAsModel(LightningModule):
    """Uses the seed's ``type_as`` idiom: no ``.to``/``.cuda`` in user code."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.seen = []

    def forward(self, x):
        extra = torch.zeros(x.shape[0], 2).type_as(x)
        self.seen.append((extra.dtype, extra.device, x.device))
        return self.layer(x) + extra

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_model_on_root_device_and_type_as_idiom() -> None:
    model = TypeAsModel().double()
    loader = DataLoader([(x.double(), y) for x, y in make_data(32)], batch_size=8)
    trainer = Trainer(accelerator="cpu", max_epochs=1, **QUIET)
    trainer.fit(model, loader)
    assert trainer.root_device == torch.device("cpu") and model.device == torch.device("cpu")
    assert model.dtype == torch.float64
    assert model.seen and all(s == (torch.float64, torch.device("cpu"), torch.device("cpu")) for s in model.seen)


# ---- samplers --------------------------------------------------------------------------------------------
class EvenFirst(Sampler):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(list(range(0, self.n, 2)) + list(range(1, self.n, 2)))


def test_default_sampler_becomes_distributed_and_custom_sampler_is_wrapped(monkeypatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    shuffled = distributed_loader(make_loader(64, 8, shuffle=True), "train", 2, 1)
    assert isinstance(shuffled.sampler, DistributedSampler) and shuffled.sampler.shuffle
    assert shuffled.sampler.seed == 11 and shuffled.sampler.rank == 1 and len(shuffled) == 4
    ordered = distributed_loader(make_loader(64, 8), "val", 2, 0)
    assert not ordered.sampler.shuffle
    custom = DataLoader(make_data(10), batch_size=2, sampler=EvenFirst(10))
    wrapped = [distributed_loader(custom, "train", 2, r) for r in (0, 1)]
    assert all(isinstance(w.sampler, ShardedSampler) and w.sampler.sampler is custom.sampler for w in wrapped)
    assert list(wrapped[0].sampler) == [0, 4, 8, 3, 7] and list(wrapped[1].sampler) == [2, 6, 1, 5, 9]
    assert distributed_loader(ordered, "val", 2, 0) is None  # already distributed: left alone


def test_custom_batch_sampler_is_a_clear_error() -> None:
    class Pairs(BatchSampler):
        pass

    loader = DataLoader(make_data(8), batch_sampler=Pairs(SequentialSampler(range(8)), 2, False))
    with pytest.raises(MisconfigurationException, match="custom batch_sampler.*use_distributed_sampler=False"):
        distributed_loader(loader, "train", 2, 0)


# ---- ddp_spawn pickling ----------------------------------------------------------------------------------
class LockedModel(ModernModel):
    def __init__(self) -> None:
        super().__init__()
        self.layer.guard = threading.Lock()


def test_unpicklable_model_for_spawn_names_the_attribute() -> None:
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, **QUIET)
    with pytest.raises(MisconfigurationException) as info:
        trainer.fit(LockedModel())
    assert "`model.layer.guard` (lock)" in str(info.value) and "ddp_spawn" in str(info.value)
    assert find_unpicklable(ModernModel(), "model") is None


@pytest.mark.parametrize("flags", [dict(use_distributed_sampler=False), dict(replace_sampler_ddp=False), {}])
def test_distributed_sampler_opt_out(flags) -> None:
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", **flags, **QUIET)
    trainer.world_size, trainer.global_rank = 2, 1  # as setup_environment sets them in rank 1
    loader = make_loader(64, 8, shuffle=True)
    processed = trainer.hooks.process_dataloader(trainer, ModernModel(), loader, "train")
    if flags:
        assert processed is loader
    else:
        assert isinstance(processed.sampler, DistributedSampler) and processed.sampler.rank == 1


def test_cpu_training_without_a_gpu_skips_the_transfer_hook(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    trainer = Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, **QUIET)
    assert trainer.hooks.transfer_batch_to_device is None  # nothing to move: no call per batch
    trainer.fit(ModernModel())
    assert trainer.global_step == 2


class TransferHooksModel(ModernModel):
    """Lightning 2.x's three batch-transfer hooks, recording their order and changing the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.calls.append(("before", dataloader_idx))
        x, y = batch
        return x * 0, y

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        self.calls.append(("transfer", device.type))
        return [t.to(device) for t in batch]

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.calls.append(("after", dataloader_idx))
        assert not batch[0].any()  # sees what on_before_batch_transfer returned
        return batch


class SeedTransferModel(ModernModel):
    """The seed-era signature: ``transfer_batch_to_device(self, batch, device)``."""

    def __init__(self) -> None:
        super().__init__()
        self.moved = 0

    def transfer_batch_to_device(self, batch, device):
        self.moved += 1
        return batch


def test_module_batch_transfer_hooks_run_in_lightnings_order(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the device plugin moves nothing
    model = TransferHooksModel()
    trainer = Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, **QUIET)
    trainer.fit(model)
    step = [("before", 0), ("transfer", "cpu"), ("after", 0)]
    assert model.calls == step * 3  # two training batches, one validation batch
    seed = SeedTransferModel()
    Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, **QUIET).fit(seed)
    assert seed.moved == 2
