"""Bad input gets an error that names the hook and what was wrong, with the message on top."""
from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import engine
from engine import Callback, LightningModule, MisconfigurationException
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


class _PerSampleLoss(SeedModel):
    """Returns the unreduced loss: one value per sample (a common slip)."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y, reduction="none")


class _RecordBackward(Callback):
    def on_before_backward(self, trainer, pl_module, loss):
        self.seen = tuple(loss.shape)


@pytest.mark.parametrize("listened", [False, True], ids=["nothing listening", "on_before_backward listened"])
def test_a_loss_that_is_not_a_scalar_is_rejected_naming_training_step(listened):
    """With nothing listening the fast path checks the shape only when backward fails; either way
    the error is the step's, with torch's own as its cause on the fast path."""
    callbacks = [_RecordBackward()] if listened else []
    exc = fit_error(_PerSampleLoss(), callbacks=callbacks)
    assert "`training_step` returned a loss of shape (32,); it must be a scalar" in str(exc)
    if listened:
        assert not hasattr(callbacks[0], "seen")  # rejected before any backward event
    else:
        assert isinstance(exc.__cause__, RuntimeError)


def test_a_one_element_loss_trains():
    """A loss of shape (1,) back-propagates like a 0-d one (as validated_loss has always allowed)."""
    class OneElement(SeedModel):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y).reshape(1)

    model = OneElement()
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model)
    assert trainer.global_step == 8 and not torch.equal(before, model.layer.weight)


def test_a_loss_without_a_graph_fails_with_torchs_error():
    """A scalar that cannot be back-propagated is torch's error to report, unchanged."""
    class Detached(SeedModel):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y).detach()

    with pytest.raises(RuntimeError, match="does not require grad"):
        quiet_trainer(max_epochs=1).fit(Detached())


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


def test_a_dataset_or_an_int_instead_of_a_dataloader_is_named():
    dataset = TensorDataset(torch.zeros(8, 8), torch.zeros(8, dtype=torch.long))

    class ReturnsDataset(SeedModel):
        def train_dataloader(self):
            return dataset  # iter() would walk it sample by sample through __getitem__

    class ReturnsInt(SeedModel):
        def val_dataloader(self):
            return 5

    message = str(fit_error(ReturnsDataset()))
    assert message == ("The train data from `ReturnsDataset.train_dataloader()` is a TensorDataset, which is not "
                       "iterable: it is a Dataset, not a DataLoader: wrap it, DataLoader(dataset, batch_size=...).")
    assert "`ReturnsInt.val_dataloader()` is an int 5, which is not iterable: give a torch.utils.data.DataLoader" \
        in str(fit_error(ReturnsInt()))
    assert "from trainer.fit(train_dataloaders=...) is a TensorDataset" in str(fit_error(SeedModel(), dataset))
    with pytest.raises(MisconfigurationException, match=r"test data from trainer\.test\(dataloaders=\.\.\.\) is a "
                                                        r"float 2\.5, which is not iterable"):
        quiet_trainer().test(SeedModel(), dataloaders=2.5)


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
