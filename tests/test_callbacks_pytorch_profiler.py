"""profiler='pytorch': torch.profiler around the run; the operator table and a Chrome trace in the log dir."""
from __future__ import annotations

import glob
import json
import os

import pytest

from engine import MisconfigurationException, Trainer
from plugins.pytorch_profiler import PyTorchProfiler
from tests.callback_support import QUIET
from tests.models import ModernModel


class Sectioned(ModernModel):
    def training_step(self, batch, batch_idx):
        with self.trainer.profiler.profile("augment"):
            batch = [batch[0] * 1.0, batch[1]]
        return super().training_step(batch, batch_idx)


def test_profiler_pytorch_writes_a_trace_and_prints_the_operator_table(tmp_path, capsys):
    trainer = Trainer(profiler="pytorch", default_root_dir=tmp_path, max_epochs=1, limit_val_batches=0,
                      **QUIET)
    assert isinstance(trainer.profiler, PyTorchProfiler)
    trainer.fit(ModernModel())
    out = capsys.readouterr().out
    assert "PyTorchProfiler report — fit" in out and "aten::linear" in out
    traces = glob.glob(os.path.join(tmp_path, "fit-pytorch-profiler.*.pt.trace.json"))
    assert len(traces) == 1  # one window of 3 steps (the default schedule)
    with open(traces[0]) as handle:
        events = json.load(handle)["traceEvents"]
    names = {e.get("name", "") for e in events}
    assert sum(1 for n in names if n.startswith("ProfilerStep#")) == 3
    assert "[module] layer (Linear)" in names  # each submodule's forward is labelled


def test_an_instance_writes_its_table_and_labels_sections(tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="perf", schedule=None, export_to_chrome=False,
                               row_limit=-1)
    trainer = Trainer(profiler=profiler, max_epochs=1, limit_val_batches=0, **QUIET)
    trainer.fit(Sectioned())
    with open(os.path.join(tmp_path, "fit-perf.txt")) as handle:
        report = handle.read()
    assert "augment" in report and "aten::linear" in report
    assert not glob.glob(os.path.join(tmp_path, "*.json"))
    trainer.test(ModernModel(), verbose=False)  # each stage gets its own report
    assert os.path.exists(os.path.join(tmp_path, "test-perf.txt"))


def test_unknown_profile_arguments_are_named():
    with pytest.raises(MisconfigurationException, match="record_shape=.*torch.profiler.profile"):
        PyTorchProfiler(record_shape=True)
