"""``strategy='dp'`` / seed-era ``distributed_backend='dp'``: DataParallel in one process.

No GPU is used. CUDA is faked only at the narrowest point (``torch.cuda.is_available``/
``device_count``) to check which strategy the flags choose. What DataParallel does with CUDA
(scatter, replicate, parallel_apply) cannot run on a CPU; the tests run hookloop's parts
instead: the replica module's dispatch to the step, the gather and its reduction (real per-slice
outputs with their graphs), and a whole run whose wrapper splits each batch itself in place of
CUDA's scatter.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, List

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import Trainer
from engine.errors import MisconfigurationException
from engine.step_result import TrainResult
from plugins import data_parallel
from plugins.data_parallel import DataParallelPlugin, LightningDataParallel, gather_step_outputs
from plugins.device import DeviceConfig, resolve_devices
from plugins.strategies import DataParallelStrategy, SingleDeviceStrategy
from tests.models import ModernModel, SeedModel

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
CPU = torch.device("cpu")


@pytest.fixture
def gpus4(monkeypatch):
    """A machine with 4 CUDA devices, as far as device selection can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ---- which strategy the flags choose ----------------------------------------------------------------------
@pytest.mark.parametrize("flags", [dict(distributed_backend="dp"), dict(strategy="dp"),
                                   dict(distributed_backend="dp", num_processes=2)])
def test_dp_without_gpus_trains_in_one_process_and_warns_once(no_cuda, flags) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, **flags, **QUIET)
        trainer.fit(SeedModel())
    dp = [w for w in caught if "'dp'" in str(w.message)]
    assert len(dp) == 1 and "trains in one process on the cpu" in str(dp[0].message)
    assert isinstance(trainer.strategy, SingleDeviceStrategy) and not trainer.use_dp
    assert "data_parallel" not in trainer.registry.names() and "distributed" not in trainer.registry.names()
    assert trainer.state.global_step == 2


@pytest.mark.parametrize("flags, ids", [
    (dict(gpus=2, distributed_backend="dp"), [0, 1]),
    (dict(gpus=[1, 3], distributed_backend="dp"), [1, 3]),
    (dict(accelerator="gpu", devices=4, strategy="dp"), [0, 1, 2, 3]),
    (dict(gpus=1, distributed_backend="dp"), [0]),
])
def test_dp_with_gpus_is_one_process_over_those_gpus(gpus4, flags, ids) -> None:
    trainer = Trainer(**flags, **QUIET)
    config = resolve_devices(trainer)
    assert (config.accelerator, config.device_ids, config.strategy) == ("cuda", ids, "dp")
    assert (config.processes_per_node, config.world_size, config.distributed) == (1, 1, False)
    names = trainer.registry.names()
    assert "data_parallel" in names and "distributed" not in names
    strategy = trainer.strategy
    assert isinstance(strategy, DataParallelStrategy) and strategy.strategy_name == "dp"
    assert strategy.parallel_devices == [torch.device("cuda", i) for i in ids]
    assert strategy.root_device == torch.device("cuda", ids[0])
    assert (strategy.world_size, strategy.num_processes, strategy.global_rank) == (1, 1, 0)
    assert strategy.distributed_sampler_kwargs == {"num_replicas": 1, "rank": 0}
    assert trainer.use_dp and trainer.data_parallel


def test_dp_across_nodes_and_ddp2_are_refused(gpus4) -> None:
    for flags in (dict(gpus=2), dict(accelerator="cpu")):
        with pytest.raises(MisconfigurationException, match="num_nodes=2 with strategy='dp'"):
            Trainer(distributed_backend="dp", num_nodes=2, **flags, **QUIET)
    with pytest.raises(MisconfigurationException, match="strategy='ddp2' is not supported"):
        Trainer(gpus=2, distributed_backend="ddp2", **QUIET)


# ---- the wrapper: dispatch to the step ------------------------------------------------------------------------
class Recorder(nn.Module):
    """Records which step ran on what."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.calls: List[Any] = []

    def training_step(self, batch, batch_idx):
        self.calls.append(("training_step", batch.shape[0], batch_idx))
        return self.layer(batch).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.calls.append(("validation_step", batch.shape[0], batch_idx))
        return {"val_loss": self.layer(batch).mean(), "n": batch.shape[0], "preds": self.layer(batch)}


def test_forward_runs_training_step_and_run_names_another_step(no_cuda) -> None:
    module = Recorder()
    wrapper = LightningDataParallel(module)  # no CUDA: DataParallel calls its module directly
    assert isinstance(wrapper, nn.DataParallel) and wrapper.lightning_module is module
    batch = torch.randn(4, 2)
    loss = wrapper(batch, 3)
    assert loss.shape == () and module.calls == [("training_step", 4, 3)]
    out = wrapper.run("validation_step", batch, 5)
    assert module.calls[-1] == ("validation_step", 4, 5)
    assert isinstance(out["n"], torch.Tensor) and out["n"].item() == 4  # a Python number becomes a tensor
    assert wrapper.module.step_name == "training_step"  # restored for the next training batch


# ---- the gather: what replicas' outputs become ----------------------------------------------------------------
def _replica_outputs(wrapper: LightningDataParallel, batch: torch.Tensor, step: str = "training_step",
                     n: int = 2) -> List[Any]:
    """What n replicas would return: the replica module run on each slice of the batch (DataParallel's scatter).

    ``step`` stays the wrapper's step, as during DataParallel's forward, when it gathers.
    """
    wrapper.module.step_name = step
    return [wrapper.module(part, 0) for part in batch.chunk(n)]


def test_per_replica_losses_are_averaged_with_one_warning_and_the_gradient_is_the_full_batchs() -> None:
    torch.manual_seed(0)
    module, batch = Recorder(), torch.randn(8, 2)
    wrapper = LightningDataParallel(module)
    outputs = _replica_outputs(wrapper, batch)
    with pytest.warns(UserWarning, match=r"returned a scalar in each of the 2 replicas; they are averaged"):
        loss = wrapper.gather(outputs, CPU)
    assert loss.shape == () and torch.allclose(loss, torch.stack(outputs).mean())
    loss.backward()
    dp_grad = module.layer.weight.grad.clone()
    module.zero_grad()
    module.training_step(batch, 0).backward()  # equal slices: the mean of the means is the full batch's mean
    assert torch.allclose(dp_grad, module.layer.weight.grad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapper.gather(_replica_outputs(wrapper, batch), CPU)  # warned once


def test_training_step_end_gets_the_gathered_losses_to_reduce_itself() -> None:
    class WithStepEnd(Recorder):
        def training_step_end(self, outputs):
            return outputs.sum()

    module, batch = WithStepEnd(), torch.randn(6, 2)
    wrapper = LightningDataParallel(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gathered = wrapper.gather(_replica_outputs(wrapper, batch, n=3), CPU)
    assert gathered.shape == (3,)  # one loss per replica, as torch's DataParallel hands it over


def test_dicts_results_and_batch_tensors_are_gathered_key_by_key() -> None:
    wrapper, batch = LightningDataParallel(Recorder()), torch.randn(6, 2)
    with pytest.warns(UserWarning, match="`validation_step` returned a scalar .* Define `validation_step_end"):
        out = wrapper.gather(_replica_outputs(wrapper, batch, "validation_step", n=2), CPU)
    assert out["preds"].shape == (6, 1)  # a batch dimension: concatenated
    assert out["val_loss"].shape == ()  # one scalar per replica, no validation_step_end: averaged
    assert out["n"].shape == (2,) and out["n"].tolist() == [3, 3]  # integers are not averaged

    loss = torch.tensor(1.0, requires_grad=True)
    results = []
    for value in (1.0, 3.0):
        result = TrainResult(minimize=loss * value)
        result.log("acc", torch.tensor(value))
        results.append(OrderedDict(outer=result, pair=(torch.tensor(value), "tag")))
    gathered, averaged = gather_step_outputs(results, CPU)
    assert averaged and isinstance(gathered, OrderedDict)
    result = gathered["outer"]
    assert isinstance(result, TrainResult) and result.minimize.item() == 2.0 and result["acc"].item() == 2.0
    assert "acc" in result.meta  # the logging options travel with the result
    assert gathered["pair"][0].item() == 2.0 and gathered["pair"][1] == "tag"
    vectors, averaged = gather_step_outputs([torch.tensor(1.0), torch.tensor(3.0)], CPU, reduce=False)
    assert not averaged and vectors.tolist() == [1.0, 3.0]


# ---- a whole run through the plugin, each batch split in two by the wrapper -----------------------------
class SplittingDataParallel(LightningDataParallel):
    """In place of CUDA's scatter/replicate/parallel_apply: the replica module on each half of the batch, then
    hookloop's gather (what DataParallel's forward does with two devices)."""

    seen: List[Any] = []

    def forward(self, *inputs: Any) -> Any:
        batch, *rest = inputs
        x, y = batch
        outputs = [self.module([xs, ys], *rest) for xs, ys in zip(x.chunk(2), y.chunk(2))]
        SplittingDataParallel.seen.append((self.module.step_name, [len(xs) for xs in x.chunk(2)]))
        return self.gather(outputs, CPU)


class SeedDPModel(SeedModel):
    """0.9's DP idiom: *_step_end reduces what the replicas returned."""

    def __init__(self) -> None:
        super().__init__(n_train=64, n_val=32, batch_size=16)
        self.step_end_inputs: List[Any] = []

    def validation_step_end(self, outputs):
        self.step_end_inputs.append(outputs["val_loss"].shape)
        return {"val_loss": outputs["val_loss"].mean()}


def test_a_run_goes_through_the_wrapper_for_training_and_validation(no_cuda, monkeypatch) -> None:
    monkeypatch.setattr(data_parallel, "LightningDataParallel", SplittingDataParallel)
    SplittingDataParallel.seen = []
    plugin = DataParallelPlugin(DeviceConfig("cpu", [0, 1], 1, "dp"))
    model = SeedDPModel()
    trainer = Trainer(max_epochs=1, plugins=[plugin], num_sanity_val_steps=0, **QUIET)
    with pytest.warns(UserWarning, match="`training_step` returned a scalar in each of the 2 replicas"):
        trainer.fit(model)
    steps = [name for name, _ in SplittingDataParallel.seen]
    assert steps == ["training_step"] * 4 + ["validation_step"] * 2
    assert all(sizes == [8, 8] for _, sizes in SplittingDataParallel.seen)
    assert model.step_end_inputs == [torch.Size([2])] * 2  # the gathered per-replica losses
    assert "val_loss" in trainer.callback_metrics and "train_loss" in trainer.logged_metrics
    assert trainer.strategy_model is None  # dropped at teardown


def test_validate_goes_through_the_wrapper_and_predict_does_not(no_cuda, monkeypatch) -> None:
    monkeypatch.setattr(data_parallel, "LightningDataParallel", SplittingDataParallel)
    SplittingDataParallel.seen = []
    plugin = DataParallelPlugin(DeviceConfig("cpu", [0, 1], 1, "dp"))
    model = ModernModel(batch_size=16)
    trainer = Trainer(plugins=[plugin], **QUIET)
    trainer.validate(model)  # it logs with self.log and returns nothing: nothing to average
    assert [name for name, _ in SplittingDataParallel.seen] == ["validation_step"] * 4
    SplittingDataParallel.seen = []
    predictions = trainer.predict(model, dataloaders=DataLoader(torch.randn(32, 8), batch_size=8))
    assert SplittingDataParallel.seen == [] and len(predictions) == 4


# ---- a replica's device and dtype -------------------------------------------------------------------------------
def _replica_on(module: nn.Module, device: str) -> nn.Module:
    """What torch's ``replicate`` makes of ``module`` for ``device`` (it broadcasts with CUDA; here ``.to``):
    per submodule a ``_replicate_for_data_parallel`` copy whose parameters are plain attributes listed in
    ``_former_parameters``."""
    copies = {}
    for sub in module.modules():
        replica = sub._replicate_for_data_parallel()
        replica._former_parameters = OrderedDict()
        copies[sub] = replica
    for sub, replica in copies.items():
        for name, child in sub._modules.items():
            replica._modules[name] = copies[child]
        for name, param in sub._parameters.items():
            copy = param.detach().to(device, torch.float64)
            setattr(replica, name, copy)
            replica._former_parameters[name] = copy
    return copies[module]


def test_a_replica_reports_its_own_device_and_dtype() -> None:
    module = ModernModel()
    replica = _replica_on(module, "meta")
    assert list(replica.parameters()) == []  # why the module's own lookup needs the replica's parameters
    assert replica.device == torch.device("meta") and replica.dtype == torch.float64
    assert module.device == CPU and module.dtype == torch.float32


def test_manual_optimization_is_refused_under_dp(no_cuda) -> None:
    class Manual(ModernModel):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    trainer = Trainer(max_epochs=1, plugins=[DataParallelPlugin(DeviceConfig("cpu", [0, 1], 1, "dp"))], **QUIET)
    with pytest.raises(MisconfigurationException, match="strategy='dp' trains with automatic optimization only"):
        trainer.fit(Manual())
