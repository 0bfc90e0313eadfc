"""BasePredictionWriter: a subclass writes trainer.predict's outputs to files, per batch or once at the end."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader

from engine import MisconfigurationException, Trainer
from plugins import BasePredictionWriter
from tests.callback_support import QUIET
from tests.models import ModernModel, make_data


class Predicting(ModernModel):
    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0])


class FileWriter(BasePredictionWriter):
    """Lightning's documented pattern: torch.save per batch, or everything at the end."""

    def __init__(self, output_dir, write_interval):
        super().__init__(write_interval)
        self.output_dir = output_dir

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        torch.save({"prediction": prediction, "indices": batch_indices},
                   os.path.join(self.output_dir, f"batch-{dataloader_idx}-{batch_idx}.pt"))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        torch.save({"predictions": predictions, "indices": batch_indices},
                   os.path.join(self.output_dir, f"predictions_{trainer.global_rank}.pt"))


def _loader(shuffle=False):
    return DataLoader(make_data(80), batch_size=32, shuffle=shuffle)


def test_batch_interval_writes_a_file_per_batch_with_its_sample_indices(tmp_path):
    model = Predicting()
    Trainer(callbacks=[FileWriter(tmp_path, "batch")], **QUIET).predict(model, dataloaders=_loader(shuffle=True))
    x = make_data(80).tensors[0]
    seen = []
    for batch_idx in range(3):  # 32 + 32 + 16 samples
        saved = torch.load(os.path.join(tmp_path, f"batch-0-{batch_idx}.pt"), weights_only=True)
        # Shuffled: the indices say which samples the rows are.
        assert torch.allclose(saved["prediction"], model(x[saved["indices"]]).detach(), atol=1e-6)
        seen += saved["indices"]
    assert sorted(seen) == list(range(80)) and seen != list(range(80))
    assert not os.path.exists(os.path.join(tmp_path, "predictions_0.pt"))


def test_epoch_interval_writes_every_prediction_once_at_the_end(tmp_path):
    model = Predicting()
    trainer = Trainer(callbacks=[FileWriter(tmp_path, "epoch")], **QUIET)
    returned = trainer.predict(model, dataloaders=_loader())
    saved = torch.load(os.path.join(tmp_path, "predictions_0.pt"), weights_only=True)
    assert len(saved["predictions"]) == 3
    assert all(torch.equal(a, b) for a, b in zip(saved["predictions"], returned))
    assert saved["indices"] == [[list(range(0, 32)), list(range(32, 64)), list(range(64, 80))]]
    assert sorted(os.listdir(tmp_path)) == ["predictions_0.pt"]


def test_batch_and_epoch_with_two_dataloaders(tmp_path):
    Trainer(callbacks=[FileWriter(tmp_path, "batch_and_epoch")], **QUIET).predict(
        Predicting(), dataloaders=[_loader(), DataLoader(make_data(16), batch_size=8)])
    assert sorted(os.listdir(tmp_path)) == ["batch-0-0.pt", "batch-0-1.pt", "batch-0-2.pt", "batch-1-0.pt",
                                            "batch-1-1.pt", "predictions_0.pt"]
    saved = torch.load(os.path.join(tmp_path, "predictions_0.pt"), weights_only=True)
    assert [len(p) for p in saved["predictions"]] == [3, 2]
    assert saved["indices"][1] == [list(range(8)), list(range(8, 16))]


def test_a_wrong_interval_is_named():
    with pytest.raises(MisconfigurationException, match="write_interval='step'"):
        FileWriter(".", "step")


def test_return_predictions_false_keeps_no_outputs_while_the_writer_still_gets_them(tmp_path):
    model = Predicting()
    trainer = Trainer(callbacks=[FileWriter(tmp_path, "epoch")], **QUIET)
    assert trainer.predict(model, dataloaders=_loader(), return_predictions=False) is None
    assert trainer.predict_loop.return_predictions is False and trainer.predict_loop.predictions == []
    saved = torch.load(os.path.join(tmp_path, "predictions_0.pt"), weights_only=True)
    assert len(saved["predictions"]) == 3  # the writer kept its own
    # The next predict keeps them again by default.
    assert len(trainer.predict(model, dataloaders=_loader())) == 3 and trainer.predict_loop.return_predictions
