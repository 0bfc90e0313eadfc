"""Several training loaders (a dict or list, or a ``CombinedLoader``) and ``CombinedLoader``'s modes, as in 2.x."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import LightningModule, MisconfigurationException
from engine.combined_loader import CombinedLoader
from tests.core_support import quiet_trainer
from tests.models import make_loader


def _iterables():
    return {"a": DataLoader(range(6), batch_size=4), "b": DataLoader(range(15), batch_size=5)}


def _plain(batch):
    if isinstance(batch, dict):
        return {k: _plain(v) for k, v in batch.items()}
    return None if batch is None else batch.tolist()


@pytest.mark.parametrize("mode, expected", [
    ("min_size", [{"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, {"a": [4, 5], "b": [5, 6, 7, 8, 9]}]),
    ("max_size_cycle", [{"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, {"a": [4, 5], "b": [5, 6, 7, 8, 9]},
                        {"a": [0, 1, 2, 3], "b": [10, 11, 12, 13, 14]}]),
    ("max_size", [{"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4]}, {"a": [4, 5], "b": [5, 6, 7, 8, 9]},
                  {"a": None, "b": [10, 11, 12, 13, 14]}]),
])
def test_modes_combine_one_batch_of_each(mode, expected):
    combined = CombinedLoader(_iterables(), mode)
    assert len(combined) == len(expected)
    items = list(combined)
    assert [_plain(batch) for batch, _, _ in items] == expected
    assert [(i, d) for _, i, d in items] == [(i, 0) for i in range(len(expected))]


def test_sequential_mode_runs_each_in_turn():
    combined = CombinedLoader(_iterables(), "sequential")
    assert len(combined) == 5
    assert [(b.tolist(), i, d) for b, i, d in combined] == [
        ([0, 1, 2, 3], 0, 0), ([4, 5], 1, 0), ([0, 1, 2, 3, 4], 0, 1), ([5, 6, 7, 8, 9], 1, 1),
        ([10, 11, 12, 13, 14], 2, 1)]


def test_a_list_keeps_its_shape_and_the_loaders_are_reachable():
    loaders = [DataLoader(range(4), batch_size=2), DataLoader(range(2), batch_size=2)]
    combined = CombinedLoader(loaders, "max_size_cycle")
    assert [[t.tolist() for t in batch] for batch, _, _ in combined] == [[[0, 1], [0, 1]], [[2, 3], [0, 1]]]
    assert combined.iterables is loaders and combined.flattened == loaders
    assert combined.sampler == [loaders[0].sampler, loaders[1].sampler]
    with pytest.raises(ValueError, match="unknown"):
        CombinedLoader(loaders, "zip")


class TwoSources(LightningModule):
    """Trains on a batch of each of its loaders, as Lightning 2.x gives them."""

    def __init__(self, loaders):
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.loaders = loaders
        self.batches = []

    def train_dataloader(self):
        return self.loaders

    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        parts = batch.values() if isinstance(batch, dict) else batch
        return sum(nn.functional.cross_entropy(self.layer(x), y) for x, y in parts)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_dict_of_training_loaders_gives_dict_batches_cycling_the_shorter():
    model = TwoSources({"big": make_loader(96, 32), "small": make_loader(32, 16, seed=1)})  # 3 and 2 batches
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model)
    assert trainer.num_training_batches == 3 and len(model.batches) == 6
    assert all(set(batch) == {"big", "small"} for batch in model.batches)
    small = [batch["small"][0] for batch in model.batches[:3]]
    assert torch.equal(small[2], small[0]) and not torch.equal(small[1], small[0])  # started over
    assert isinstance(trainer.train_dataloader, CombinedLoader) and trainer.train_dataloader.mode == "max_size_cycle"


def test_a_list_of_training_loaders_gives_list_batches():
    model = TwoSources([make_loader(64, 32), make_loader(64, 16, seed=1)])
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model)
    assert len(model.batches) == 4 and all(isinstance(b, list) and len(b) == 2 for b in model.batches)
    assert model.batches[0][0][0].shape == (32, 8) and model.batches[0][1][0].shape == (16, 8)


def test_a_combined_loader_trains_in_its_mode():
    loaders = CombinedLoader({"big": make_loader(96, 32), "small": make_loader(32, 16, seed=1)}, "min_size")
    model = TwoSources(loaders)
    quiet_trainer(max_epochs=1).fit(model)
    assert len(model.batches) == 2


class OneSource(TwoSources):
    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)


@pytest.mark.parametrize("given", ["loader", "list of one"])
def test_one_training_loader_is_not_wrapped(given):
    loader = make_loader(64, 32)
    model = OneSource(loader if given == "loader" else [loader])
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model)
    assert trainer.train_dataloader is loader
    assert len(model.batches[0]) == 2 and model.batches[0][0].shape == (32, 8)


def test_sequential_is_no_training_mode():
    model = TwoSources(CombinedLoader([make_loader(64, 32)], "sequential"))
    with pytest.raises(MisconfigurationException, match="cannot train on CombinedLoader\\(mode='sequential'\\)"):
        quiet_trainer(max_epochs=1).fit(model)


class Evaluated(TwoSources):
    def __init__(self):
        super().__init__(make_loader(64, 32))
        self.seen = []

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen.append((dataloader_idx, batch_idx, len(batch[0])))


def test_evaluation_runs_a_dict_or_a_sequential_combined_loader_one_loader_after_the_other():
    model = Evaluated()
    trainer = quiet_trainer()
    trainer.validate(model, dataloaders={"x": make_loader(64, 32), "y": make_loader(16, 16)}, verbose=False)
    assert model.seen == [(0, 0, 32), (0, 1, 32), (1, 0, 16)]
    model.seen.clear()
    trainer.validate(model, dataloaders=CombinedLoader([make_loader(16, 16), make_loader(32, 32)], "sequential"),
                     verbose=False)
    assert model.seen == [(0, 0, 16), (1, 0, 32)]
    with pytest.raises(MisconfigurationException, match="mode='sequential'"):
        trainer.validate(model, dataloaders=CombinedLoader([make_loader(16, 16)], "max_size_cycle"), verbose=False)
