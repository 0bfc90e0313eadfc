"""The model summary printed at fit start."""
from __future__ import annotations

import pytest
from torch import nn

from engine import Trainer
from engine.errors import MisconfigurationException
from plugins.summary import ModelSummary, layer_rows, summarize
from tests.models import ModernModel


class Nested(ModernModel):
    """A Sequential (one frozen layer) next to a head: 8*16+16 + 16*2+2 params."""

    def __init__(self):
        super().__init__(n_train=32)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.layer = nn.Linear(16, 2)
        self.body[0].weight.requires_grad_(False)

    def forward(self, x):
        return self.layer(self.body(x))


def fit(model, **flags):
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, **flags)
    trainer.fit(model)
    return trainer


def test_top_summary_lists_children_with_counts(capsys):
    fit(Nested())  # weights_summary='top' is the default
    out = capsys.readouterr().out
    rows = [l.split("|") for l in out.splitlines() if "|" in l]
    assert [c.strip() for c in rows[0]] == ["", "Name", "Type", "Params"]
    # in registration order (ModernModel.__init__ made `layer` first)
    assert [[c.strip() for c in r] for r in rows[1:]] == [["0", "layer", "Linear", "34"],
                                                          ["1", "body", "Sequential", "144"]]
    assert "50        Trainable params" in out  # 16 + 34
    assert "128       Non-trainable params" in out
    assert "178       Total params" in out


def test_full_summary_lists_every_submodule(capsys):
    fit(Nested(), weights_summary="full")
    names = [l.split("|")[1].strip() for l in capsys.readouterr().out.splitlines() if "|" in l][1:]
    assert names == ["layer", "body", "body.0", "body.1"]


@pytest.mark.parametrize("flags", [{"weights_summary": None}, {"enable_model_summary": False}])
def test_turned_off(capsys, flags):
    trainer = fit(Nested(), **flags)
    assert "model_summary" not in trainer.registry.names()
    assert "Total params" not in capsys.readouterr().out


def test_bad_mode_is_a_clear_error():
    with pytest.raises(MisconfigurationException, match="weights_summary='tops'.*'full'"):
        Trainer(weights_summary="tops")


def test_summary_callback_and_helpers(capsys):
    trainer = fit(Nested(), callbacks=[ModelSummary(max_depth=-1)])
    assert "model_summary" not in trainer.registry.names()  # the user's callback replaces the built-in
    assert "body.0" in capsys.readouterr().out
    assert layer_rows(nn.Sequential(nn.Linear(1000, 1000)), 1) == [("0", "Linear", 1_001_000)]
    assert "1.0 M     Total params" in summarize(nn.Sequential(nn.Linear(1000, 1000)))
