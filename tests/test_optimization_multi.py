"""Several optimizers (seed-era optimizer_idx, frequency) and manual optimization, against hand-written loops."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine import Callback, LightningModule, MisconfigurationException
from tests.optim_support import Regressor, assert_same_weights, batches, fit, loader, twin


class TwoPart(nn.Module):
    """Two parts, each with its own optimizer; either loss depends on both (like a GAN)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(3, 1)

    def losses(self, batch, idx):
        x, y = batch
        out = self.b(torch.tanh(self.a(x)))
        return nn.functional.mse_loss(out, y) if idx == 0 else (out - 1.0).pow(2).mean()


class SeedTwoOptimizers(LightningModule):
    """Seed-era: training_step(batch, batch_idx, optimizer_idx) with two optimizers."""

    def __init__(self, frequencies=None) -> None:
        super().__init__()
        self.net = TwoPart()
        self.frequencies = frequencies
        self.calls = []

    def training_step(self, batch, batch_idx, optimizer_idx):
        other = self.net.b if optimizer_idx == 0 else self.net.a
        mine = self.net.a if optimizer_idx == 0 else self.net.b
        self.calls.append((batch_idx, optimizer_idx, other.weight.requires_grad, mine.weight.requires_grad))
        return {"loss": self.net.losses(batch, optimizer_idx)}

    def configure_optimizers(self):
        opt_a = torch.optim.SGD(self.net.a.parameters(), lr=0.1)
        opt_b = torch.optim.Adam(self.net.b.parameters(), lr=0.01)
        if self.frequencies:
            return [{"optimizer": opt_a, "frequency": self.frequencies[0]},
                    {"optimizer": opt_b, "frequency": self.frequencies[1]}]
        return [opt_a, opt_b]

    def train_dataloader(self):
        return loader()


def _hand_two_optimizers(net, schedule, epochs=2):
    """``schedule(batch_number)`` -> the optimizer indices that run on that batch."""
    opts = [torch.optim.SGD(net.a.parameters(), lr=0.1), torch.optim.Adam(net.b.parameters(), lr=0.01)]
    parts = [net.a, net.b]
    seen = 0
    for _ in range(epochs):
        for batch in batches():
            for idx in schedule(seen):
                for p in parts[1 - idx].parameters():
                    p.requires_grad_(False)
                net.losses(batch, idx).backward()
                opts[idx].step()
                opts[idx].zero_grad()
                for p in parts[1 - idx].parameters():
                    p.requires_grad_(True)
            seen += 1


def test_seed_era_two_optimizers_each_step_only_their_params_with_others_frozen():
    model = SeedTwoOptimizers()
    reference = twin(model.net)
    trainer = fit(model)
    _hand_two_optimizers(reference, lambda n: (0, 1))

    assert_same_weights(model.net, reference)
    assert [(b, i) for b, i, _, _ in model.calls[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(not other and mine for _, _, other, mine in model.calls)  # the other part was frozen
    assert all(p.requires_grad for p in model.parameters())  # and thawed afterwards
    assert trainer.global_step == 16  # seed era: one step per batch


def test_optimizer_frequency_takes_turns():
    model = SeedTwoOptimizers(frequencies=(2, 1))
    reference = twin(model.net)
    fit(model)
    _hand_two_optimizers(reference, lambda n: (0,) if n % 3 < 2 else (1,))

    assert [i for _, i, _, _ in model.calls[:6]] == [0, 0, 1, 0, 0, 1]
    assert_same_weights(model.net, reference)


def test_two_optimizers_without_optimizer_idx_is_a_clear_error():
    class Modern(SeedTwoOptimizers):
        def training_step(self, batch, batch_idx):
            return self.net.losses(batch, 0)

    with pytest.raises(MisconfigurationException, match="optimizer_idx.*automatic_optimization = False"):
        fit(Modern(), max_epochs=1)


class ManualGAN(LightningModule):
    """2.x manual optimization with two optimizers, toggling and a scheduler stepped by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = TwoPart()

    def training_step(self, batch, batch_idx):
        opt_a, opt_b = self.optimizers()
        for idx, opt in enumerate((opt_a, opt_b)):
            self.toggle_optimizer(opt)
            loss = self.net.losses(batch, idx)
            self.manual_backward(loss)
            opt.step()
            opt.zero_grad()
            self.untoggle_optimizer(opt)
        return loss

    def on_train_epoch_end(self):
        self.lr_schedulers().step()

    def configure_optimizers(self):
        opt_a = torch.optim.SGD(self.net.a.parameters(), lr=0.1)
        opt_b = torch.optim.SGD(self.net.b.parameters(), lr=0.1)
        return [opt_a, opt_b], [torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)]

    def train_dataloader(self):
        return loader()


def test_manual_optimization_matches_torch_loop_and_counts_every_step():
    steps = []

    class Count(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            steps.append(optimizer)

    model = ManualGAN()
    reference = twin(model.net)
    trainer = fit(model, callbacks=[Count()])

    opts = [torch.optim.SGD(reference.a.parameters(), lr=0.1), torch.optim.SGD(reference.b.parameters(), lr=0.1)]
    sched = torch.optim.lr_scheduler.StepLR(opts[0], step_size=1, gamma=0.5)
    parts = [reference.a, reference.b]
    for _ in range(2):
        for batch in batches():
            for idx in (0, 1):
                for p in parts[1 - idx].parameters():
                    p.requires_grad_(False)
                reference.losses(batch, idx).backward()
                opts[idx].step()
                opts[idx].zero_grad()
                for p in parts[1 - idx].parameters():
                    p.requires_grad_(True)
        sched.step()

    assert_same_weights(model.net, reference)
    assert trainer.global_step == 2 * 2 * 8  # Lightning: every optimizer.step() counts
    assert len(steps) == 32 and steps[0] is trainer.optimizers[0] and steps[1] is trainer.optimizers[1]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.025)
    assert model.optimizers(use_pl_optimizer=False) == trainer.optimizers


def test_each_configuration_gets_its_step_variant_for_the_fit():
    from plugins.automatic_step import AutomaticStep
    from plugins.fast_step import FastStep
    from plugins.manual_step import ManualStep

    cases = [(Regressor(), {}, FastStep, 8), (Regressor(), {"accumulate_grad_batches": 2}, AutomaticStep, 4),
             (ManualGAN(), {}, ManualStep, 2 * 8)]
    for model, flags, variant, steps in cases:
        trainer = fit(model, max_epochs=1, **flags)
        plugin = trainer.plugin("optimization")
        assert type(plugin._variant) is variant
        assert trainer.lightning_optimizers is plugin._variant.wrapped  # self.optimizers() step through it
        assert trainer.global_step == steps


def test_manual_optimization_rejects_accumulation_and_clipping_and_manual_backward_needs_it():
    with pytest.raises(MisconfigurationException, match="accumulate_grad_batches"):
        fit(ManualGAN(), max_epochs=1, accumulate_grad_batches=2)
    with pytest.raises(MisconfigurationException, match="clip_gradients"):
        fit(ManualGAN(), max_epochs=1, gradient_clip_val=1.0)

    class Automatic(ManualGAN):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = True

        def training_step(self, batch, batch_idx, optimizer_idx=0):
            self.manual_backward(self.net.losses(batch, 0))

    with pytest.raises(MisconfigurationException, match="automatic_optimization = False"):
        fit(Automatic(), max_epochs=1)


def test_toggle_model_context_freezes_other_optimizers_params():
    class Toggling(ManualGAN):
        def training_step(self, batch, batch_idx):
            opt_a, opt_b = self.optimizers()
            with opt_b.toggle_model():
                assert not self.net.a.weight.requires_grad and self.net.b.weight.requires_grad
                loss = self.net.losses(batch, 1)
                self.manual_backward(loss)
                opt_b.step()
                opt_b.zero_grad()
            assert self.net.a.weight.requires_grad

        def on_train_epoch_end(self):
            pass

    trainer = fit(Toggling(), max_epochs=1)
    assert trainer.global_step == 8
