"""Accumulation, clipping, the hooks around a step, warm-up in optimizer_step, LBFGS and NaN checks."""
from __future__ import annotations

import pytest
import torch

from engine import Callback
from tests.optim_support import Regressor, assert_same_weights, batches, fit, hand_accumulation, mse, twin


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.1)


# ---- gradient accumulation ----------------------------------------------------------------------

def test_k_batches_of_b_equal_one_batch_of_k_times_b():
    model = Regressor(_sgd, n=64, batch_size=8)
    big = Regressor(_sgd, n=64, batch_size=32)
    trainer = fit(model, accumulate_grad_batches=4)
    fit(big)
    assert_same_weights(model, big, atol=1e-5)
    assert trainer.global_step == 2 * 2


def _hand_accumulation(model, n, k_of_epoch, epochs):
    hand_accumulation(model, k_of_epoch, epochs, n=n)


def test_last_incomplete_group_still_steps_and_the_loss_is_scaled():
    scaled = []

    class Record(Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            scaled.append(loss.detach())

    model = Regressor(_sgd, n=80)  # 10 batches: groups of 4, 4 and 2
    reference = twin(model)
    trainer = fit(model, accumulate_grad_batches=4, callbacks=[Record()])
    _hand_accumulation(reference, 80, lambda e: 4, epochs=2)

    assert_same_weights(model, reference)
    assert trainer.global_step == 2 * 3
    first = mse(twin(Regressor(_sgd, n=80)), batches(80)[0])
    assert scaled[0] == pytest.approx(float(first.detach()) / 4, rel=1e-5)


def test_accumulation_schedule_dict():
    model = Regressor(_sgd)
    reference = twin(model)
    trainer = fit(model, max_epochs=3, accumulate_grad_batches={1: 2, 2: 4})
    _hand_accumulation(reference, 64, lambda e: {0: 1, 1: 2, 2: 4}[e], epochs=3)
    assert_same_weights(model, reference)
    assert trainer.global_step == 8 + 4 + 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, {0: 0}, {"a": 2}])
def test_bad_accumulation_is_a_clear_error(bad):
    with pytest.raises(Exception, match="accumulate_grad_batches"):
        fit(Regressor(), max_epochs=1, accumulate_grad_batches=bad)


# ---- clipping -----------------------------------------------------------------------------------

class RecordingSGD(torch.optim.SGD):
    """SGD that remembers the gradients it was asked to apply."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.norms, self.max_abs = [], []

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None  # the trainer's hooks and clipping run in here
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.norm(torch.stack([g.norm() for g in grads]))))
        self.max_abs.append(float(max(g.abs().max() for g in grads)))
        super().step()
        return loss


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_caps_what_the_optimizer_sees(algorithm):
    seen_before = []

    class Before(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad for p in pl_module.parameters()]
            seen_before.append(float(torch.norm(torch.stack([g.norm() for g in grads]))))

    model = Regressor(lambda m: RecordingSGD(m.parameters(), lr=0.05))
    reference = twin(model)
    trainer = fit(model, gradient_clip_val=0.5, gradient_clip_algorithm=algorithm, callbacks=[Before()])

    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    for _ in range(2):
        for batch in batches():
            mse(reference, batch).backward()
            if algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
            else:
                torch.nn.utils.clip_grad_value_(reference.parameters(), 0.5)
            opt.step()
            opt.zero_grad()

    assert_same_weights(model, reference)
    recorded = trainer.optimizers[0]
    capped = recorded.norms if algorithm == "norm" else recorded.max_abs
    assert len(capped) == 16 and max(capped) <= 0.5 + 1e-5
    # As in Lightning, on_before_optimizer_step sees the gradients before clipping.
    assert max(seen_before) > 0.5


def test_bad_clip_algorithm_is_a_clear_error():
    with pytest.raises(Exception, match="gradient_clip_algorithm='l2'"):
        fit(Regressor(), max_epochs=1, gradient_clip_val=1.0, gradient_clip_algorithm="l2")


# ---- hooks around the step ----------------------------------------------------------------------

class Log(Callback):
    def __init__(self, events):
        self.events = events

    def on_before_backward(self, trainer, pl_module, loss):
        self.events.append(("on_before_backward", loss.requires_grad))

    def on_after_backward(self, trainer, pl_module):
        self.events.append(("on_after_backward", pl_module.layer.weight.grad is not None))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.events.append(("on_before_optimizer_step", optimizer is trainer.optimizers[0]))

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self.events.append(("on_before_zero_grad", optimizer is trainer.optimizers[0]))


def test_hooks_fire_in_lightnings_order_on_the_fast_path():
    events = []
    fit(Regressor(), max_epochs=1, limit_train_batches=2, callbacks=[Log(events)])
    names = [e for e, _ in events]
    # Lightning 2.x: zero_grad before backward (its closure runs step, zero_grad, backward)
    assert names == ["on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step"] * 2
    assert all(ok for _, ok in events)


class Overriding(Regressor):
    """Overrides backward, optimizer_step (2.x signature, LR warm-up from Lightning's docs) and zero_grad."""

    def __init__(self, events):
        super().__init__(_sgd)
        self.events = events

    def backward(self, loss):
        self.events.append(("backward", True))
        loss.backward()

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        self.events.append(("optimizer_step", True))
        optimizer.step(closure=optimizer_closure)
        if self.trainer.global_step < 5:  # warm up over the first 5 steps
            scale = min(1.0, float(self.trainer.global_step + 1) / 5)
            for group in optimizer.param_groups:
                group["lr"] = scale * 0.1

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        self.events.append(("optimizer_zero_grad", True))
        optimizer.zero_grad()


def test_module_overrides_fire_in_order_and_warm_up_matches_torch_loop():
    events = []
    model = Overriding(events)
    reference = twin(model)
    trainer = fit(model, max_epochs=1, callbacks=[Log(events)])

    opt = _sgd(reference)
    for step, batch in enumerate(batches()):
        mse(reference, batch).backward()
        opt.step()
        opt.zero_grad()
        if step < 5:
            for group in opt.param_groups:
                group["lr"] = min(1.0, (step + 1) / 5) * 0.1

    assert_same_weights(model, reference)
    names = [e for e, _ in events[:7]]
    assert names == ["on_before_zero_grad", "optimizer_zero_grad", "on_before_backward", "backward",
                     "on_after_backward", "optimizer_step", "on_before_optimizer_step"]
    assert trainer.global_step == 8


def test_seed_era_optimizer_step_signature_without_closure_works():
    class Seed(Regressor):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_idx, second_order_closure=None,
                           on_tpu=False, using_native_amp=False, using_lbfgs=False):
            assert optimizer_idx == 0 and not on_tpu and not using_native_amp and not using_lbfgs
            optimizer.step()  # the 0.8 way: gradients are already there

    model = Seed(_sgd)
    reference = twin(model)
    fit(model, max_epochs=1)
    opt = _sgd(reference)
    for batch in batches():
        mse(reference, batch).backward()
        opt.step()
        opt.zero_grad()
    assert_same_weights(model, reference)


def test_lbfgs_closure_reevaluates_like_a_torch_loop():
    model = Regressor(lambda m: torch.optim.LBFGS(m.parameters(), lr=0.5, max_iter=4))
    calls = []
    model.training_step = (lambda original: lambda batch, batch_idx: calls.append(batch_idx) or original(batch, batch_idx))(
        model.training_step)
    reference = twin(model)
    trainer = fit(model, max_epochs=1)

    opt = torch.optim.LBFGS(reference.parameters(), lr=0.5, max_iter=4)
    for batch in batches():
        def closure():
            opt.zero_grad()
            loss = mse(reference, batch)
            loss.backward()
            return loss
        opt.step(closure)
        opt.zero_grad()

    assert_same_weights(model, reference, atol=1e-5)
    assert len(calls) > 8 and trainer.global_step == 8


# ---- NaN / inf ----------------------------------------------------------------------------------

class GoesNaN(Regressor):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if (self.current_epoch, batch_idx) == (1, 3) else loss


@pytest.mark.parametrize("flag", ["terminate_on_nan", "detect_anomaly"])
def test_nan_loss_stops_with_step_epoch_and_batch(flag):
    model = GoesNaN()
    with pytest.raises(ValueError) as info:
        fit(model, max_epochs=3, **{flag: True})
    message = str(info.value)
    assert "global step 11" in message and "epoch 1" in message and "batch index 3" in message and flag in message
    assert not torch.is_anomaly_enabled()  # restored after the run
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was not taken


def test_nan_loss_without_the_flags_trains_on():
    trainer = fit(GoesNaN(), max_epochs=2)
    assert trainer.global_step == 16


def test_iterable_without_length_still_steps_its_last_incomplete_group():
    class Unsized(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(batches(80))

    class Streamed(Regressor):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(Unsized(), batch_size=None)

    model = Streamed(_sgd)
    reference = twin(model)
    trainer = fit(model, accumulate_grad_batches=4)
    _hand_accumulation(reference, 80, lambda e: 4, epochs=2)
    assert_same_weights(model, reference)
    assert trainer.global_step == 2 * 3


@pytest.mark.filterwarnings("ignore:Error detected in")  # torch prints the forward trace as a warning
def test_detect_anomaly_names_the_position_of_a_nan_in_backward():
    class BadGradient(Regressor):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            if batch_idx == 2:  # finite forward, NaN gradient: sqrt'(0) * 0
                loss = loss + (self.layer.weight - self.layer.weight.detach()).sum().sqrt() * 0
            return loss

    with pytest.raises(RuntimeError, match="returned nan") as info:
        fit(BadGradient(), max_epochs=1, detect_anomaly=True)
    assert any("global step 2, epoch 0, batch index 2" in note for note in info.value.__notes__)
    assert not torch.is_anomaly_enabled()
