"""BaseFinetuning / BackboneFinetuning: the backbone is frozen, then trains from its epoch in a new param group."""
from __future__ import annotations

import os

import pytest
import torch

from engine import Callback, MisconfigurationException, Trainer
from plugins import BackboneFinetuning, BaseFinetuning, ModelCheckpoint
from tests.callback_support import QUIET, BackboneModel, weights


class EpochRecorder(Callback):
    """After the finetuning callback at every epoch start: the learning rates, and the backbone's weights."""

    def __init__(self):
        self.lrs, self.backbone = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])
        self.backbone.append(weights(pl_module.backbone))


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked"))


def test_backbone_is_frozen_then_unfrozen_at_its_epoch_with_a_new_param_group():
    recorder = EpochRecorder()
    model = BackboneModel()
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=2, train_bn=False)
    Trainer(max_epochs=4, callbacks=[finetuning, recorder], **QUIET).fit(model)
    # Epochs 0-1: one group (the head; BatchNorm too with train_bn's default in freeze); the backbone keeps its
    # weights. Epoch 2: a group at 0.1 * 0.1; epoch 3: doubled (multiplicative), below the head's 0.1.
    assert [len(lrs) for lrs in recorder.lrs] == [1, 1, 2, 2]
    assert recorder.lrs[2][1] == pytest.approx(0.01) and recorder.lrs[3][1] == pytest.approx(0.02)
    linear = [k for k in recorder.backbone[0] if k.startswith("0.") or k.startswith("3.")]
    assert all(torch.equal(recorder.backbone[0][k], recorder.backbone[2][k]) for k in linear)
    assert not torch.equal(recorder.backbone[2]["0.weight"], recorder.backbone[3]["0.weight"])
    assert all(p.requires_grad for name, p in model.backbone.named_parameters() if not name.startswith("1."))


def test_should_align_caps_the_backbone_rate_at_the_model_rate():
    recorder = EpochRecorder()
    Trainer(max_epochs=4, callbacks=[BackboneFinetuning(1, lambda epoch: 10.0), recorder], **QUIET).fit(
        BackboneModel())
    assert [round(lrs[-1], 6) for lrs in recorder.lrs[1:]] == [0.01, 0.1, 0.1]


def test_resume_restores_the_param_groups_and_trains_the_backbone_as_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    start = BackboneModel()
    initial = weights(start)

    def model():
        fresh = BackboneModel()
        fresh.load_state_dict(initial)
        return fresh

    straight = model()
    Trainer(max_epochs=4, callbacks=[BackboneFinetuning(1)], **QUIET).fit(straight)

    first = model()
    saver = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, filename="{epoch}")
    Trainer(max_epochs=2, callbacks=[BackboneFinetuning(1), saver], **{**QUIET, "enable_checkpointing": True}).fit(first)
    path = os.path.join(tmp_path, "epoch=1.ckpt")
    saved = torch.load(path, weights_only=True)
    assert len(saved["optimizer_states"][0]["param_groups"]) == 2  # the backbone's group is in the file

    recorder = EpochRecorder()
    resumed = model()
    Trainer(max_epochs=4, callbacks=[BackboneFinetuning(1), recorder], **QUIET).fit(resumed, ckpt_path=path)
    assert [round(lr, 6) for lr in recorder.lrs[0]] == [0.1, 0.02]  # the group and its rate are back
    assert all(p.requires_grad for p in resumed.backbone.parameters())  # and it trains
    assert _same(weights(resumed), weights(straight))


def test_the_helpers_freeze_filter_and_add_groups():
    model = BackboneModel()
    BaseFinetuning.freeze(model.backbone, train_bn=True)
    trainable = list(BaseFinetuning.filter_params(model.backbone, train_bn=True, requires_grad=True))
    assert trainable == [model.backbone[1].weight, model.backbone[1].bias]  # the BatchNorm stays trainable
    BaseFinetuning.freeze(model.backbone, train_bn=False)
    assert not model.backbone[1].track_running_stats
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.5)
    BaseFinetuning.unfreeze_and_add_param_group(model.backbone, optimizer, train_bn=False)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.05)  # the first group's / initial_denom_lr
    assert len(optimizer.param_groups[1]["params"]) == 4  # two Linear layers; not the BatchNorm
    BaseFinetuning.make_trainable(model.backbone)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.warns(UserWarning, match="already train in a parameter group"):
        assert BaseFinetuning.filter_on_optimizer(optimizer, model.head.parameters()) == []


def test_a_module_without_backbone_is_a_clear_error():
    class NoBackbone(BackboneModel):
        def __init__(self):
            super().__init__()
            self.trunk = self.backbone
            del self.backbone

        def forward(self, x):
            return self.head(self.trunk(x))

    with pytest.raises(MisconfigurationException, match="NoBackbone.backbone"):
        Trainer(max_epochs=1, callbacks=[BackboneFinetuning()], **QUIET).fit(NoBackbone())


def test_base_finetuning_must_be_subclassed():
    with pytest.raises(NotImplementedError, match="freeze_before_training"):
        Trainer(max_epochs=1, callbacks=[BaseFinetuning()], **QUIET).fit(BackboneModel())
