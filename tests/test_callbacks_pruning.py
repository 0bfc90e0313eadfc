"""ModelPruning (torch.nn.utils.prune): the sparsity asked is reached, the lottery ticket resets what remains, and
checkpoints hold plain weights when pruning is made permanent."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.utils.prune as prune

from engine import MisconfigurationException, Trainer
from plugins import ModelCheckpoint, ModelPruning
from tests.callback_support import QUIET, BackboneModel, weights


def _prunable(model):
    return {k: v for k, v in weights(model).items() if k.rsplit(".", 1)[-1] in ("weight", "bias")}


def _zeros(tensors):
    return sum(int((t == 0).sum()) for t in tensors), sum(t.numel() for t in tensors)


def test_global_pruning_reaches_the_amount_and_keeps_the_initial_weights_that_remain():
    model = BackboneModel(batch_norm=False)
    initial = _prunable(model)
    Trainer(max_epochs=1, callbacks=[ModelPruning("l1_unstructured", amount=0.5)], **QUIET).fit(model)
    final = _prunable(model)
    zeros, total = _zeros(final.values())
    assert zeros == round(0.5 * total)
    for name, value in final.items():  # the lottery ticket: what remains is the weights' initial values
        kept = value != 0
        assert torch.equal(value[kept], initial[name][kept])
    assert not any(prune.is_pruned(m) for m in model.modules())  # permanent: plain parameters again
    assert set(dict(model.named_parameters())) == set(final)


def test_pruning_every_epoch_prunes_the_remaining_weights_again():
    model = BackboneModel(batch_norm=False)
    Trainer(max_epochs=2, callbacks=[ModelPruning("l1_unstructured", amount=0.5, use_lottery_ticket_hypothesis=False)],
            **QUIET).fit(model)
    zeros, total = _zeros(_prunable(model).values())
    first = round(0.5 * total)
    assert zeros == first + round(0.5 * (total - first))  # 75%


def test_layer_by_layer_pruning_with_an_amount_per_epoch():
    model = BackboneModel(batch_norm=False)
    pruning = ModelPruning("random_unstructured", parameters_to_prune=[(model.head, "weight")],
                           use_global_unstructured=False, amount=lambda epoch: 0.25 if epoch == 1 else 0)
    Trainer(max_epochs=2, callbacks=[pruning], **QUIET).fit(model)
    assert _zeros([model.head.weight]) == (8, 32)
    assert _zeros([model.backbone[0].weight])[0] == 0


def test_checkpoints_hold_plain_weights_when_permanent(tmp_path):
    saver = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, filename="{epoch}")
    model = BackboneModel(batch_norm=False)
    Trainer(max_epochs=2, callbacks=[ModelPruning("l1_unstructured", amount=0.5), saver],
            **{**QUIET, "enable_checkpointing": True}).fit(model)
    state = torch.load(os.path.join(tmp_path, "epoch=0.ckpt"), weights_only=True)["state_dict"]
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    zeros, total = _zeros([v for k, v in state.items() if k.rsplit(".", 1)[-1] in ("weight", "bias")])
    assert zeros == round(0.5 * total)  # the mask applied
    fresh = BackboneModel(batch_norm=False)
    fresh.load_state_dict(state)  # loads into a model that was never pruned


def test_without_permanence_checkpoints_and_model_keep_the_masks(tmp_path):
    model = BackboneModel(batch_norm=False)
    trainer = Trainer(max_epochs=1, callbacks=[ModelPruning("l1_unstructured", make_pruning_permanent=False)],
                      **QUIET)
    trainer.fit(model)
    assert prune.is_pruned(model)
    path = os.path.join(tmp_path, "after.ckpt")
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert "head.weight_orig" in state and "head.weight_mask" in state


@pytest.mark.parametrize("kwargs, match", [
    (dict(pruning_fn="l3_unstructured"), "l3_unstructured"),
    (dict(pruning_fn="ln_structured", use_global_unstructured=False), "pruning_dim"),
    (dict(pruning_fn="random_structured", pruning_dim=0), "use_global_unstructured=False"),
    (dict(pruning_fn="l1_unstructured", parameter_names=["gamma"]), "gamma"),
    (dict(pruning_fn="l1_unstructured", amount="half"), "amount"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        ModelPruning(**kwargs)
