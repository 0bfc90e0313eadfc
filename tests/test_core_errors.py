"""Bad input gets an error that names the hook and what was wrong, with the message on top."""
from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import engine
from engine import LightningModule, MisconfigurationException
from tests.core_support import quiet_trainer
from tests.models import SeedModel, make_loader

ENGINE_DIR = str(Path(engine.__file__).parent)


def fit_error(model, *loaders, **flags) -> MisconfigurationException:
    flags.setdefault("max_epochs", 1)
    with pytest.raises(MisconfigurationException) as info:
        quiet_trainer(**flags).fit(model, *loaders)
    return info.value


def engine_frames(exc: BaseException) -> list:
    """Traceback frames below ``Trainer._run`` that belong to the engine."""
    frames = traceback.extract_tb(exc.__traceback__)
    names = [f.name for f in frames]
    below = frames[names.index("_run") + 1:] if "_run" in names else frames
    return [f for f in below if f.filename.startswith(ENGINE_DIR)]


def test_dict_without_loss_lists_its_keys():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            return {"lose": torch.tensor(1.0), "log": {}}

    exc = fit_error(Model())
    message = str(exc)
    assert message.startswith("`training_step` returned a dict without a 'loss' key")
    assert "'lose'" in message and "'log'" in message
    assert exc.__cause__ is None and engine_frames(exc) == []  # the message is the story, not engine internals


def test_non_tensor_loss():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            return {"loss": 0.5}

    assert "`training_step` returned a loss of type float" in str(fit_error(Model()))

    class Bare(SeedModel):
        def training_step(self, batch, batch_idx):
            return "loss"

    assert "`training_step` returned str" in str(fit_error(Bare()))


def test_missing_configure_optimizers():
    class Model(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(8, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

    assert "Model has no `configure_optimizers`" in str(fit_error(Model(), make_loader(32, 16)))


def test_no_train_dataloader():
    class Model(SeedModel):
        train_dataloader = None

    message = str(fit_error(Model()))
    assert "No training data" in message and "train_dataloader()" in message


def test_empty_dataloader_with_length_zero():
    empty = DataLoader(TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
    assert len(empty) == 0
    assert "training dataloader yields no batch" in str(fit_error(SeedModel(), empty))


def test_empty_iterable_without_length():
    class Nothing(IterableDataset):
        def __iter__(self):
            return iter(())

    loader = DataLoader(Nothing(), batch_size=4)
    with pytest.raises(TypeError):
        len(loader)
    exc = fit_error(SeedModel(), loader)
    assert "training dataloader (DataLoader) yielded no batch in epoch 0" in str(exc)


def test_user_frames_stay_in_the_traceback():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            self.log("bad", "not a number")  # raises inside the user's step

    exc = fit_error(Model())
    assert "'bad'" in str(exc)
    assert "training_step" in [f.name for f in traceback.extract_tb(exc.__traceback__)]


def test_fraction_limit_on_an_iterable_without_length():
    class Endless(IterableDataset):
        def __iter__(self):
            return iter(torch.zeros(4, 8))

    assert "limit_train_batches" in str(fit_error(SeedModel(), DataLoader(Endless()), limit_train_batches=0.5))


def test_trainer_needs_a_lightning_module():
    with pytest.raises(MisconfigurationException, match="expects a LightningModule, got Linear"):
        quiet_trainer().fit(nn.Linear(2, 2))
