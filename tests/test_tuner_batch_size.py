"""Tuner.scale_batch_size: the largest batch size whose steps fit, found by trials that leave nothing behind."""
from __future__ import annotations

import pytest
import torch

from engine import Trainer
from engine.errors import MisconfigurationException
from plugins import Tuner
from plugins.tuner import is_out_of_memory
from tests.core_support import quiet_trainer
from tests.tuner_support import MemoryBound, SizedData, same_weights, temporary_checkpoints, weights


DOUBLING = [2, 4, 8, 16, 32, 64, 128]


@pytest.mark.parametrize("mode, found, tried", [
    ("power", 64, DOUBLING),
    ("binsearch", 100, DOUBLING + [96, 112, 104, 100, 102, 101]),  # bisects between 64 (fits) and 128 (does not)
])
def test_the_search_reaches_the_largest_size_under_the_memory_limit(tmp_path, mode, found, tried):
    model = MemoryBound(limit=100)
    before = weights(model)
    trainer = quiet_trainer(default_root_dir=str(tmp_path))
    assert Tuner(trainer).scale_batch_size(model, mode=mode, steps_per_trial=2) == found
    assert model.batch_size == found
    assert list(dict.fromkeys(model.sizes_seen)) == tried  # the sizes in the order they were tried
    assert same_weights(weights(model), before) and temporary_checkpoints(str(tmp_path)) == []
    assert trainer.global_step == 0 and trainer.lightning_module is None and model.trainer is None


@pytest.mark.parametrize("where", ["hparams", "datamodule"])
def test_the_batch_size_may_live_in_hparams_or_the_datamodule(tmp_path, where):
    model = MemoryBound(limit=40, where=where)
    datamodule = SizedData() if where == "datamodule" else None
    found = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(
        model, datamodule=datamodule, mode="binsearch", steps_per_trial=1)
    assert found == 40
    assert (datamodule.batch_size if datamodule is not None else model.hparams.batch_size) == 40
    if datamodule is not None:
        assert datamodule.trainer is None  # pointed back at the trainer it had


def test_a_real_cpu_allocation_failure_counts_as_out_of_memory(tmp_path):
    model = MemoryBound(limit=20, real_allocation=True)
    found = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(model, mode="binsearch",
                                                                                  steps_per_trial=1)
    assert found == 20
    with pytest.raises(RuntimeError) as info:
        torch.empty(2 ** 62, dtype=torch.uint8)
    assert is_out_of_memory(info.value) and not is_out_of_memory(RuntimeError("shapes do not match"))


def test_the_batch_never_grows_past_the_dataset(tmp_path):
    model = MemoryBound(limit=10_000, n=200)
    assert Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(model, steps_per_trial=1) == 200
    assert max(model.sizes_seen) == 200


def test_max_trials_caps_the_sizes_tried(tmp_path):
    model = MemoryBound(limit=10_000)
    assert Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(
        model, steps_per_trial=1, init_val=4, max_trials=3) == 16
    assert list(dict.fromkeys(model.sizes_seen)) == [4, 8, 16]


def test_a_size_that_fails_first_is_halved(tmp_path):
    model = MemoryBound(limit=5)
    assert Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(
        model, mode="binsearch", steps_per_trial=1, init_val=32) == 5


def test_nothing_fitting_is_an_error_and_the_batch_size_is_put_back(tmp_path):
    model = MemoryBound(limit=0, batch_size=16)
    with pytest.raises(MisconfigurationException, match="every batch size tried ran out of memory, down to 1"):
        Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(model, steps_per_trial=1)
    assert model.batch_size == 16 and temporary_checkpoints(str(tmp_path)) == []


def test_another_error_ends_the_search_and_loses_nothing(tmp_path):
    class Broken(MemoryBound):
        def training_step(self, batch, batch_idx):
            if len(batch[0]) >= 16:
                raise ValueError("a bug at batch size 16")
            return super().training_step(batch, batch_idx)

    model = Broken(limit=100, batch_size=8)
    before = weights(model)
    with pytest.raises(ValueError, match="a bug at batch size 16"):
        Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(model, steps_per_trial=1)
    assert model.batch_size == 8 and same_weights(weights(model), before)
    assert temporary_checkpoints(str(tmp_path)) == [] and model.trainer is None


def test_validate_is_sized_by_its_own_steps(tmp_path):
    model = MemoryBound(limit=1, eval_limit=48)  # training would fit nothing; validation fits 48
    found = Tuner(quiet_trainer(default_root_dir=str(tmp_path))).scale_batch_size(
        model, method="validate", mode="binsearch", steps_per_trial=1)
    assert found == 48 == model.batch_size


def test_bad_arguments_name_the_culprit(tmp_path):
    tuner = Tuner(quiet_trainer(default_root_dir=str(tmp_path)))
    model = MemoryBound(limit=100)
    with pytest.raises(MisconfigurationException, match=r"mode='binserch'.*Did you mean `binsearch`"):
        tuner.scale_batch_size(model, mode="binserch")
    with pytest.raises(MisconfigurationException, match=r"has none \(looked in the model, model.hparams\)"):
        tuner.scale_batch_size(model, batch_arg_name="bs")
    with pytest.raises(MisconfigurationException, match="cannot resize the train dataloader passed to fit"):
        tuner.scale_batch_size(model, train_dataloaders=model.train_dataloader())
    with pytest.raises(MisconfigurationException, match=r"max_trials=0\): pass an int >= 1"):
        tuner.scale_batch_size(model, max_trials=0)
    with pytest.raises(MisconfigurationException, match=r"method='tset'.*Did you mean `test`"):
        tuner.scale_batch_size(model, method="tset")
    with pytest.raises(MisconfigurationException, match=r"method='validate'\) takes dataloaders="):
        tuner.scale_batch_size(model, method="validate", train_dataloaders=model.train_dataloader())
    assert model.sizes_seen == []  # every check came before any trial


def test_a_distributed_trainer_is_refused(tmp_path):
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, default_root_dir=str(tmp_path))
    with pytest.raises(MisconfigurationException, match="runs its trials in one process.*2 processes"):
        Tuner(trainer).scale_batch_size(MemoryBound(limit=100))


def test_fast_dev_run_skips_the_search(tmp_path):
    model = MemoryBound(limit=100, batch_size=16)
    with pytest.warns(UserWarning, match="skipped, since fast_dev_run is on"):
        assert Tuner(quiet_trainer(fast_dev_run=True)).scale_batch_size(model) is None
    assert model.batch_size == 16 and model.sizes_seen == []
