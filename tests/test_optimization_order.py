"""The order of a training batch's hooks under automatic optimization is Lightning 2.x's.

Lightning's closure runs ``training_step``, then (first batch of an accumulation group only)
``on_before_zero_grad`` + ``optimizer_zero_grad``, then ``on_before_backward``/``backward``/
``on_after_backward``; a stepping batch then runs ``on_before_optimizer_step`` and the step
(``tests/tests_pytorch/models/test_hooks.py``). Numerically nothing changes: a group's gradients
are summed, nothing is zeroed within it.
"""
from __future__ import annotations

import torch

from engine import Callback
from tests.optim_support import Regressor, assert_same_weights, batches, fit, hand_accumulation, mse, twin


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.1)


class Recorder(Callback):
    """Records the callback events around a step."""

    def __init__(self, events):
        self.events = events

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self.events.append("on_before_zero_grad")

    def on_before_backward(self, trainer, pl_module, loss):
        self.events.append("on_before_backward")

    def on_after_backward(self, trainer, pl_module):
        self.events.append("on_after_backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.events.append("on_before_optimizer_step")


class Recording(Regressor):
    """Records its training_step and its own zero_grad/backward/optimizer_step overrides."""

    def __init__(self, events, **kwargs):
        super().__init__(_sgd, **kwargs)
        self.events = events

    def training_step(self, batch, batch_idx):
        self.events.append("training_step")
        return super().training_step(batch, batch_idx)

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        self.events.append("optimizer_zero_grad")
        optimizer.zero_grad()

    def backward(self, loss):
        self.events.append("backward")
        loss.backward()

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        optimizer.step(closure=optimizer_closure)
        self.events.append("optimizer_step")  # after, as Lightning's test_hooks records it


FIRST = ["training_step", "on_before_zero_grad", "optimizer_zero_grad", "on_before_backward", "backward",
         "on_after_backward"]
MIDDLE = ["training_step", "on_before_backward", "backward", "on_after_backward"]
STEP = ["on_before_optimizer_step", "optimizer_step"]


def test_zero_grad_runs_before_backward_on_every_batch_without_accumulation():
    events = []
    fit(Recording(events, n=16), max_epochs=1, callbacks=[Recorder(events)])
    assert events == (FIRST + STEP) * 2


def test_zero_grad_only_on_the_first_batch_of_an_accumulation_group():
    events = []
    fit(Recording(events, n=32), max_epochs=1, accumulate_grad_batches=2, callbacks=[Recorder(events)])
    assert events == (FIRST + MIDDLE + STEP) * 2


def test_callback_events_alone_follow_lightnings_order_on_the_fast_path():
    events = []
    fit(Regressor(_sgd, n=16), max_epochs=1, callbacks=[Recorder(events)])
    assert events == ["on_before_zero_grad", "on_before_backward", "on_after_backward",
                      "on_before_optimizer_step"] * 2


def test_results_equal_a_torch_loop_with_listeners_and_accumulation():
    for k in (1, 3):
        model = Regressor(_sgd)
        reference = twin(model)
        fit(model, accumulate_grad_batches=k, callbacks=[Recorder([])])
        hand_accumulation(reference, lambda epoch: k, 2)
        assert_same_weights(model, reference)


def test_gradients_of_a_group_are_summed_and_stay_after_the_step():
    seen = []

    class Grads(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen.append(pl_module.layer.weight.grad.clone())

    model = Regressor(_sgd, n=16)
    reference = twin(model)
    fit(model, max_epochs=1, accumulate_grad_batches=2, callbacks=[Grads()])
    first, second = batches(16)
    expected = torch.autograd.grad((mse(reference, first) + mse(reference, second)) / 2, reference.layer.weight)[0]
    assert torch.allclose(seen[0], expected, atol=1e-6)
    # Lightning leaves the last step's gradients; the next group's first batch clears them.
    assert model.layer.weight.grad is not None and torch.equal(model.layer.weight.grad, seen[0])


def test_a_listener_leaving_mid_run_does_not_leak_gradients_into_the_bare_path():
    """The hooks' order zeroes before backward, the bare path after its step: switching must not add up."""
    class Once(Callback):
        def on_after_backward(self, trainer, pl_module):
            if trainer.state.batch_idx == 2:
                trainer.registry.unregister(self)

    model = Regressor(_sgd)
    reference = twin(model)
    fit(model, callbacks=[Once()])
    hand_accumulation(reference, lambda epoch: 1, 2)
    assert_same_weights(model, reference)
