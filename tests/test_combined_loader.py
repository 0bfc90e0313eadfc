"""Several training loaders (a dict or list, or a ``CombinedLoader``) and ``CombinedLoader``'s modes, as in 2.x."""
from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from engine.combined_loader import CombinedLoader


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
