"""The plugin system: plugins and callbacks in code, disabling, call order, typo errors, failures, dispatch."""
from __future__ import annotations

import pytest

from engine import Callback, PluginError, Trainer, hookimpl
from engine.listing import describe, format_report
from tests.models import ModernModel

QUIET = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
             num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1)


class Recorder:
    """A plain plugin recording (name, event) into a shared list."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    @hookimpl
    def on_train_epoch_end(self, trainer, pl_module):
        self.log.append(self.name)


class RecordingCallback(Callback):
    """A Callback recording its name on ``on_train_epoch_end`` (matched by method name)."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def on_train_epoch_end(self, trainer, pl_module):
        self.log.append(self.name)


class EpochEndModel(ModernModel):
    """A model whose own ``on_train_epoch_end`` hook records its turn."""

    def __init__(self, log):
        super().__init__()
        self.calls = log

    def on_train_epoch_end(self):
        self.calls.append("module")


# ---------------------------------------------------------------------------------------------
# plugins and callbacks in code
# ---------------------------------------------------------------------------------------------


def test_plugins_in_code_and_callbacks_run_in_list_order():
    log = []
    trainer = Trainer(max_epochs=1, callbacks=[RecordingCallback(log, "cb1"), RecordingCallback(log, "cb2")],
                      plugins=[Recorder(log, "p1"), Recorder(log, "p2")], **QUIET)
    trainer.fit(EpochEndModel(log))
    assert log == ["cb1", "cb2", "p1", "p2", "module"]
    # The report shows the same order (names are the plugins' `name` attributes).
    # (tryfirst implementations, such as the metrics plugin's epoch reduction, come before them)
    order = [name for name, marker in describe(trainer).events["on_train_epoch_end"] if marker != "tryfirst"]
    assert order[:4] == ["cb1", "cb2", "p1", "p2"]


def test_only_overridden_callback_methods_register():
    class OnlyOne(Callback):
        def on_fit_start(self, trainer, pl_module):
            pass

    trainer = Trainer(callbacks=[OnlyOne()], **QUIET)
    name = next(r.name for r in trainer.registry.records() if isinstance(r.plugin, OnlyOne))
    assert trainer.registry.records()[-1].hooks == ["on_fit_start"]
    assert all(name not in [n for n, _ in trainer.registry.call_order(e)]
               for e in ("on_train_batch_end", "on_train_epoch_end", "on_exception"))


class LightningStyleCallback(Callback):
    """Written for Lightning 2.x; only `from lightning.pytorch import Callback` was changed."""

    def __init__(self):
        self.batches = 0
        self.loss_sum = 0.0
        self.val_epochs = 0
        self.exceptions = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1
        self.loss_sum += float(outputs["loss"].detach())

    def on_validation_epoch_end(self, trainer, pl_module):
        self.val_epochs += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state_dict):
        self.batches = state_dict["batches"]

    def on_exception(self, trainer, pl_module, exception):
        self.exceptions.append(exception)


class DictModel(ModernModel):
    """``training_step`` returns ``{"loss": ...}``, the form Lightning 2.x hands to ``on_train_batch_end``."""

    def training_step(self, batch, batch_idx):
        return {"loss": super().training_step(batch, batch_idx)}


def test_lightning_2x_callback_works_unchanged(tmp_path):
    cb = LightningStyleCallback()
    trainer = Trainer(max_epochs=2, callbacks=[cb], **QUIET)
    trainer.fit(DictModel())
    assert cb.batches == 4 and cb.val_epochs == 2 and cb.loss_sum > 0 and cb.exceptions == []

    # on_exception is called with the error.
    class Broken(DictModel):
        def training_step(self, batch, batch_idx):
            raise ValueError("bad batch")

    failing = LightningStyleCallback()
    with pytest.raises(ValueError, match="bad batch") as info:
        Trainer(max_epochs=1, callbacks=[failing], **QUIET).fit(Broken())
    assert failing.exceptions == [info.value]


def test_lightning_2x_callback_state_travels_in_checkpoints(tmp_path):
    cb = LightningStyleCallback()
    trainer = Trainer(max_epochs=2, callbacks=[cb], **QUIET)
    if trainer.hooks.save_checkpoint is None:
        pytest.skip("no built-in plugin saves checkpoints in this build")
    trainer.fit(DictModel())
    path = str(tmp_path / "cb.ckpt")
    trainer.save_checkpoint(path)
    restored = LightningStyleCallback()
    Trainer(max_epochs=2, callbacks=[restored], **QUIET).fit(DictModel(), ckpt_path=path)
    assert restored.batches == 4  # restored by load_state_dict; no batch left to run after two epochs


# ---------------------------------------------------------------------------------------------
# disabling
# ---------------------------------------------------------------------------------------------


def test_disable_builtin_and_replace_it():
    default_names = Trainer(**QUIET).registry.names()
    assert "metrics" in default_names
    trainer = Trainer(disable_plugins=["metrics"], **QUIET)
    assert "metrics" not in trainer.registry.names()

    # Replace a built-in: the progress bar's place is taken by the user's own.
    class MyBar:
        name = "my_bar"

        def __init__(self):
            self.batches = 0

        @hookimpl
        def on_train_batch_end(self, trainer, batch_idx):
            self.batches += 1

    bar = MyBar()
    trainer = Trainer(max_epochs=1, enable_progress_bar=True, disable_plugins=["progress_bar"], plugins=[bar],
                      **{k: v for k, v in QUIET.items() if k != "enable_progress_bar"})
    assert "progress_bar" not in trainer.registry.names() and trainer.plugin("my_bar") is bar
    trainer.fit(ModernModel())
    assert bar.batches == 2


def test_disable_unknown_name_lists_known_names():
    with pytest.raises(PluginError) as info:
        Trainer(disable_plugins=["metrix"], **QUIET)
    message = str(info.value)
    assert "'metrix'" in message and "Did you mean `metrics`?" in message
    for name in ("metrics", "optimization", "model_hooks"):
        assert name in message.split("Known plugins:")[1]


# ---------------------------------------------------------------------------------------------
# call order
# ---------------------------------------------------------------------------------------------


def test_order_is_by_tier_whenever_plugins_are_registered():
    """Plugins added late (the module's adapter at fit time, a callback after construction) still
    run in the documented tier order; inside a tier the one registered last runs first."""
    log = []
    trainer = Trainer(max_epochs=1, callbacks=[RecordingCallback(log, "cb1"), RecordingCallback(log, "cb2")],
                      plugins=[Recorder(log, "p1")], **QUIET)
    trainer.registry.add(Recorder(log, "late_builtin"), "late_builtin", "builtin")
    trainer.registry.add(RecordingCallback(log, "late_cb"), "late_cb", "callback")
    trainer.registry.add(Recorder(log, "late_code"), "late_code", "code")
    trainer.fit(EpochEndModel(log))
    assert log == ["late_cb", "cb1", "cb2", "late_code", "p1", "module", "late_builtin"]
    # pluggy's own caller agrees with the fast dispatch (the module's hooks stay until the next run).
    log.clear()
    trainer.registry.hook.on_train_epoch_end(trainer=trainer, pl_module=None)
    assert log == ["late_cb", "cb1", "cb2", "late_code", "p1", "module", "late_builtin"]


def test_tryfirst_trylast_and_engine_order():
    log = []

    class First(Recorder):
        @hookimpl(tryfirst=True)
        def on_train_epoch_end(self, trainer, pl_module):
            self.log.append(self.name)

    class Last(Recorder):
        @hookimpl(trylast=True)
        def on_train_epoch_end(self, trainer, pl_module):
            self.log.append(self.name)

    class LastCallback(RecordingCallback):
        @hookimpl(trylast=True)  # the Callback equivalent: the marker on the method
        def on_train_epoch_end(self, trainer, pl_module):
            self.log.append(self.name)

    class VeryLastCallback(LastCallback):
        __engine_order__ = 100  # after every trylast implementation of lower order

    class EarlyPlain(RecordingCallback):
        __engine_order__ = -1  # before plain implementations of order 0, whatever their tier

    trainer = Trainer(
        max_epochs=1,
        callbacks=[VeryLastCallback(log, "very_last_cb"), LastCallback(log, "last_cb"),
                   RecordingCallback(log, "cb"), First(log, "first_as_callback")],
        plugins=[Last(log, "last_plugin"), First(log, "first_plugin"), EarlyPlain(log, "early_plugin")],
        **QUIET,
    )
    trainer.fit(EpochEndModel(log))
    assert log == ["first_as_callback", "first_plugin", "early_plugin", "cb", "module",
                   "last_cb", "last_plugin", "very_last_cb"]
    markers = dict(trainer.registry.call_order("on_train_epoch_end"))
    assert markers["first_plugin"] == "tryfirst" and markers["very_last_cb"] == "trylast" and markers["cb"] == ""


class StandInEarlyStopping(Callback):
    """Marks its epoch-end hook trylast, as the built-in EarlyStopping does."""

    def __init__(self, log):
        self.log = log

    @hookimpl(trylast=True)
    def on_train_epoch_end(self, trainer, pl_module):
        self.log.append("early_stopping")


class StandInCheckpoint(Callback):
    """trylast plus ``__engine_order__ = 100``, as the built-in ModelCheckpoint does."""

    __engine_order__ = 100

    def __init__(self, log):
        self.log = log

    @hookimpl(trylast=True)
    def on_train_epoch_end(self, trainer, pl_module):
        self.log.append("checkpoint")


@pytest.mark.parametrize("callbacks_first", ["checkpoint", "early_stopping"])
@pytest.mark.parametrize("checkpoint_tier", ["callback", "builtin"])
def test_checkpoint_runs_after_early_stopping_and_module_hook(callbacks_first, checkpoint_tier):
    log = []
    es, ckpt = StandInEarlyStopping(log), StandInCheckpoint(log)
    callbacks = [ckpt, es] if callbacks_first == "checkpoint" else [es, ckpt]
    if checkpoint_tier == "builtin":
        callbacks.remove(ckpt)
    trainer = Trainer(max_epochs=1, callbacks=callbacks, **QUIET)
    if checkpoint_tier == "builtin":
        trainer.registry.add(ckpt, "stand_in_checkpoint", "builtin")
    trainer.fit(EpochEndModel(log))
    assert log == ["module", "early_stopping", "checkpoint"]


def test_real_checkpoint_runs_after_real_early_stopping():
    import plugins as plugins_mod

    if not hasattr(plugins_mod, "EarlyStopping") or not hasattr(plugins_mod, "ModelCheckpoint"):
        pytest.skip("the built-in EarlyStopping/ModelCheckpoint are not available")
    flags = {k: v for k, v in QUIET.items() if k != "enable_checkpointing"}
    es = lambda: plugins_mod.EarlyStopping(monitor="val_loss", patience=3)  # noqa: E731
    ckpt = lambda: plugins_mod.ModelCheckpoint(monitor="val_loss")  # noqa: E731
    checked = 0
    # user ES + built-in default checkpoint; both as user callbacks, in either list order
    for callbacks in ([es()], [ckpt(), es()], [es(), ckpt()]):
        trainer = Trainer(callbacks=callbacks, **flags)
        for event in ("on_train_epoch_end", "on_validation_end"):
            order = [trainer.plugin(n) for n, _ in trainer.registry.call_order(event)]
            kinds = [type(p).__name__ for p in order if type(p).__name__ in ("EarlyStopping", "ModelCheckpoint")]
            if "EarlyStopping" in kinds and "ModelCheckpoint" in kinds:
                assert kinds.index("EarlyStopping") < kinds.index("ModelCheckpoint"), (event, kinds)
                assert kinds[-1] == "ModelCheckpoint"
                checked += 1
    assert checked >= 3


def test_wrappers_are_outermost_and_ordered():
    log = []

    class Wrap:
        def __init__(self, name):
            self.name = name

        @hookimpl(wrapper=True)
        def on_train_epoch_end(self, trainer, pl_module):
            log.append(f"{self.name}:before")
            result = yield
            log.append(f"{self.name}:after")
            return result

    trainer = Trainer(max_epochs=1, plugins=[Wrap("outer"), Wrap("inner")],
                      callbacks=[RecordingCallback(log, "cb")], **QUIET)
    trainer.fit(ModernModel())
    assert log == ["outer:before", "inner:before", "cb", "inner:after", "outer:after"]
    assert [m for _, m in trainer.registry.call_order("on_train_epoch_end")][:2] == ["wrapper", "wrapper"]


# ---------------------------------------------------------------------------------------------
# typos never pass silently
# ---------------------------------------------------------------------------------------------


def test_callback_method_with_no_event():
    class Typo(Callback):
        def on_train_epoch_ned(self, trainer, pl_module):
            pass

    with pytest.raises(PluginError) as info:
        Trainer(callbacks=[Typo()], **QUIET)
    message = str(info.value)
    assert "Typo" in message and "`on_train_epoch_ned`" in message and "Did you mean `on_train_epoch_end`?" in message


def test_hookimpl_with_no_spec():
    class Plugin:
        name = "typo_plugin"

        @hookimpl
        def on_validaton_epoch_end(self, trainer, pl_module):
            pass

    with pytest.raises(PluginError) as info:
        Trainer(plugins=[Plugin()], **QUIET)
    message = str(info.value)
    assert "'typo_plugin'" in message and "`on_validaton_epoch_end`" in message
    assert "Did you mean `on_validation_epoch_end`?" in message


def test_hookimpl_with_no_spec_outside_trainer():
    class Plugin:
        @hookimpl
        def trainig_step(self, trainer):
            pass

    registry = Trainer(**QUIET).registry
    before = registry.names()
    with pytest.raises(PluginError, match="Did you mean `training_step`"):
        registry.add(Plugin(), "late", "code")
    assert registry.names() == before and registry.dispatch.training_step is not None


def test_argument_the_event_does_not_pass():
    class Plugin:
        name = "arg_typo"

        @hookimpl
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_indx):
            pass

    with pytest.raises(PluginError) as info:
        Trainer(plugins=[Plugin()], **QUIET)
    message = str(info.value)
    assert "'arg_typo'" in message and "on_train_batch_end()" in message and "'batch_indx'" in message
    assert "Did you mean `batch_idx`?" in message


def test_unmarked_event_method_on_plain_plugin():
    class Forgot:
        name = "forgot"

        def on_train_epoch_end(self, trainer, pl_module):
            pass

    with pytest.raises(PluginError, match="'forgot'.*`on_train_epoch_end`.*not marked `@hookimpl`"):
        Trainer(plugins=[Forgot()], **QUIET)


# ---------------------------------------------------------------------------------------------
# a plugin that raises
# ---------------------------------------------------------------------------------------------


def test_raising_plugin_is_named_and_on_exception_still_runs():
    class Exploder:
        name = "exploder"

        @hookimpl
        def on_train_epoch_start(self, trainer, pl_module):
            raise RuntimeError("kaboom")

    class AlsoListens:
        def __init__(self):
            self.seen = []

        @hookimpl
        def on_exception(self, trainer, exception):
            self.seen.append(exception)

    cb, listener = LightningStyleCallback(), AlsoListens()
    with pytest.raises(RuntimeError, match="kaboom") as info:
        Trainer(max_epochs=1, plugins=[Exploder(), listener], callbacks=[cb], **QUIET).fit(DictModel())
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "'exploder'" in notes and "on_train_epoch_start" in notes
    assert cb.exceptions == [info.value] and listener.seen == [info.value]


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def test_dispatch_is_none_for_unimplemented_events_and_follows_registration():
    trainer = Trainer(**QUIET)
    registry, hooks = trainer.registry, trainer.hooks
    empty = [e for e in registry.events() if not registry.call_order(e)]
    assert empty, "a default Trainer leaves some events unimplemented"
    assert all(getattr(hooks, e) is None for e in empty)
    event = next(e for e in empty if getattr(registry.hook, e).spec.argnames[:1] == ("trainer",))
    seen = []

    def impl(self, trainer):
        seen.append((self.tag, trainer))

    One = type("One", (), {"tag": "one", event: hookimpl(impl)})
    Two = type("Two", (Callback,), {"tag": "two", event: impl})  # matched by name
    nargs = len(getattr(registry.hook, event).spec.argnames)

    registry.add(One(), "one", "code")
    single = getattr(hooks, event)
    assert single is not None
    single(trainer, *[None] * (nargs - 1))
    registry.add(Two(), "two", "callback")
    assert getattr(hooks, event) is not single  # rebuilt on register
    getattr(hooks, event)(trainer, *[None] * (nargs - 1))
    assert seen == [("one", trainer), ("two", trainer), ("one", trainer)]
    registry.remove("one")
    registry.unregister(name="two")
    assert getattr(hooks, event) is None  # and on unregister
    # A plain AttributeError (Dispatch has no __getattr__, so CPython specialises event reads);
    # calling by name suggests the nearest events.
    with pytest.raises(AttributeError, match="on_train_epoch_ned"):
        hooks.on_train_epoch_ned
    with pytest.raises(AttributeError, match="Did you mean `on_train_epoch_end`"):
        hooks.call("on_train_epoch_ned", trainer, None)


def test_plugin_report_from_python():
    trainer = Trainer(callbacks=[RecordingCallback([], "cb")], **QUIET)
    report = describe(trainer)
    origins = {p.name: p.origin for p in report.plugins}
    assert origins["metrics"] == "built-in" and origins["cb"].startswith("code")
    assert [e for e in report.events["on_train_epoch_end"] if e[1] != "tryfirst"][0] == ("cb", "")
    assert "run_training_batch" in report.firstresult
    text = format_report(report)
    assert "on_train_epoch_end" in text and "2. cb" in text  # after the metrics plugin's tryfirst reduction
    assert trainer.plugin_manager is trainer.registry


def test_culprit_tells_instances_of_one_class_apart():
    class Flaky:
        def __init__(self, name, fail):
            self.name, self.fail = name, fail

        @hookimpl
        def on_train_epoch_start(self, trainer):
            if self.fail:
                raise RuntimeError(f"{self.name} failed")

    with pytest.raises(RuntimeError, match="second failed") as info:
        Trainer(max_epochs=1, plugins=[Flaky("first", False), Flaky("second", True)], **QUIET).fit(DictModel())
    assert "plugin 'second'" in "\n".join(info.value.__notes__)


def test_engine_order_must_be_an_int():
    class Odd(RecordingCallback):
        __engine_order__ = "last"

    with pytest.raises(PluginError, match="__engine_order__ = 'last'"):
        Trainer(callbacks=[Odd([], "odd")], **QUIET)


@pytest.mark.parametrize("flag", ["callbacks", "plugins"])
def test_a_class_given_instead_of_an_instance_is_an_error_naming_it(flag):
    from plugins import EarlyStopping

    with pytest.raises(PluginError, match=rf"Trainer\({flag}=\[...\]\) item 1 is the class EarlyStopping, not an "
                                          rf"instance of it. Pass an instance: {flag}=\[EarlyStopping\(...\)\]"):
        Trainer(**{flag: [RecordingCallback([], "ok"), EarlyStopping]}, **QUIET)


@pytest.mark.parametrize("flag", ["callbacks", "plugins"])
def test_an_object_implementing_no_event_is_an_error(flag):
    with pytest.raises(PluginError, match=rf"item 0 \(object .*\) is no engine.Callback and implements no event"):
        Trainer(**{flag: [object()]}, **QUIET)


def test_a_callback_overriding_nothing_is_still_accepted():
    Trainer(callbacks=[Callback()], **QUIET)  # Lightning accepts it (it may carry state only)
