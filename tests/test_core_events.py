"""The event catalogue and the order in which a fit emits it; behaviour hooks a plugin replaces."""
from __future__ import annotations

import inspect
import sys

import pytest
import torch

from engine import Callback, LightningModule, Trainer, hookimpl, hookspecs
from engine.markers import SKIPPED_BATCH
from plugins.model_hooks import ModuleHooks
from tests.core_support import Recorder, quiet_trainer
from tests.models import SeedModel

#: Lightning 2.x ``Callback`` hooks and the seed-era ones, with Lightning's argument names.
LIGHTNING_CALLBACK_API = {
    "setup": ("trainer", "pl_module", "stage"),
    "teardown": ("trainer", "pl_module", "stage"),
    "on_fit_start": ("trainer", "pl_module"),
    "on_fit_end": ("trainer", "pl_module"),
    "on_sanity_check_start": ("trainer", "pl_module"),
    "on_sanity_check_end": ("trainer", "pl_module"),
    "on_train_batch_start": ("trainer", "pl_module", "batch", "batch_idx"),
    "on_train_batch_end": ("trainer", "pl_module", "outputs", "batch", "batch_idx"),
    "on_train_epoch_start": ("trainer", "pl_module"),
    "on_train_epoch_end": ("trainer", "pl_module"),
    "on_validation_epoch_start": ("trainer", "pl_module"),
    "on_validation_epoch_end": ("trainer", "pl_module"),
    "on_test_epoch_start": ("trainer", "pl_module"),
    "on_test_epoch_end": ("trainer", "pl_module"),
    "on_predict_epoch_start": ("trainer", "pl_module"),
    "on_predict_epoch_end": ("trainer", "pl_module"),
    "on_validation_batch_start": ("trainer", "pl_module", "batch", "batch_idx", "dataloader_idx"),
    "on_validation_batch_end": ("trainer", "pl_module", "outputs", "batch", "batch_idx", "dataloader_idx"),
    "on_test_batch_start": ("trainer", "pl_module", "batch", "batch_idx", "dataloader_idx"),
    "on_test_batch_end": ("trainer", "pl_module", "outputs", "batch", "batch_idx", "dataloader_idx"),
    "on_predict_batch_start": ("trainer", "pl_module", "batch", "batch_idx", "dataloader_idx"),
    "on_predict_batch_end": ("trainer", "pl_module", "outputs", "batch", "batch_idx", "dataloader_idx"),
    "on_train_start": ("trainer", "pl_module"),
    "on_train_end": ("trainer", "pl_module"),
    "on_validation_start": ("trainer", "pl_module"),
    "on_validation_end": ("trainer", "pl_module"),
    "on_test_start": ("trainer", "pl_module"),
    "on_test_end": ("trainer", "pl_module"),
    "on_predict_start": ("trainer", "pl_module"),
    "on_predict_end": ("trainer", "pl_module"),
    "on_exception": ("trainer", "pl_module", "exception"),
    "on_save_checkpoint": ("trainer", "pl_module", "checkpoint"),
    "on_load_checkpoint": ("trainer", "pl_module", "checkpoint"),
    "on_before_backward": ("trainer", "pl_module", "loss"),
    "on_after_backward": ("trainer", "pl_module"),
    "on_before_optimizer_step": ("trainer", "pl_module", "optimizer"),
    "on_before_zero_grad": ("trainer", "pl_module", "optimizer"),
    # seed era (0.8/0.9)
    "on_init_start": ("trainer",),
    "on_init_end": ("trainer",),
    "on_epoch_start": ("trainer", "pl_module"),
    "on_epoch_end": ("trainer", "pl_module"),
    "on_batch_start": ("trainer", "pl_module"),
    "on_batch_end": ("trainer", "pl_module"),
    "on_pretrain_routine_start": ("trainer", "pl_module"),
    "on_pretrain_routine_end": ("trainer", "pl_module"),
    "on_keyboard_interrupt": ("trainer", "pl_module"),
}


def test_every_hookspec_has_a_docstring():
    names = hookspecs.event_names()
    assert len(names) > 60
    undocumented = [n for n in names if len((getattr(hookspecs, n).__doc__ or "").strip()) < 20]
    assert undocumented == []


@pytest.mark.parametrize("name", sorted(LIGHTNING_CALLBACK_API))
def test_lightning_callback_names_and_arguments(name):
    trainer = quiet_trainer()
    spec = getattr(trainer.registry.hook, name).spec
    assert spec is not None, f"no event {name}"
    # The training batch events also pass 0.9/1.x's trailing dataloader_idx (always 0), which 2.x dropped.
    expected = LIGHTNING_CALLBACK_API[name] + SEED_TRAILING.get(name, ())
    assert tuple(spec.argnames) == expected
    assert tuple(inspect.signature(getattr(Callback, name)).parameters)[1:] == expected


SEED_TRAILING = {"on_train_batch_start": ("dataloader_idx",), "on_train_batch_end": ("dataloader_idx",)}


def test_behaviour_hooks_are_firstresult():
    trainer = quiet_trainer()
    for name in ("training_step", "run_training_batch", "backward", "optimizer_step", "optimizer_zero_grad",
                 "transfer_batch_to_device", "evaluation_step"):
        assert getattr(trainer.registry.hook, name).spec.opts["firstresult"], name


VAL_RUN = ["on_validation_start", "on_validation_epoch_start", "on_validation_batch_start",
           "on_validation_batch_end", "on_validation_epoch_end", "on_validation_end"]
TRAIN_BATCH = ["on_batch_start", "on_train_batch_start", "on_train_batch_end", "on_batch_end"]


def test_fit_emits_events_in_lightning_order():
    recorder = Recorder()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
                            callbacks=[recorder])
    trainer.fit(SeedModel())
    expected = (
        ["on_init_start", "on_init_end", "setup", "on_fit_start", "on_pretrain_routine_start",
         "on_sanity_check_start", *VAL_RUN, "on_sanity_check_end", "on_pretrain_routine_end",
         "on_train_start", "on_epoch_start", "on_train_epoch_start"]
        + TRAIN_BATCH * 2
        + VAL_RUN
        + ["on_train_epoch_end", "on_epoch_end", "on_train_end", "on_fit_end", "teardown"]
    )
    assert recorder.names() == expected
    args = dict(recorder.events)  # the last call of each event
    assert args["setup"]["stage"] == args["teardown"]["stage"] == "fit"
    assert [v["batch_idx"] for n, v in recorder.events if n == "on_train_batch_end"] == [0, 1]
    assert isinstance(args["on_train_batch_end"]["outputs"], dict) and "loss" in args["on_train_batch_end"]["outputs"]
    assert args["on_validation_batch_end"]["dataloader_idx"] == 0


def test_optimization_events_fire_inside_each_batch():
    recorder = Recorder()
    quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[recorder]).fit(SeedModel())
    names = recorder.names(skip=())
    inside = names[names.index("on_train_batch_start") + 1:names.index("on_train_batch_end")]
    assert sorted(inside) == sorted(["on_before_backward", "on_after_backward", "on_before_optimizer_step",
                                     "on_before_zero_grad"])


def test_callback_with_default_dataloader_idx_gets_the_real_index():
    """Lightning callbacks declare ``dataloader_idx=0``; they still get every loader's index."""
    class Seen(Callback):
        def __init__(self):
            self.idx = []

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.idx.append(dataloader_idx)

    class TwoLoaders(SeedModel):
        def val_dataloader(self):
            return [super().val_dataloader(), super().val_dataloader()]

        def validation_epoch_end(self, outputs):
            assert len(outputs) == 2

    seen = Seen()
    quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                  callbacks=[seen]).fit(TwoLoaders())
    assert seen.idx == [0, 1]


def test_callbacks_run_in_list_order_before_the_module():
    order = []

    class Named(Callback):
        def __init__(self, name):
            self.name = name

        def on_train_epoch_end(self, trainer, pl_module):
            order.append(self.name)

    class Model(SeedModel):
        def on_train_epoch_end(self):
            order.append("module")

    quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                  callbacks=[Named("first"), Named("second")]).fit(Model())
    assert order == ["first", "second", "module"]


# ---- behaviour hooks ----------------------------------------------------------------------


def test_tryfirst_plugin_replaces_training_step():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            raise AssertionError("replaced: the module's training_step must not run")

    class ZeroTarget:
        """Trains the model's outputs towards zero instead."""

        calls = 0

        @hookimpl(tryfirst=True)
        def training_step(self, trainer, pl_module, batch, batch_idx):
            ZeroTarget.calls += 1
            return (pl_module(batch[0]) ** 2).mean()

    model = Model()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, plugins=[ZeroTarget()])
    trainer.fit(model)
    assert ZeroTarget.calls == 3 and trainer.global_step == 3


def test_tryfirst_plugin_replaces_run_training_batch():
    """A plugin can take over a whole batch (e.g. a two-step optimizer); the loop reports what it returns."""
    class Frozen:
        @hookimpl(tryfirst=True)
        def run_training_batch(self, trainer, pl_module, batch, batch_idx):
            return {"custom": batch_idx}

    model = SeedModel()
    before = [p.detach().clone() for p in model.parameters()]
    recorder = Recorder()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, plugins=[Frozen()],
                            callbacks=[recorder])
    trainer.fit(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert trainer.global_step == 0
    assert [v["outputs"] for n, v in recorder.events if n == "on_train_batch_end"] == [{"custom": 0}, {"custom": 1}]


def test_skipped_batch_marker_becomes_none_for_listeners():
    class Skip:
        @hookimpl(tryfirst=True)
        def run_training_batch(self):
            return SKIPPED_BATCH

    recorder = Recorder()
    quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, plugins=[Skip()],
                  callbacks=[recorder]).fit(SeedModel())
    assert dict(recorder.events)["on_train_batch_end"]["outputs"] is None


def test_module_adapter_registers_only_overridden_hooks():
    class Plain(LightningModule):
        def training_step(self, batch, batch_idx):
            return batch.sum()

    trainer = quiet_trainer()
    assert ModuleHooks(trainer, Plain()).__engine_hooks__ == set()
    hooks = ModuleHooks(trainer, SeedModel()).__engine_hooks__
    # SeedModel defines training_epoch_end and validation_epoch_end, no on_* hook
    assert hooks == {"reset_training_outputs", "collect_training_outputs", "aggregate_training_epoch",
                     "collect_validation_outputs", "aggregate_validation_epoch"}


def test_seed_epoch_end_results_reach_callbacks_of_the_same_event():
    """As in Lightning 1.x, ``*_epoch_end(outputs)`` runs before any callback's ``on_*_epoch_end``."""
    class Model(SeedModel):
        def training_epoch_end(self, outputs):
            return {"train_avg": torch.stack([o["loss"] for o in outputs]).mean()}

    class Reads(Callback):
        seen = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.seen.append(("train", "train_avg" in trainer.callback_metrics))

        def on_validation_epoch_end(self, trainer, pl_module):
            self.seen.append(("val", "val_loss" in trainer.callback_metrics))

    quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                  callbacks=[Reads()]).fit(Model())
    assert Reads.seen == [("val", True), ("train", True)]


def test_module_hook_typo_is_an_error_with_a_suggestion():
    from engine import PluginError

    class Model(SeedModel):
        def on_validation_epoch_ned(self):
            pass

    with pytest.raises(PluginError, match="on_validation_epoch_ned.*Did you mean `on_validation_epoch_end`"):
        quiet_trainer(max_epochs=1, limit_train_batches=1).fit(Model())


def test_a_callback_only_hook_on_a_module_is_a_warning_not_a_typo():
    """2.x code that defines a Callback's hook on its module runs as in Lightning: the hook is never called."""
    called = []

    class Model(SeedModel):
        def on_sanity_check_end(self):
            called.append("on_sanity_check_end")

    with pytest.warns(UserWarning, match=r"Model.on_sanity_check_end is a Callback hook.*never called"):
        quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1).fit(Model())
    assert called == []


PER_BATCH_EVENTS = ("on_batch_start", "on_train_batch_start", "on_train_batch_end", "on_batch_end",
                    "transfer_batch_to_device", "on_before_backward", "on_after_backward",
                    "on_before_optimizer_step", "on_before_zero_grad")


def test_default_trainer_listens_to_nothing_per_batch(monkeypatch, tmp_path):
    # The hot path's budget: with the default Trainer minus the bar, on a CPU machine, a training batch
    # calls run_training_batch (and through it the module's training_step), nothing else.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    class Silent(SeedModel):
        training_epoch_end = None  # no seed-era aggregation: nothing to keep per step

        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)["loss"]  # no 'log': nothing to send per step

        def on_train_end(self):  # the module's hooks are registered: look while the run is on
            self.listeners = {event: getattr(self.trainer.hooks, event) for event in PER_BATCH_EVENTS}

    trainer = Trainer(enable_progress_bar=False, max_epochs=1, limit_train_batches=3, default_root_dir=str(tmp_path))
    model = Silent()
    trainer.fit(model)
    for event in PER_BATCH_EVENTS:
        assert model.listeners[event] is None, event


class _CallerRecordingModel(SeedModel):
    """Records, per training batch, the name of the function that called ``training_step``."""

    def __init__(self, tensor_loss: bool = True) -> None:
        super().__init__()
        self.tensor_loss = tensor_loss
        self.callers: list = []

    def training_step(self, batch, batch_idx):
        self.callers.append(sys._getframe(1).f_code.co_name)
        output = super().training_step(batch, batch_idx)
        return output["loss"] if self.tensor_loss else output


@pytest.mark.parametrize("tensor_loss", [True, False], ids=["tensor", "seed_dict_with_log"])
def test_fast_path_calls_the_module_step_directly(tmp_path, tensor_loss):
    """The training_step hook's direct form: the optimization plugin calls the module's step itself, one
    Python frame fewer per batch; a seed-era ``{'loss', 'log'}`` dict is still logged (the form's ``finish``)."""
    model = _CallerRecordingModel(tensor_loss)
    trainer = Trainer(enable_progress_bar=False, max_epochs=1, limit_train_batches=3, limit_val_batches=0,
                      log_every_n_steps=1, default_root_dir=str(tmp_path))
    trainer.fit(model)
    assert model.callers == ["run_training_batch"] * 3
    assert trainer.global_step == 3
    if not tensor_loss:
        assert "train_loss" in trainer.logged_metrics  # SeedModel logs {'train_loss': ...} per step


def test_direct_step_is_not_used_when_another_implementation_or_a_wrapper_takes_part(tmp_path):
    """With a wrapper around the training_step hook, every batch goes through the hook (and the wrapper)."""
    class CountingWrapper:
        calls = 0

        @hookimpl(wrapper=True)
        def training_step(self, trainer, pl_module, batch, batch_idx, optimizer_idx):
            CountingWrapper.calls += 1
            return (yield)

    model = _CallerRecordingModel()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, plugins=[CountingWrapper()])
    trainer.fit(model)
    assert CountingWrapper.calls == 3
    assert model.callers == ["training_step"] * 3  # called by model_hooks' hook implementation


def test_direct_step_is_not_used_with_training_step_end(tmp_path):
    """``training_step_end`` belongs to the hook's work: a module that defines it keeps the hook path."""
    class WithStepEnd(_CallerRecordingModel):
        ends = 0

        def training_step_end(self, output):
            WithStepEnd.ends += 1
            return output

    model = WithStepEnd()
    quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0).fit(model)
    assert WithStepEnd.ends == 3 and model.callers == ["training_step"] * 3


class _IndexModel(LightningModule):
    """Eight batches of one sample; records which ``training_step`` ran."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.calls: list = []

    def training_step(self, batch, batch_idx):
        self.calls.append("module")
        return (self.layer.weight * 0).sum() + float(batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(8, 1)), batch_size=1)


def test_a_model_hooks_subclass_overriding_training_step_is_called():
    """The direct form counts only from the class that defines the implementation: a subclass's override runs."""
    from plugins.model_hooks import ModelHooksPlugin

    class Counting(ModelHooksPlugin):
        calls = 0

        @hookimpl
        def training_step(self, trainer, pl_module, batch, batch_idx, optimizer_idx):
            Counting.calls += 1
            return super().training_step(trainer, pl_module, batch, batch_idx, optimizer_idx)

    quiet_trainer(max_epochs=1, limit_val_batches=0, disable_plugins=["model_hooks"], plugins=[Counting()]).fit(_IndexModel())
    assert Counting.calls == 8


def test_a_training_step_replaced_mid_run_is_called_from_then_on():
    """The direct form looks the module's method up at each batch, as the hook does."""
    model = _IndexModel()

    class Swap(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 2:
                pl_module.training_step = lambda b, i: (pl_module.calls.append("new"), (pl_module.layer.weight * 0).sum())[1]

    quiet_trainer(max_epochs=1, limit_val_batches=0, callbacks=[Swap()]).fit(model)
    assert model.calls == ["module"] * 2 + ["new"] * 6


def test_an_error_in_the_module_step_names_the_training_step_hook():
    """On the direct path the error is still reported as raised in model_hooks' ``training_step``."""
    class Boom(_IndexModel):
        def training_step(self, batch, batch_idx):
            raise ValueError("the module's own error")

    with pytest.raises(ValueError) as info:
        quiet_trainer(max_epochs=1, limit_val_batches=0).fit(Boom())
    assert info.value.__notes__ == ["[hookloop] raised in `training_step` of plugin 'model_hooks'."]


def test_a_listener_registered_by_the_step_hears_that_batch():
    """A plugin the step registers (as ``self.log`` does) takes part in the same batch's backward."""
    class Listener:
        calls = 0

        @hookimpl
        def on_before_backward(self, trainer, pl_module, loss):
            Listener.calls += 1

    class Registers(_IndexModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                self.trainer.registry.register(Listener(), name="listener")
            return super().training_step(batch, batch_idx)

    quiet_trainer(max_epochs=1, limit_val_batches=0).fit(Registers())
    assert Listener.calls == 6


def test_the_step_value_sender_joins_at_the_first_logged_step_value(tmp_path):
    trainer = Trainer(enable_progress_bar=False, max_epochs=1, limit_train_batches=3, log_every_n_steps=1,
                      default_root_dir=str(tmp_path))
    assert trainer.hooks.on_batch_end is None
    trainer.fit(SeedModel())  # its training_step returns a 'log' dict
    assert [name for name, _ in trainer.registry.call_order("on_batch_end")] == ["step_values"]
    assert "train_loss" in trainer.logged_metrics


def test_training_step_plugin_registered_mid_run_takes_effect_at_the_next_batch():
    """A plugin replacing the ``training_step`` hook mid-run is called from the next batch on (the dispatch is rebuilt)."""
    class Replacement:
        calls = 0

        @hookimpl(tryfirst=True)
        def training_step(self, trainer, pl_module, batch, batch_idx):
            Replacement.calls += 1
            return (pl_module(batch[0]) ** 2).mean()

    class Model(SeedModel):
        module_calls = 0

        def training_step(self, batch, batch_idx):
            Model.module_calls += 1
            return super().training_step(batch, batch_idx)

    class RegisterAfterTwo(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 1:
                trainer.registry.register(Replacement(), name="replacement")

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=0, callbacks=[RegisterAfterTwo()])
    trainer.fit(Model())
    assert (Model.module_calls, Replacement.calls) == (2, 3)


def test_an_error_in_logging_a_seed_dict_names_the_training_step_hook():
    """The hook's finishing (seed-era ``'log'`` dict) runs inside the direct form's blame, too."""
    class BadLog(_IndexModel):
        def training_step(self, batch, batch_idx):
            loss = (self.layer.weight * 0).sum()
            return {"loss": loss, "log": {"x": 1.0, "step": "abc"}}

    with pytest.raises(Exception) as info:
        quiet_trainer(max_epochs=1, limit_val_batches=0).fit(BadLog())
    assert info.value.__notes__ == ["[hookloop] raised in `training_step` of plugin 'model_hooks'."]


def test_an_exception_refusing_attributes_is_raised_unmasked():
    """Tagging an error with its culprit is best effort: the module's own exception comes through."""
    class Stubborn(RuntimeError):
        def __setattr__(self, name, value):
            raise TypeError("no attributes here")

    class Boom(_IndexModel):
        def training_step(self, batch, batch_idx):
            raise Stubborn("the module's own error")

    with pytest.raises(Stubborn, match="the module's own error"):
        quiet_trainer(max_epochs=1, limit_val_batches=0).fit(Boom())


class _CountingLoader:
    """Four batches per epoch from a generator that notes each fetch and each finished pass."""

    def __init__(self) -> None:
        self.fetched: list = []
        self.finished = 0

    def __len__(self) -> int:
        return 4

    def __iter__(self):
        for i in range(4):
            self.fetched.append(i)
            yield torch.zeros(1, 1)
        self.finished += 1


def test_each_epoch_runs_its_iterator_to_the_end():
    """The epoch's count is kept without a per-batch test, yet the iterator is asked once more at
    the end, as a plain loop would: a generator's code after its last yield runs every epoch."""
    loader = _CountingLoader()
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(_IndexModel(), train_dataloaders=loader)
    assert loader.fetched == [0, 1, 2, 3] * 2 and loader.finished == 2 and trainer.global_step == 8


def test_a_batch_limit_fetches_one_batch_past_it_and_drops_it():
    loader = _CountingLoader()
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0, limit_train_batches=2)
    trainer.fit(_IndexModel(), train_dataloaders=loader)
    assert loader.fetched == [0, 1, 2] * 2 and loader.finished == 0 and trainer.global_step == 4


# ---- the event groups around the step and Dispatch.watch --------------------------------------


def test_event_groups_say_whether_anything_listens_around_the_step():
    """``hooks.any_before_training_step``/``any_after_training_step`` follow every registration."""
    from engine.dispatch import EVENT_GROUPS

    trainer = quiet_trainer(max_epochs=1)
    hooks = trainer.hooks
    assert not hooks.any_before_training_step and not hooks.any_after_training_step
    for group, events in EVENT_GROUPS.items():
        for event in events:
            class Listener:
                pass

            def handler(*args):
                return None

            spec_args = trainer.registry.hook.__dict__[event].spec.argnames
            handler.__signature__ = inspect.Signature(
                [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in ("self", *spec_args)])
            setattr(Listener, event, hookimpl(handler))
            plugin = Listener()
            trainer.registry.register(plugin, name=f"listener-{event}")
            assert getattr(hooks, group), event
            other = next(g for g in EVENT_GROUPS if g != group)
            assert not getattr(hooks, other), event
            trainer.registry.unregister(plugin)
            assert not getattr(hooks, group), event


def test_dispatch_watchers_hear_every_rebuild_until_they_stop():
    trainer = quiet_trainer(max_epochs=1)
    heard = []
    stop = trainer.hooks.watch(lambda: heard.append(trainer.hooks.on_batch_end))

    class Listener:
        @hookimpl
        def on_batch_end(self, trainer, pl_module):
            pass

    plugin = Listener()
    trainer.registry.register(plugin, name="listener")
    assert len(heard) == 1 and heard[0] is not None  # told after the rebuild, which it can read
    stop()
    trainer.registry.unregister(plugin)
    assert len(heard) == 1
    stop()  # stopping twice is harmless


def test_the_optimization_plugin_stops_watching_when_the_run_ends():
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(_IndexModel())
    assert trainer.hooks._watchers == []


def test_listeners_registered_around_a_quiet_step_are_called_in_that_batch():
    """With nothing listening around the step, a listener registered by the step (after it) or by a
    listener before the step (the batch transfer registering a batch-start listener, which comes after
    it in Lightning's order) is still called in the same batch."""
    calls = []

    class After:
        @hookimpl
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            calls.append(("after", batch_idx))

    class Start:
        @hookimpl
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            calls.append(("start", batch_idx))

    class RegistersStart:
        @hookimpl
        def transfer_batch_to_device(self, trainer, pl_module, batch, device, dataloader_idx):
            if trainer.state.batch_idx == 3 and "start" not in trainer.registry.names():
                trainer.registry.register(Start(), name="start")

    class Registers(_IndexModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                self.trainer.registry.register(After(), name="after")
                self.trainer.registry.register(RegistersStart(), name="registers_start")
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=0)
    assert not trainer.hooks.any_before_training_step and not trainer.hooks.any_after_training_step
    trainer.fit(Registers())
    assert [c for c in calls if c[0] == "after"] == [("after", i) for i in (1, 2, 3, 4)]
    assert [c for c in calls if c[0] == "start"] == [("start", 3), ("start", 4)]


def test_skip_rest_of_epoch_set_after_the_step_stops_the_epoch_at_the_next_batch():
    """Set where nothing listens before the step (here in ``on_train_batch_end``), it is still honoured."""
    steps = []

    class Skips(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps.append(batch_idx)
            if batch_idx == 1:
                trainer.state.skip_rest_of_epoch = True

    trainer = quiet_trainer(max_epochs=2, limit_train_batches=5, limit_val_batches=0, callbacks=[Skips()])
    trainer.fit(_IndexModel())
    assert not trainer.hooks.any_before_training_step
    assert steps == [0, 1, 0, 1]


def test_skip_rest_of_epoch_set_while_transferring_skips_that_batch():
    """Tested after the batch-start events, which follow the transfer in Lightning 2.x: set by
    ``transfer_batch_to_device``, it ends the epoch before that batch trains."""
    class SkipsWhileTransferring:
        @hookimpl
        def transfer_batch_to_device(self, trainer, pl_module, batch, device, dataloader_idx):
            if trainer.state.batch_idx == 2:
                trainer.state.skip_rest_of_epoch = True
            return batch

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=0)
    trainer.registry.register(SkipsWhileTransferring(), name="skips")
    model = _IndexModel()
    trainer.fit(model)
    assert trainer.global_step == 2 and len(model.calls) == 2
