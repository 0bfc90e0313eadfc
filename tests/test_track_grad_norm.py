"""``Trainer(track_grad_norm=p)`` (seed era): per-parameter and total gradient norms, logged per step, 0.9's names."""
from __future__ import annotations

import csv
import glob
import os

import pytest
import torch

from engine import Callback, Trainer
from engine.errors import MisconfigurationException
from plugins import CSVLogger
from tests.optim_support import QUIET, Regressor, batches, mse, twin


def _sgd(m):
    return torch.optim.SGD(m.parameters(), lr=0.1)


class Grads(Callback):
    """Keeps the gradients each optimizer step sees."""

    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append({n: p.grad.clone() for n, p in pl_module.named_parameters()})


def test_norms_reach_the_logger_at_logging_steps_under_0_9s_names(tmp_path):
    model = Regressor(_sgd, n=32)
    grads = Grads()
    flags = {**QUIET, "logger": CSVLogger(str(tmp_path)), "max_epochs": 1, "log_every_n_steps": 2}
    trainer = Trainer(**flags, track_grad_norm=2, callbacks=[grads])
    trainer.fit(model)
    (path,) = glob.glob(os.path.join(str(tmp_path), "**", "metrics.csv"), recursive=True)
    rows = [r for r in csv.DictReader(open(path)) if r.get("grad_2.0_norm_total")]
    assert [int(r["step"]) for r in rows] == [1, 3]  # every 2nd of the 4 steps
    for row, seen in zip(rows, grads.seen[1::2]):
        for name in ("layer.weight", "layer.bias"):
            assert float(row[f"grad_2.0_norm_{name}"]) == pytest.approx(float(seen[name].norm(2)), abs=1e-3)
        total = torch.stack([seen[n].norm(2) for n in ("layer.weight", "layer.bias")]).norm(2)
        assert float(row["grad_2.0_norm_total"]) == pytest.approx(float(total), abs=1e-3)
    assert set(trainer.logged_metrics) >= {"grad_2.0_norm_layer.weight", "grad_2.0_norm_layer.bias",
                                           "grad_2.0_norm_total"}


def test_the_inf_norm_and_accumulation():
    model = Regressor(_sgd, n=32)
    reference = twin(model)
    trainer = Trainer(**{**QUIET, "max_epochs": 1}, track_grad_norm="inf", accumulate_grad_batches=2)
    trainer.fit(model)
    # the last step's gradients: the mean over batches 3 and 4
    opt = _sgd(reference)
    for i, batch in enumerate(batches(32)):
        (mse(reference, batch) / 2).backward()
        if i % 2 == 1:
            last = {n: p.grad.clone() for n, p in reference.named_parameters()}
            opt.step()
            opt.zero_grad()
    metrics = trainer.logged_metrics
    expected = max(float(g.abs().max()) for g in last.values())
    assert float(metrics["grad_inf_norm_total"]) == pytest.approx(expected, abs=1e-3)
    assert float(metrics["grad_inf_norm_layer.weight"]) == pytest.approx(float(last["layer.weight"].abs().max()),
                                                                         abs=1e-3)


def test_off_by_default_and_bad_values_are_refused():
    trainer = Trainer(**{**QUIET, "max_epochs": 1})
    trainer.fit(Regressor(_sgd, n=16))
    assert not any(k.startswith("grad_") for k in trainer.logged_metrics)
    assert trainer.registry.get_plugin("grad_norm") is None
    with pytest.raises(MisconfigurationException, match="track_grad_norm can be an int, a float or 'inf'"):
        Trainer(track_grad_norm="l2")
