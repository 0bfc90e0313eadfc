"""configure_optimizers forms, schedulers and ReduceLROnPlateau, each checked against a hand-written loop."""
from __future__ import annotations

import pytest
import torch

from engine import MisconfigurationException
from engine.listing import describe
from plugins.optimizer_config import LRSchedulerConfig
from tests.optim_support import Regressor, assert_same_weights, batches, fit, mse, twin


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)


def _step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


def hand_loop(model, make_optim, epochs=2, interval="epoch", frequency=1, n=64):
    """One optimizer and at most one scheduler, stepped the way Lightning documents."""
    opt = make_optim(model)
    sched = _step_lr(opt) if interval else None
    step = 0
    for epoch in range(epochs):
        for batch in batches(n):
            mse(model, batch).backward()
            opt.step()
            opt.zero_grad()
            step += 1
            if sched is not None and interval == "step" and step % frequency == 0:
                sched.step()
        if sched is not None and interval == "epoch" and (epoch + 1) % frequency == 0:
            sched.step()
    return opt


FORMS = {
    "optimizer": (lambda m: _sgd(m), None, 1),
    "list": (lambda m: [_sgd(m)], None, 1),
    "tuple_of_lists": (lambda m: (lambda o: ([o], [_step_lr(o)]))(_sgd(m)), "epoch", 1),
    "dict": (lambda m: (lambda o: {"optimizer": o, "lr_scheduler": _step_lr(o)})(_sgd(m)), "epoch", 1),
    "dict_with_scheduler_dict": (
        lambda m: (lambda o: {"optimizer": o, "lr_scheduler": {"scheduler": _step_lr(o), "interval": "step",
                                                                "frequency": 3, "name": "halver"}})(_sgd(m)),
        "step", 3),
    "list_of_dicts": (lambda m: (lambda o: [{"optimizer": o, "lr_scheduler": _step_lr(o)}])(_sgd(m)), "epoch", 1),
    "lists_with_scheduler_dict": (
        lambda m: (lambda o: ([o], [{"scheduler": _step_lr(o), "interval": "epoch", "frequency": 2}]))(_sgd(m)),
        "epoch", 2),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_configure_optimizers_forms_match_torch_loop(form):
    make, interval, frequency = FORMS[form]
    model = Regressor(make)
    reference = twin(model)
    trainer = fit(model, max_epochs=3)
    ref_opt = hand_loop(reference, lambda m: _sgd(m), epochs=3, interval=interval, frequency=frequency)

    assert_same_weights(model, reference)
    assert trainer.global_step == 3 * 8
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"])
    if interval is None:
        assert trainer.lr_scheduler_configs == [] and model.lr_schedulers() is None
    else:
        (config,) = trainer.lr_scheduler_configs
        assert isinstance(config, LRSchedulerConfig)
        assert (config.interval, config.frequency) == (interval, frequency)
        assert model.lr_schedulers() is config.scheduler
        if form == "dict_with_scheduler_dict":
            assert config.name == "halver"


def _plateau_optim(monitor="val_loss", strict=True):
    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        # threshold=10 (absolute): no epoch ever counts as an improvement, so the LR halves each epoch.
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=10,
                                                           threshold_mode="abs")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor, "strict": strict}}
    return make


def test_reduce_on_plateau_steps_on_the_monitored_metric():
    model = Regressor(_plateau_optim(), val=True)
    reference = twin(model)
    trainer = fit(model, max_epochs=3)

    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=10, threshold_mode="abs")
    seen = []
    for _ in range(3):
        for batch in batches():
            mse(reference, batch).backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            val = torch.stack([mse(reference, b) for b in batches(32, 8, seed=1)]).mean()
        sched.step(val)
        seen.append(opt.param_groups[0]["lr"])

    assert_same_weights(model, reference)
    assert seen[-1] < 0.05
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(seen[-1])
    assert trainer.lr_scheduler_configs[0].reduce_on_plateau
    assert trainer.lr_scheduler_configs[0].scheduler.best == pytest.approx(float(sched.best), rel=1e-5)


def test_reduce_on_plateau_missing_metric_names_it_and_the_metrics_that_exist():
    model = Regressor(_plateau_optim(monitor="val_acc"), val=True)
    with pytest.raises(MisconfigurationException) as info:
        fit(model, max_epochs=1)
    message = str(info.value)
    assert "'val_acc'" in message and "val_loss" in message


def test_reduce_on_plateau_not_strict_skips_with_a_warning():
    model = Regressor(_plateau_optim(monitor="val_acc", strict=False), val=True)
    with pytest.warns(UserWarning, match="val_acc"):
        trainer = fit(model, max_epochs=1)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.05


def test_bare_reduce_on_plateau_watches_val_loss_as_in_the_seed():
    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        return [opt], [torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, threshold=10, threshold_mode="abs")]

    trainer = fit(Regressor(make, val=True), max_epochs=2)
    assert trainer.lr_scheduler_configs[0].monitor == "val_loss"
    assert trainer.optimizers[0].param_groups[0]["lr"] < 0.05


@pytest.mark.parametrize("bad, match", [
    (lambda m: "adam", "not a form"),
    (lambda m: {"optimizer": torch.optim.SGD(m.parameters(), lr=0.1), "lr_sheduler": None}, "lr_sheduler"),
    (lambda m: (lambda o: {"optimizer": o, "lr_scheduler": {"scheduler": _step_lr(o), "interval": "batch"}})(
        torch.optim.SGD(m.parameters(), lr=0.1)), "'step' or 'epoch'"),
    (lambda m: (lambda o: {"optimizer": o, "lr_scheduler": {"interval": "step"}})(
        torch.optim.SGD(m.parameters(), lr=0.1)), "no 'scheduler' key"),
])
def test_bad_configure_optimizers_output_is_a_clear_error(bad, match):
    with pytest.raises(MisconfigurationException, match=match):
        fit(Regressor(bad), max_epochs=1)


def _two_sgds(m):
    return torch.optim.SGD(m.parameters(), lr=0.1), torch.optim.Adam(m.parameters(), lr=0.1)


@pytest.mark.parametrize("make", [
    lambda m: (lambda a, b: {"optimizer": a, "lr_scheduler": _step_lr(b)})(*_two_sgds(m)),
    lambda m: (lambda a, b: ([a], [_step_lr(b)]))(*_two_sgds(m)),
    lambda m: (lambda a, b: {"optimizer": a, "lr_scheduler": {"scheduler": _step_lr(b), "interval": "step"}})(
        *_two_sgds(m)),
], ids=["dict", "lists", "scheduler_dict"])
def test_a_scheduler_built_for_an_optimizer_not_returned_is_an_error(make):
    with pytest.raises(MisconfigurationException, match=r"returned a StepLR scheduler built for an optimizer it did "
                                                        r"not return \(a Adam\)"):
        fit(Regressor(make), max_epochs=1)


def test_a_scheduler_returned_with_another_optimizer_than_its_own_is_an_error():
    def make(m):
        a, b = _two_sgds(m)
        return [{"optimizer": a, "lr_scheduler": _step_lr(b)}, {"optimizer": b, "lr_scheduler": _step_lr(a)}]

    with pytest.raises(MisconfigurationException, match=r"returned the StepLR scheduler with optimizer 0 \(SGD\), "
                                                        r"but it was built for optimizer 1 \(Adam\)"):
        fit(Regressor(make), max_epochs=1)


def test_configure_optimizers_none_trains_without_an_optimizer():
    model = Regressor(lambda m: None)
    before = model.layer.weight.detach().clone()
    with pytest.warns(UserWarning, match="no optimizer"):
        trainer = fit(model, max_epochs=1)
    assert torch.equal(model.layer.weight, before) and trainer.optimizers == []


def test_plain_single_optimizer_run_takes_the_fast_path():
    trainer = fit(Regressor(), max_epochs=1)
    assert trainer.plugin("optimization")._fast
    # Full precision implements no hook of a step: only the one naming it trainer.precision_plugin.
    assert next(p.hooks for p in describe(trainer).plugins if p.name == "precision") == ["make_precision_plugin"]
    assert not fit(Regressor(), max_epochs=1, gradient_clip_val=1.0).plugin("optimization")._fast
