"""The registry stays inside pluggy's public contract: pluggy's own lists hold hookloop's call order, its
callers call the same implementations as the fast dispatch, and its hook-call monitoring sees a fit."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine import Callback, Trainer, hookimpl
from tests.models import ModernModel

ROOT = Path(__file__).resolve().parent.parent
QUIET = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
             num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1, max_epochs=1)


class Marked:
    """A plain plugin with one implementation per marker, recording its turn."""

    def __init__(self, log, name, order=0):
        self.log, self.name, self.__engine_order__ = log, name, order

    @hookimpl(tryfirst=True)
    def on_train_epoch_end(self, trainer):
        self.log.append(f"{self.name}:first")

    @hookimpl(trylast=True, specname="on_train_epoch_end")
    def last(self, trainer):
        self.log.append(f"{self.name}:last")

    @hookimpl(specname="on_train_epoch_end")
    def plain(self, trainer):
        self.log.append(f"{self.name}:plain")


class Named(Callback):
    """A callback with freely named parameters and Lightning's defaulted dataloader_idx."""

    def __init__(self, log):
        self.log = log

    @hookimpl(trylast=True)
    def on_train_epoch_end(self, trainer, model):
        self.log.append("callback:last")

    def on_validation_batch_end(self, trainer, model, outputs, batch, batch_idx, dataloader_idx=0):
        self.log.append(("val_batch", batch_idx, dataloader_idx))


def _trainer(log):
    plugins = [Marked(log, "early", order=-1), Marked(log, "a"), Marked(log, "b"), Marked(log, "late", order=5)]
    return Trainer(callbacks=[Named(log)], plugins=plugins, **QUIET)


EXPECTED = ["early:first", "a:first", "b:first", "late:first",
            "early:plain", "a:plain", "b:plain", "late:plain",
            # trylast: the same rule (lower __engine_order__, then callbacks before code plugins, list order)
            "early:last", "callback:last", "a:last", "b:last", "late:last"]


def test_pluggy_callers_and_the_dispatch_call_the_documented_order():
    log = []
    trainer = _trainer(log)
    module = ModernModel()
    trainer.hooks.on_train_epoch_end(trainer, module)
    ours = [entry for entry in log if isinstance(entry, str)]
    log.clear()
    trainer.registry.hook.on_train_epoch_end(trainer=trainer, pl_module=module)  # pluggy's own caller
    theirs = [entry for entry in log if isinstance(entry, str)]
    assert ours == theirs == EXPECTED
    listed = [name for name, _ in trainer.registry.call_order("on_train_epoch_end")
              if name in ("a", "b", "early", "late") or name.startswith("Named")]
    assert len(listed) == len(EXPECTED)


def test_pluggy_callers_pass_positional_and_defaulted_callback_arguments():
    log = []
    trainer = _trainer(log)
    trainer.registry.hook.on_validation_batch_end(trainer=trainer, pl_module=None, outputs=None, batch=None,
                                                  batch_idx=3, dataloader_idx=2)
    assert ("val_batch", 3, 2) in log


def test_hookcall_monitoring_sees_every_event_of_a_fit_then_the_fast_dispatch_returns():
    trainer = Trainer(**QUIET)
    fast_backward = trainer.hooks.backward
    seen = []
    undo = trainer.registry.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name),
                                                    lambda outcome, name, impls, kwargs: None)
    trainer.fit(ModernModel())
    for event in ("setup", "on_fit_start", "on_train_start", "on_train_epoch_start", "on_train_batch_start",
                  "run_training_batch", "training_step", "backward", "optimizer_step", "optimizer_zero_grad",
                  "on_train_batch_end", "on_validation_batch_end", "on_train_epoch_end", "on_fit_end", "teardown"):
        assert event in seen, event
    assert seen.count("training_step") == 2 and seen.count("on_train_batch_end") == 2
    undo()
    assert trainer.hooks.backward is fast_backward


def test_tracing_reports_the_fit():
    trainer = Trainer(**QUIET)
    lines = []
    trainer.registry.trace.root.setwriter(lines.append)
    undo = trainer.registry.enable_tracing()
    trainer.fit(ModernModel())
    undo()
    assert any("on_train_epoch_end" in line for line in lines)


def test_the_registry_writes_no_pluggy_internals():
    pattern = re.compile(r"\._(hookimpls|hookexec|inner_hookexec|name2plugin|verify_hook|add_hookimpl|remove_plugin|"
                         r"plugin_distinfo)\b|pluggy\._|\.(arg|kwarg)names\s*=[^=]")
    for path in sorted((ROOT / "engine").glob("*.py")) + sorted((ROOT / "plugins").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{number}: {line.strip()}"


def test_pluggy_queries_speak_of_the_registered_plugins():
    log = []
    plugin = Marked(log, "a")
    trainer = Trainer(plugins=[plugin], **QUIET)
    registry = trainer.registry
    assert registry.get_plugin("a") is plugin and registry.get_name(plugin) == "a"
    assert registry.is_registered(plugin) and plugin in registry.get_plugins()
    assert ("a", plugin) in registry.list_name_plugin()
    assert "on_train_epoch_end" in [caller.name for caller in registry.get_hookcallers(plugin)]
    registry.set_blocked("a")  # pluggy's blocking: unregisters it and keeps the name out
    assert not registry.is_registered(plugin) and registry.is_blocked("a")
    assert all(impl.plugin is not plugin for impl in registry.implementations("on_train_epoch_end"))
    assert registry.add(Marked(log, "a"), "a", "code") is None


@pytest.mark.parametrize("wrapper", [True, False], ids=["wrapper", "hookwrapper"])
def test_a_wrapper_with_freely_named_callback_parameters_still_wraps(wrapper):
    calls = []

    class Wrapping(Callback):
        if wrapper:
            @hookimpl(wrapper=True)
            def on_train_epoch_end(self, trainer, model):
                calls.append("before")
                result = yield
                calls.append("after")
                return result
        else:
            @hookimpl(hookwrapper=True)
            def on_train_epoch_end(self, trainer, model):
                calls.append("before")
                yield
                calls.append("after")

    Trainer(callbacks=[Wrapping()], **QUIET).fit(ModernModel())
    assert calls == ["before", "after"]
