"""The hook catalogue is written once (engine/hookspecs.py); Callback's and LightningModule's hooks, and what
the module's adapter forwards, are derived from it. Hooks are called in every era's signature."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import torch

from engine import Callback, LightningModule, Trainer, hookspecs
from engine.catalogue import callback_hooks, module_hooks
from tests.models import ModernModel, make_loader

ROOT = Path(__file__).resolve().parent.parent
QUIET = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
             num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1, limit_test_batches=1,
             limit_predict_batches=1, max_epochs=1)


def _user_hook_events(audience):
    return [n for n in hookspecs.event_names() if getattr(getattr(hookspecs, n), "engine_user_hook", {}).get(audience)]


def test_callback_and_module_hooks_are_the_catalogues_user_hooks():
    assert list(callback_hooks()) == _user_hook_events("callback")
    assert list(module_hooks()) == _user_hook_events("module")
    for name, args in callback_hooks().items():
        method = getattr(Callback, name)
        assert tuple(inspect.signature(method).parameters)[1:] == args
        assert tuple(inspect.signature(getattr(hookspecs, name)).parameters) == args
        assert "hookspecs" in method.__doc__ and len(method.__doc__) > 40
    for name, args in module_hooks().items():
        method = getattr(LightningModule, name)
        assert tuple(inspect.signature(method).parameters)[1:] == args
        assert method(ModernModel(), *args) is None  # a no-op, whatever it is given


def test_no_hand_written_copy_of_the_catalogue_is_left():
    """Neither Callback nor LightningModule nor the adapter spells out the events' hooks one by one."""
    for relative, cls, hooks in (("engine/callback.py", "Callback", callback_hooks()),
                                 ("engine/module.py", "LightningModule", module_hooks()),
                                 ("plugins/module_adapter.py", "ModuleHooks", module_hooks())):
        tree = ast.parse((ROOT / relative).read_text())
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
        defined = {n.name for n in body if isinstance(n, ast.FunctionDef)}
        assert defined & set(hooks) == set(), f"{relative} defines {sorted(defined & set(hooks))} by hand"


class EveryHook(ModernModel):
    """Overrides every module hook of the catalogue, recording the arguments each one gets."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def validation_step(self, batch, batch_idx):
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        return self.validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0])

    def configure_optimizers(self):  # a scheduler, for lr_scheduler_step
        opt = super().configure_optimizers()
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1)]


def _recorder(name):
    def hook(self, *args):
        self.seen.setdefault(name, args)
    hook.__name__ = name
    return hook


for _name in module_hooks():
    setattr(EveryHook, _name, _recorder(_name))


def test_every_module_hook_of_the_catalogue_is_forwarded_with_its_arguments(tmp_path):
    model = EveryHook()
    trainer = Trainer(default_root_dir=tmp_path, **QUIET)
    trainer.fit(model)
    trainer.validate(model)
    trainer.test(model)
    trainer.predict(model, dataloaders=make_loader(32, 16))
    trainer.save_checkpoint(str(tmp_path / "x.ckpt"))
    trainer.fit(model, ckpt_path=str(tmp_path / "x.ckpt"))  # on_load_checkpoint
    missing = set(module_hooks()) - set(model.seen) - {"on_exception"}
    assert missing == set()
    assert len(model.seen["on_train_batch_end"]) == 4  # outputs, batch, batch_idx, dataloader_idx
    outputs, batch, batch_idx, dataloader_idx = model.seen["on_train_batch_end"]
    assert isinstance(outputs["loss"], torch.Tensor) and batch_idx == 0 and dataloader_idx == 0
    assert model.seen["setup"] == ("fit",)
    assert isinstance(model.seen["on_before_optimizer_step"][0], torch.optim.Optimizer)


def test_the_module_hook_for_exceptions_gets_the_exception():
    class Failing(EveryHook):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    model = Failing()
    try:
        Trainer(**QUIET).fit(model)
    except RuntimeError:
        pass
    assert isinstance(model.seen["on_exception"][0], RuntimeError)


class Seed09Model(ModernModel):
    """Lightning 0.9's batch hooks: (batch, batch_idx, dataloader_idx), no outputs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_batch_start(self, batch, batch_idx, dataloader_idx):
        self.calls.append(("start", type(batch).__name__, batch_idx, dataloader_idx))

    def on_train_batch_end(self, batch, batch_idx, dataloader_idx):
        self.calls.append(("end", type(batch).__name__, batch_idx, dataloader_idx))

    def on_validation_batch_end(self, batch, batch_idx, dataloader_idx):
        self.calls.append(("val_end", type(batch).__name__, batch_idx, dataloader_idx))


class Modern2xModel(ModernModel):
    """Lightning 2.x's batch hooks: dataloader_idx left out where 2.x leaves it out or defaults it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_batch_start(self, batch, batch_idx):
        self.calls.append(("start", batch_idx))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.calls.append(("end", sorted(outputs), batch_idx))

    def on_validation_batch_end(self, outputs, batch, batch_idx):
        self.calls.append(("val_end", batch_idx))


def test_module_batch_hooks_get_what_their_era_passed():
    seed = Seed09Model()
    Trainer(**QUIET).fit(seed)
    assert ("end", "list", 1, 0) in seed.calls and ("start", "list", 0, 0) in seed.calls
    assert ("val_end", "list", 0, 0) in seed.calls  # the batch, not the step's outputs
    modern = Modern2xModel()
    Trainer(**QUIET).fit(modern)
    assert ("end", ["loss"], 1) in modern.calls and ("start", 0) in modern.calls and ("val_end", 0) in modern.calls


class Callback09(Callback):
    """A 0.9 callback: the per-loop batch hooks take (batch, batch_idx, dataloader_idx), no outputs."""

    def __init__(self):
        self.calls = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx):
        self.calls.append(("start", type(batch).__name__, batch_idx, dataloader_idx))

    def on_train_batch_end(self, trainer, pl_module, batch, batch_idx, dataloader_idx):
        self.calls.append(("end", type(batch).__name__, batch_idx, dataloader_idx))


def test_a_09_callback_with_batch_hooks_registers_and_gets_the_batch():
    callback = Callback09()
    Trainer(callbacks=[callback], **QUIET).fit(ModernModel())
    assert callback.calls == [("start", "list", 0, 0), ("end", "list", 0, 0), ("start", "list", 1, 0),
                              ("end", "list", 1, 0)]


def test_hooks_assigned_on_instances_are_called():
    calls = []
    callback = Callback()
    callback.on_train_start = lambda trainer, pl_module: calls.append("callback")
    model = ModernModel()
    model.on_train_end = lambda: calls.append("module")
    Trainer(callbacks=[callback], **QUIET).fit(model)
    assert calls == ["callback", "module"]


def test_a_misspelt_hook_assigned_on_an_instance_is_an_error():
    from engine import PluginError
    import pytest

    callback = Callback()
    callback.on_train_strat = lambda trainer, pl_module: None
    with pytest.raises(PluginError, match="on_train_strat.*Did you mean `on_train_start`"):
        Trainer(callbacks=[callback], **QUIET)


def test_a_module_hook_with_its_dataloader_idx_defaulted_gets_the_real_index():
    class TwoLoaders(ModernModel):
        def __init__(self):
            super().__init__()
            self.seen = []

        def val_dataloader(self):
            return [make_loader(32, 16, seed=1), make_loader(32, 16, seed=2)]

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            return None

        def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
            self.seen.append(dataloader_idx)

    model = TwoLoaders()
    Trainer(**QUIET).validate(model)
    assert model.seen == [0, 1]
