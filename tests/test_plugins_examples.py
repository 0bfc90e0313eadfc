"""Custom loop behaviour without forking: the plugins of examples/plugins/, each doing its job."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from engine import Callback, PluginError, Trainer

EXAMPLES = Path(__file__).parent.parent / "examples" / "plugins"


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _trainer(max_epochs=1, **kwargs):
    from _toy import quiet_trainer_kwargs

    return Trainer(max_epochs=max_epochs, **quiet_trainer_kwargs(), **kwargs)


def _manual_sam(model, rho, lr):
    """SAM written out by hand in plain torch, for comparison."""
    from _toy import toy_loader

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in toy_loader():
        nn.functional.mse_loss(model(x), y).backward()
        params = [p for p in model.parameters()]
        with torch.no_grad():
            norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
            shifts = [p.grad * (rho / (norm + 1e-12)) for p in params]
            for p, s in zip(params, shifts):
                p.add_(s)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        with torch.no_grad():
            for p, s in zip(params, shifts):
                p.sub_(s)
        opt.step()
        opt.zero_grad()


def test_a_sam_replaces_the_training_step_execution():
    from _toy import ToyRegression
    from sam import SAM

    model = ToyRegression()
    trainer = _trainer(plugins=[SAM(rho=0.1)])
    assert trainer.registry.call_order("run_training_batch")[0][1] == "tryfirst"
    trainer.fit(model)
    assert trainer.global_step == 4

    expected = ToyRegression()
    _manual_sam(expected, rho=0.1, lr=expected.lr)
    plain = ToyRegression()
    _trainer().fit(plain)
    assert torch.allclose(model.layer.weight, expected.layer.weight, atol=1e-6)
    assert not torch.allclose(model.layer.weight, plain.layer.weight, atol=1e-4)


def test_b_wrapper_times_every_batch_whoever_runs_it():
    from _toy import ToyRegression
    from batch_timer import BatchTimer
    from sam import SAM

    class Slow(ToyRegression):
        def training_step(self, batch, batch_idx):
            time.sleep(0.002)
            return super().training_step(batch, batch_idx)

    timer = BatchTimer()
    trainer = _trainer(max_epochs=2, plugins=[timer])
    assert trainer.registry.call_order("run_training_batch")[0][1] == "wrapper"
    trainer.fit(Slow())
    assert len(timer.durations) == 8 and min(timer.durations) >= 0.002

    # Wrapped around SAM, it sees SAM's two forward passes per batch.
    timer = BatchTimer()
    _trainer(plugins=[timer, SAM()]).fit(Slow())
    assert len(timer.durations) == 4 and min(timer.durations) >= 0.004


def test_c_plugin_stops_training_with_should_stop():
    from _toy import ToyRegression
    from stop_on_loss import StopOnLoss

    stopper = StopOnLoss(threshold=1e9)  # met at once
    trainer = _trainer(max_epochs=5, plugins=[stopper])
    trainer.fit(ToyRegression())
    assert trainer.global_step == 1 and stopper.stopped_at_step == 1

    never = StopOnLoss(threshold=0.0)
    trainer = _trainer(max_epochs=2, plugins=[never])
    trainer.fit(ToyRegression())
    assert trainer.global_step == 8 and never.stopped_at_step is None


def test_d_plugin_adds_events_that_others_implement():
    from _toy import ToyRegression, toy_loader
    from custom_events import GradNormAlarm, GradNormMonitor, GradNormRecorder

    recorder = GradNormRecorder()
    trainer = _trainer(plugins=[GradNormMonitor()], callbacks=[recorder])
    assert "on_grad_norm" in trainer.registry.events()
    trainer.fit(ToyRegression())
    assert len(recorder.norms) == 4
    # The first norm is the gradient norm of the first batch at the initial weights.
    fresh = ToyRegression()
    x, y = next(iter(toy_loader()))
    nn.functional.mse_loss(fresh(x), y).backward()
    first = torch.norm(torch.stack([p.grad.norm(2) for p in fresh.parameters()]), 2)
    assert recorder.norms[0] == pytest.approx(float(first), rel=1e-5)

    # A plain @hookimpl plugin implements it too, and can stop the run.
    trainer = _trainer(max_epochs=3, plugins=[GradNormMonitor(), GradNormAlarm(limit=0.0)])
    trainer.fit(ToyRegression())
    assert trainer.global_step == 1

    # Nobody listening: the event is None and the monitor computes nothing.
    assert _trainer(plugins=[GradNormMonitor()]).hooks.on_grad_norm is None


def test_d_callback_registered_before_the_event_exists_still_gets_it():
    from _toy import ToyRegression
    from custom_events import GradNormMonitor, GradNormRecorder

    class MonitorCallback(GradNormMonitor, Callback):
        """The monitor as a callback, listed first: the trainer registers the recorder before it."""

    recorder = GradNormRecorder()
    _trainer(callbacks=[MonitorCallback(), recorder]).fit(ToyRegression())
    assert len(recorder.norms) == 4


def test_d_typo_in_a_plugin_event_is_caught():
    from custom_events import GradNormMonitor

    class Typo(Callback):
        def on_grad_nrom(self, trainer, pl_module, norm):
            pass

    with pytest.raises(PluginError, match="Did you mean `on_grad_norm`"):
        _trainer(plugins=[GradNormMonitor()], callbacks=[Typo()])
