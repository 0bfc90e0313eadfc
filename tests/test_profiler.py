"""The profiler plugin: per-event and per-implementation timings, and nothing at all when off."""
from __future__ import annotations

import re

import pytest
import torch

from engine import Callback, Trainer, hookimpl
from engine.errors import MisconfigurationException
from plugins.profiler import AdvancedProfiler, SimpleProfiler
from tests.models import ModernModel

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0, limit_val_batches=0, max_epochs=1, limit_train_batches=4)


class BatchCounter(Callback):
    """A user callback: its row must appear under ``on_train_batch_end``."""

    name = "batch_counter"

    def __init__(self) -> None:
        self.calls = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls += 1


def _row(report: str, label: str) -> list:
    """The ``(calls, total, mean)`` of the first row whose label starts with ``label``."""
    for line in report.splitlines():
        if line.startswith(label):
            numbers = line[58:].split()
            return [int(numbers[0]), float(numbers[1]), float(numbers[2])]
    raise AssertionError(f"no row {label!r} in:\n{report}")


def _rows_under(report: str, event: str) -> dict:
    """``{implementation label: calls}`` for the indented rows under ``event``'s row."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split(" ")[0] == event)
    rows = {}
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        rows[line[:58].strip()] = int(line[58:].split()[0])
    return rows


def test_simple_profiler_prints_events_and_each_plugin(capsys):
    counter = BatchCounter()
    trainer = Trainer(profiler="simple", callbacks=[counter], **QUIET)
    trainer.fit(ModernModel())
    out = capsys.readouterr().out
    assert isinstance(trainer.profiler, SimpleProfiler)
    assert "hookloop profiler report — fit" in out
    # Each event with its calls, and each plugin implementation below it.
    assert _row(out, "run_training_batch")[0] == 4
    assert _rows_under(out, "run_training_batch") == {"optimization (OptimizationPlugin)": 4}
    assert _rows_under(out, "training_step") == {"model_hooks (ModelHooksPlugin)": 4}
    assert _rows_under(out, "backward")["optimization (OptimizationPlugin)"] == 4
    under_batch_end = _rows_under(out, "on_train_batch_end")
    assert under_batch_end["batch_counter (BatchCounter)"] == 4
    # ModernModel logs each step: the step-value sender joined at the first batch and ran at every batch end.
    assert _rows_under(out, "on_batch_end")["step_values (StepValueSender)"] == 4
    assert _row(out, "on_train_batch_end")[0] == 4  # the event once per batch, not once per implementation
    # Mean is total / calls (of the recorded, unrounded total).
    calls, total = trainer.profiler.stats[("run_training_batch", "")]
    assert _row(out, "run_training_batch")[2] == pytest.approx(total / calls * 1e6, abs=0.06)
    # The split of the training loop: inside and outside the model, adding up to 100%.
    inside = float(re.search(r"in the model .*: ([\d.]+)%", out).group(1))
    outside = float(re.search(r"outside the model .*: ([\d.]+)%", out).group(1))
    assert "training loop: 4 batches" in out
    assert 0 < inside <= 100 and 0 <= outside < 100
    assert inside + outside == pytest.approx(100, abs=0.2)
    assert counter.calls == 4


def test_wrapper_implementations_are_timed_one_by_one(capsys):
    class StepWrapper:
        """A pluggy wrapper around training_step: that event then goes through pluggy's caller."""

        name = "step_wrapper"

        def __init__(self) -> None:
            self.seen = 0

        @hookimpl(wrapper=True)
        def training_step(self, trainer, pl_module, batch, batch_idx, optimizer_idx):
            self.seen += 1
            return (yield)

    wrapper = StepWrapper()
    trainer = Trainer(profiler="simple", plugins=[wrapper], **QUIET)
    trainer.fit(ModernModel())
    out = capsys.readouterr().out
    rows = _rows_under(out, "training_step")
    assert rows["model_hooks (ModelHooksPlugin)"] == 4
    assert rows["step_wrapper (StepWrapper)"] == 4
    assert wrapper.seen == 4 and trainer.global_step == 4  # the wrapper still wraps; training still trains


def test_profiler_off_registers_and_wraps_nothing():
    trainer = Trainer(**QUIET)
    assert "profiler" not in trainer.registry.names()
    assert trainer.registry.dispatch.wrap is None
    assert trainer.profiler is None
    impl = next(i for i in trainer.registry.implementations("backward") if i.plugin_name == "optimization")
    assert trainer.hooks.backward is impl.function  # the plugin's own method, no timer around it
    pluggy_impl = next(i for i in trainer.registry.hook.backward.get_hookimpls() if i.plugin_name == "optimization")
    assert pluggy_impl.function is impl.function  # and pluggy calls that same method

    on = Trainer(profiler="simple", **QUIET)
    on_impl = next(i for i in on.registry.implementations("backward") if i.plugin_name == "optimization")
    assert on.hooks.backward is not on_impl.function  # a timer around it
    assert on_impl.function.__func__ is impl.function.__func__  # the plugin's own method, untouched


def test_advanced_profiler_adds_a_cprofile_report(capsys):
    trainer = Trainer(profiler="advanced", **QUIET)
    trainer.fit(ModernModel())
    out = capsys.readouterr().out
    assert isinstance(trainer.profiler, AdvancedProfiler)
    assert "run_training_batch" in out  # the event table is there too
    assert "cProfile, by cumulative time:" in out
    assert "function calls" in out and "cumulative" in out
    assert "training_step" in out.split("cProfile, by cumulative time:")[1]


def test_profiler_name_typo_is_an_error():
    with pytest.raises(MisconfigurationException, match=r"profiler='simpel'.*Did you mean.*simple"):
        Trainer(profiler="simpel")
    with pytest.raises(MisconfigurationException, match="instance"):
        Trainer(profiler=SimpleProfiler)


def test_profiler_instance_writes_report_and_times_sections(tmp_path, capsys):
    class Sectioned(ModernModel):
        def training_step(self, batch, batch_idx):
            with self.trainer.profiler.profile("my_section"):
                return super().training_step(batch, batch_idx)

    profiler = SimpleProfiler(dirpath=str(tmp_path / "perf"), filename="report")
    trainer = Trainer(profiler=profiler, **QUIET)
    assert trainer.profiler is profiler
    trainer.fit(Sectioned())
    text = (tmp_path / "perf" / "fit-report.txt").read_text()
    assert "sections timed with profiler.profile(...)" in text
    assert _row(text, "  my_section")[0] == 4
    assert text.strip() == capsys.readouterr().out.strip()


def test_errors_still_name_the_plugin_with_the_profiler_on():
    class Broken(Callback):
        name = "broken_cb"

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            raise RuntimeError("boom")

    trainer = Trainer(profiler="simple", callbacks=[Broken()], **QUIET)
    with pytest.raises(RuntimeError, match="boom") as info:
        trainer.fit(ModernModel())
    assert any("broken_cb" in note for note in getattr(info.value, "__notes__", []))


def test_profiler_reports_each_stage_separately(capsys):
    trainer = Trainer(profiler="simple", **dict(QUIET, limit_val_batches=2))
    model = ModernModel()
    trainer.fit(model)
    fit_out = capsys.readouterr().out
    trainer.validate(model)
    val_out = capsys.readouterr().out
    assert "report — fit" in fit_out and "report — validate" in val_out
    assert "run_training_batch" not in val_out  # counters start again for every stage
    assert _row(val_out, "evaluation_step")[0] == 2
    torch.set_num_threads(1)
