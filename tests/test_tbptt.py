"""Truncated back-propagation through time: ``Trainer(truncated_bptt_steps=k)`` (Lightning 0.9)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine import Callback, LightningModule, Trainer
from engine.errors import MisconfigurationException
from tests.optim_support import QUIET

T, SPLIT = 8, 2


def sequences(n=32, seed=0):
    """Inputs (n, T, 1) and targets: the running sum of the inputs (an RNN can learn it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, 1, generator=g)
    return TensorDataset(x, x.cumsum(dim=1))


class SeedRNN(LightningModule):
    """0.9 style: ``training_step(self, batch, batch_idx, hiddens)`` returning ``{'loss', 'hiddens'}``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(1, 8, batch_first=True)
        self.head = nn.Linear(8, 1)
        self.calls = []

    def forward(self, x, hiddens=None):
        out, hiddens = self.rnn(x, hiddens)
        return self.head(out), hiddens

    def training_step(self, batch, batch_idx, hiddens):
        x, y = batch
        self.calls.append((batch_idx, self.trainer.split_idx, tuple(x.shape),
                           None if hiddens is None else hiddens.clone(), getattr(hiddens, "requires_grad", None)))
        out, hiddens = self(x, hiddens)
        loss = nn.functional.mse_loss(out, y)
        self.returned = hiddens
        return {"loss": loss, "hiddens": hiddens}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self):
        return DataLoader(sequences(), batch_size=8)


def _fit(model, **flags):
    trainer = Trainer(**{**QUIET, "max_epochs": 1, "truncated_bptt_steps": SPLIT, **flags})
    trainer.fit(model)
    return trainer


class CountSteps(Callback):
    def __init__(self):
        self.steps = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps += 1


def test_each_split_gets_the_previous_splits_hiddens_detached_and_is_an_optimizer_step():
    model = SeedRNN()
    counter = CountSteps()
    trainer = _fit(model, callbacks=[counter])
    batches = 32 // 8
    assert len(model.calls) == batches * (T // SPLIT)
    assert [(b, s) for b, s, *_ in model.calls[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert all(shape == (8, SPLIT, 1) for _, _, shape, _, _ in model.calls)
    assert all(h is None for _, s, _, h, _ in model.calls if s == 0)  # each batch starts afresh
    assert all(h is not None and grad is False for _, s, _, h, grad in model.calls if s > 0)
    assert counter.steps == batches * (T // SPLIT)  # each split steps the optimizer
    assert trainer.global_step == batches  # counted per batch, as 0.9 did
    assert trainer.hiddens is None and trainer.split_idx is None


def test_matches_a_hand_written_truncated_bptt_loop():
    model = SeedRNN()
    reference = copy.deepcopy(model)
    _fit(model, max_epochs=2)
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    for _ in range(2):
        for x, y in DataLoader(sequences(), batch_size=8):
            hiddens = None
            for t in range(0, T, SPLIT):
                out, hiddens = reference(x[:, t:t + SPLIT], hiddens)
                loss = nn.functional.mse_loss(out, y[:, t:t + SPLIT])
                opt.zero_grad()
                loss.backward()
                opt.step()
                hiddens = hiddens.detach()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_it_trains():
    model = SeedRNN()
    x, y = sequences(64, seed=3).tensors
    with torch.no_grad():
        before = nn.functional.mse_loss(model(x)[0], y)
    _fit(model, max_epochs=15)
    with torch.no_grad():
        after = nn.functional.mse_loss(model(x)[0], y)
    assert after < 0.5 * before


def test_a_custom_split_and_a_list_element_are_split_too():
    class Custom(SeedRNN):
        def tbptt_split_batch(self, batch, split_size):
            self.split_sizes = getattr(self, "split_sizes", []) + [split_size]
            return super().tbptt_split_batch(batch, split_size)

    model = Custom()
    _fit(model, limit_train_batches=1)
    assert model.split_sizes == [SPLIT]
    x = torch.arange(2 * 6).reshape(2, 6, 1)
    splits = LightningModule().tbptt_split_batch([x, [list(range(6)), list(range(6))], "meta"], 4)
    assert [s[0].shape[1] for s in splits] == [4, 2]
    assert splits[1][1] == [[4, 5], [4, 5]] and splits[0][2] == "meta"


def test_several_optimizers_get_optimizer_idx_before_hiddens():
    class Two(SeedRNN):
        def training_step(self, batch, batch_idx, optimizer_idx, hiddens):
            x, y = batch
            self.calls.append((optimizer_idx, hiddens is None))
            out, hiddens = self(x, hiddens)
            return {"loss": nn.functional.mse_loss(out, y), "hiddens": hiddens}

        def configure_optimizers(self):
            return [torch.optim.SGD(self.rnn.parameters(), lr=0.05), torch.optim.SGD(self.head.parameters(), lr=0.05)]

    model = Two()
    _fit(model, limit_train_batches=1)
    assert model.calls == [(0, True), (1, True)] + [(0, False), (1, False)] * (T // SPLIT - 1)


def test_bad_values_and_manual_optimization_are_refused():
    with pytest.raises(MisconfigurationException, match="truncated_bptt_steps must be an int >= 1"):
        Trainer(truncated_bptt_steps=0)

    class Manual(SeedRNN):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(MisconfigurationException, match="not supported with manual optimization"):
        _fit(Manual())


def test_the_1x_module_attribute_turns_it_on():
    model = SeedRNN()
    model.truncated_bptt_steps = 4
    trainer = Trainer(**{**QUIET, "max_epochs": 1, "limit_train_batches": 1})
    trainer.fit(model)
    assert [s for _, s, *_ in model.calls] == [0, 1]
