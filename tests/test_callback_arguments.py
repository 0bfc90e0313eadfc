"""Callback methods that declare an event argument with a default (``dataloader_idx=0``) still receive it."""
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine import Callback, Trainer
from tests.models import ModernModel


class TwoLoaderModel(ModernModel):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return super().validation_step(batch, batch_idx)


def test_defaulted_dataloader_idx_gets_the_real_index():
    seen = []

    class Recorder(Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            seen.append((dataloader_idx, batch_idx))

    data = TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long))
    loaders = [DataLoader(data, batch_size=4), DataLoader(data, batch_size=4)]
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[Recorder()])
    trainer.validate(TwoLoaderModel(), dataloaders=loaders)
    assert seen == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_defaulted_argument_after_a_foreign_one_is_left_alone():
    seen = []

    class Recorder(Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, scale=2, dataloader_idx=0):
            seen.append((scale, dataloader_idx))

    data = TensorDataset(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[Recorder()])
    trainer.validate(TwoLoaderModel(), dataloaders=[DataLoader(data, batch_size=4)] * 2)
    # `scale` is no event argument, so nothing after it can be passed by position.
    assert seen == [(2, 0), (2, 0)]


def test_callback_parameters_are_matched_by_position_like_lightning():
    # Lightning calls callback hooks positionally: its users name the parameters as they like.
    seen = []

    class Renamed(Callback):
        def on_train_start(self, trainer, model):
            seen.append(("start", model is trainer.lightning_module))

        def on_train_batch_end(self, trainer, module, out, batch, idx):
            seen.append(("batch", module is trainer.lightning_module, out["loss"].ndim, idx))

        def on_validation_batch_end(self, trainer, module, out, batch, idx, dataloader_idx=0):
            seen.append(("val", idx, dataloader_idx))

    data = TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long))
    loaders = [DataLoader(data, batch_size=4), DataLoader(data, batch_size=4)]
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[Renamed()])
    trainer.validate(TwoLoaderModel(), dataloaders=loaders)
    assert seen == [("val", 0, 0), ("val", 1, 0), ("val", 0, 1), ("val", 1, 1)]
    seen.clear()
    Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
            enable_checkpointing=False, callbacks=[Renamed()]).fit(ModernModel())
    assert seen == [("start", True), ("batch", True, 0, 0), ("batch", True, 0, 1)]


def test_a_method_with_more_required_parameters_than_the_event_is_still_an_error():
    import pytest

    from engine.errors import PluginError

    class TooMany(Callback):
        def on_train_start(self, trainer, pl_module, extra):
            pass

    with pytest.raises(PluginError, match="extra"):
        Trainer(logger=False, callbacks=[TooMany()])
