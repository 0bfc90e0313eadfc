"""Lightning's trainer object model in one process: ``trainer.strategy``, ``accelerator``, ``precision_plugin``,
their work asked of the behaviour hooks, and the module's ``self.all_gather``."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.distributed as dist

from engine import Callback, MisconfigurationException, Trainer, hookimpl
from engine.strategy import Strategy
from plugins import ModelCheckpoint
from plugins.accelerators import CPUAccelerator, CUDAAccelerator
from plugins.precision import DoublePrecision, MixedPrecision, Precision
from plugins.strategies import DDPStrategy, ParallelStrategy, SingleDeviceStrategy
from tests.core_support import quiet_trainer
from tests.models import ModernModel


def test_strategy_and_accelerator_are_objects_and_the_flags_stay_readable():
    trainer = Trainer(accelerator="cpu", strategy="auto", logger=False)
    assert isinstance(trainer.strategy, SingleDeviceStrategy) and isinstance(trainer.strategy, Strategy)
    assert not isinstance(trainer.strategy, DDPStrategy)
    assert isinstance(trainer.accelerator, CPUAccelerator)
    assert (trainer.strategy_flag, trainer.accelerator_flag) == ("auto", "cpu")
    # Known from the flags before a run sets trainer.root_device.
    assert trainer.root_device is None and trainer.strategy.root_device == torch.device("cpu")
    assert trainer.strategy.strategy_name == "single_device"
    assert (trainer.strategy.global_rank, trainer.strategy.local_rank, trainer.strategy.world_size) == (0, 0, 1)
    assert trainer.strategy.is_global_zero
    assert trainer.strategy.accelerator is trainer.accelerator
    assert trainer.strategy is trainer.strategy  # made once


def test_seed_distributed_backend_stays_the_strategy_flag():
    trainer = Trainer(distributed_backend="ddp_cpu", num_processes=2, logger=False)
    assert trainer.strategy_flag == "ddp_cpu"
    strategy = trainer.strategy
    assert isinstance(strategy, DDPStrategy) and isinstance(strategy, ParallelStrategy)
    assert strategy.start_method == "spawn" and strategy.process_group_backend == "gloo"
    assert strategy.num_processes == 2 and strategy.parallel_devices == [torch.device("cpu")] * 2
    assert strategy.distributed_sampler_kwargs == {"num_replicas": 1, "rank": 0}  # ranks come when the run starts


def test_ddp_flags_make_a_ddp_strategy_before_any_process_starts():
    strategy = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False).strategy
    assert type(strategy) is DDPStrategy and strategy.start_method == "popen"
    assert strategy.strategy_name == "ddp"


def test_cuda_flags_make_a_cuda_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    trainer = Trainer(accelerator="gpu", devices=[1], logger=False)
    assert isinstance(trainer.accelerator, CUDAAccelerator)
    assert trainer.strategy.root_device == torch.device("cuda", 1)
    with pytest.raises(MisconfigurationException, match="must be a 'cuda' one"):
        trainer.accelerator.setup_device(torch.device("cpu"))


def test_the_precision_plugin_is_an_object_at_every_precision():
    assert type(Trainer(logger=False).precision_plugin) is Precision
    assert Trainer(logger=False).precision_plugin.precision == "32-true"
    assert isinstance(Trainer(precision=64, logger=False).precision_plugin, DoublePrecision)
    bf16 = Trainer(precision="bf16-mixed", logger=False).precision_plugin
    assert isinstance(bf16, MixedPrecision) and bf16.precision == "bf16-mixed"
    mine = MixedPrecision("16-mixed", device="cpu")
    assert Trainer(plugins=[mine], logger=False).precision_plugin is mine  # a code plugin's comes first
    with pytest.raises(MisconfigurationException, match="DoublePrecision"):
        MixedPrecision(64)


def test_cpu_device_stats_are_lightnings_keys():
    accelerator = Trainer(accelerator="cpu", logger=False).accelerator
    sum(i * i for i in range(200_000))  # some CPU time to measure
    stats = accelerator.get_device_stats(torch.device("cpu"))
    assert set(stats) == {"cpu_vm_percent", "cpu_percent", "cpu_swap_percent"}
    assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in stats.values())
    assert stats["cpu_vm_percent"] > 0.0
    accelerator.setup_device(torch.device("cpu"))
    with pytest.raises(MisconfigurationException, match="CPUAccelerator.setup_device"):
        accelerator.setup_device(torch.device("meta"))


def test_single_process_collectives():
    strategy = quiet_trainer().strategy
    x = torch.tensor([1.0, 2.0])
    assert strategy.reduce(x) is x and strategy.reduce(x, reduce_op="sum") is x
    assert strategy.reduce(x, reduce_op=dist.ReduceOp.MAX) is x
    assert strategy.reduce(3.0) == 3.0  # only tensors are reduced
    assert strategy.all_gather(x) is x  # one process: the tensor itself, as in Lightning
    assert strategy.broadcast({"a": 1}) == {"a": 1} and strategy.broadcast(None) is None
    strategy.barrier("here")
    assert strategy.reduce_boolean_decision(True) is True
    with pytest.raises(MisconfigurationException, match="reduce_op='product'"):
        strategy.reduce(x, reduce_op="product")
    with pytest.raises(MisconfigurationException, match="group"):
        strategy.all_gather(x, group=object())


class CountingCollectives:
    """A third-party plugin replacing the collectives: the strategy's methods reach it."""

    def __init__(self):
        self.calls = []

    @hookimpl(tryfirst=True)
    def barrier(self, trainer, name):
        self.calls.append(("barrier", name))
        return True

    @hookimpl(tryfirst=True)
    def reduce_metric(self, trainer, value, reduce_fx):
        self.calls.append(("reduce", reduce_fx))
        return value * 2

    @hookimpl(tryfirst=True)
    def all_gather(self, trainer, tensor, sync_grads):
        self.calls.append(("all_gather", sync_grads))
        return torch.stack([tensor, tensor])

    @hookimpl(tryfirst=True)
    def broadcast(self, trainer, obj, src):
        self.calls.append(("broadcast", src))
        return "from elsewhere"


def test_the_strategy_asks_the_behaviour_hooks():
    plugin = CountingCollectives()
    strategy = quiet_trainer(plugins=[plugin]).strategy
    strategy.barrier("sync")
    assert strategy.reduce(torch.tensor(1.0), reduce_op="avg").item() == 2.0
    assert strategy.reduce(torch.tensor(1.0), reduce_op=dist.ReduceOp.SUM).item() == 2.0
    assert strategy.all_gather(torch.tensor(3.0), sync_grads=True).tolist() == [3.0, 3.0]
    assert strategy.broadcast("here", src=1) == "from elsewhere"
    assert plugin.calls == [("barrier", "sync"), ("reduce", "mean"), ("reduce", "sum"), ("all_gather", True),
                            ("broadcast", 1)]


class GatheringModel(ModernModel):
    def on_train_start(self):
        self.gathered = self.all_gather({"loss": torch.tensor([1.0, 2.0]), "count": 3, "flags": [True]})
        self.strategy_model_is_module = self.trainer.strategy.model is self
        self.strategy_module_is_module = self.trainer.strategy.lightning_module is self


def test_module_all_gather_in_one_process_gives_tensors_back():
    model = GatheringModel(n_train=64)
    quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model)
    assert model.gathered["loss"].tolist() == [1.0, 2.0]
    assert isinstance(model.gathered["count"], torch.Tensor) and model.gathered["count"].item() == 3
    assert model.gathered["flags"][0].item() is True
    assert model.strategy_model_is_module and model.strategy_module_is_module
    assert ModernModel().all_gather(2.5).item() == 2.5  # without a trainer too


class RemovedFiles:
    """A plugin owning where checkpoints go: ModelCheckpoint removes its old files through it."""

    def __init__(self):
        self.removed = []

    @hookimpl(tryfirst=True)
    def remove_checkpoint(self, trainer, filepath):
        self.removed.append(os.path.basename(filepath))
        return True


def test_model_checkpoint_removes_files_through_the_strategy(tmp_path):
    keeper = RemovedFiles()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor=None, save_top_k=1)
    trainer = quiet_trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, enable_checkpointing=True,
                            callbacks=[checkpoint], plugins=[keeper])
    trainer.fit(ModernModel(n_train=64))
    assert keeper.removed == ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt",
                                                          "epoch=2-step=6.ckpt"]  # the plugin kept them


def test_remove_checkpoint_deletes_the_file(tmp_path):
    path = tmp_path / "old.ckpt"
    path.write_bytes(b"x")
    strategy = quiet_trainer().strategy
    strategy.remove_checkpoint(str(path))
    assert not path.exists()
    strategy.remove_checkpoint(str(path))  # already gone: no error


def test_the_objects_travel_with_a_pickled_trainer():
    """ddp_spawn pickles the trainer: its strategy comes along, pointing at the copy."""
    from plugins.distributed import _pickle

    trainer = Trainer(distributed_backend="ddp_cpu", num_processes=2, logger=False)
    strategy = trainer.strategy
    copy = pickle.loads(_pickle(trainer))
    assert type(copy.strategy) is DDPStrategy and copy.strategy is not strategy
    assert copy.strategy.trainer is copy


class ObjectsSeenInSetup(Callback):
    def setup(self, trainer, pl_module, stage):
        self.device_then = trainer.strategy.root_device
        self.model_then = trainer.strategy.model


def test_the_strategy_reports_the_run():
    seen = ObjectsSeenInSetup()
    model = ModernModel(n_train=64)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, callbacks=[seen])
    trainer.fit(model)
    assert seen.device_then == torch.device("cpu") and seen.model_then is model
    assert trainer.strategy.optimizers == trainer.optimizers and trainer.strategy.precision_plugin is trainer.precision_plugin
    assert "SingleDeviceStrategy(root_device=cpu" in repr(trainer.strategy)
