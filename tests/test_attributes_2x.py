"""Lightning 2.x attributes that its callbacks and modules read: ``trainer.is_last_batch``,
``checkpoint_callbacks``, ``early_stopping_callbacks``, ``enable_validation``, ``num_sanity_val_batches``,
``val_check_batch``, ``received_sigterm``; the module's ``example_input_array``, ``to_torchscript`` and
``strict_loading``."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from engine import Callback, Trainer
from engine.errors import MisconfigurationException
from plugins import EarlyStopping, ModelCheckpoint
from plugins.checkpoint_io import CheckpointError
from tests.models import ModernModel

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


def test_trainer_attributes_callbacks_read(tmp_path):
    seen = []

    class Watch(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((batch_idx, trainer.is_last_batch))

    first, second = ModelCheckpoint(dirpath=str(tmp_path)), ModelCheckpoint(dirpath=str(tmp_path / "b"))
    stop = EarlyStopping(monitor="val_loss", patience=5)
    trainer = Trainer(max_epochs=1, callbacks=[Watch(), first, second, stop], limit_train_batches=3,
                      num_sanity_val_steps=1, val_check_interval=2, default_root_dir=str(tmp_path), **QUIET)
    assert trainer.checkpoint_callbacks == [first, second] and trainer.checkpoint_callback is first
    assert trainer.early_stopping_callbacks == [stop]
    assert not trainer.received_sigterm and trainer.num_sanity_val_batches == []
    trainer.fit(ModernModel())
    assert seen == [(0, False), (1, False), (2, True)]
    assert trainer.enable_validation and trainer.num_sanity_val_batches == [1] and trainer.val_check_batch == 2
    bare = Trainer(max_epochs=1, limit_val_batches=0, **QUIET)
    bare.fit(ModernModel(n_train=64))
    assert not bare.enable_validation and bare.val_check_batch == 2  # every epoch end, as in Lightning 2.x


class Net(ModernModel):
    def __init__(self):
        super().__init__()
        self.example_input_array = torch.zeros(2, 8)


def test_to_torchscript_scripts_or_traces_and_saves(tmp_path):
    model = Net()
    assert ModernModel().example_input_array is None and model.example_input_array.shape == (2, 8)
    x = torch.randn(5, 8)
    scripted = model.to_torchscript(file_path=str(tmp_path / "m.pt"))
    assert model.training  # its mode is left as it was
    assert torch.allclose(scripted(x), model(x))
    assert torch.allclose(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x))
    traced = model.to_torchscript(method="trace")
    assert torch.allclose(traced(x), model(x))
    with pytest.raises(MisconfigurationException, match="set self.example_input_array"):
        ModernModel().to_torchscript(method="trace")
    with pytest.raises(MisconfigurationException, match="use 'script' or 'trace'"):
        model.to_torchscript(method="compile")


def test_strict_loading_false_evaluates_a_changed_model(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), limit_val_batches=0, **QUIET)
    trainer.fit(ModernModel(n_train=64))
    path = trainer.checkpoint_callback.best_model_path

    class Grown(ModernModel):
        def __init__(self, strict):
            super().__init__(n_train=64)
            self.extra = nn.Linear(2, 2)
            self.strict_loading = strict

    with pytest.raises(CheckpointError, match="missing in the checkpoint: extra.weight"):
        Trainer(**QUIET).test(Grown(strict=True), ckpt_path=path, verbose=False)
    grown = Grown(strict=False)
    Trainer(**QUIET).test(grown, ckpt_path=path, verbose=False)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(grown.layer.weight, saved["layer.weight"])  # what the checkpoint has, it loaded
