"""The hooks a run calls, and their order, are Lightning 2.x's: fit, validate, test, predict and resume.

A module and a callback record every Lightning 2.x hook they are called with, as Lightning's own
``tests/tests_pytorch/models/test_hooks.py`` does: a hook is recorded when it returns, so a hook
called from inside another one (``training_step`` inside ``optimizer_step``'s closure) comes first.
The expected lists are written out from Lightning 2.x's. ``torch.nn.Module`` calls (``forward``,
``train``, ``zero_grad``) are not recorded.

The order of the hooks inside a training step (``training_step``, zero_grad, backward, optimizer step)
is compared on its own: the other comparisons leave those hooks out.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, List

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine import Callback, LightningModule, Trainer
from engine.catalogue import callback_hooks
from plugins import ModelCheckpoint

#: Lightning 2.x's LightningModule hooks (and the methods the trainer calls), recorded by name.
MODULE_HOOKS = (
    "configure_callbacks", "prepare_data", "setup", "configure_model", "configure_optimizers", "teardown",
    "train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader",
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end",
    "on_train_epoch_start", "on_train_epoch_end", "on_train_batch_start", "on_train_batch_end",
    "on_validation_model_zero_grad", "on_validation_model_eval", "on_validation_model_train",
    "on_test_model_eval", "on_test_model_train", "on_predict_model_eval",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end", "on_test_batch_start",
    "on_test_batch_end", "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
    "training_step", "validation_step", "test_step", "predict_step",
    "on_before_zero_grad", "optimizer_zero_grad", "on_before_backward", "backward", "on_after_backward",
    "on_before_optimizer_step", "configure_gradient_clipping", "clip_gradients", "optimizer_step",
    "on_save_checkpoint", "on_load_checkpoint",
)
#: Lightning 2.x's Callback hooks (``on_fit_end`` is assigned on the instance, see RecordingCallback).
CALLBACK_HOOKS = (
    "setup", "teardown", "on_fit_start", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_start", "on_train_end", "on_train_epoch_start", "on_train_epoch_end", "on_train_batch_start",
    "on_train_batch_end", "on_validation_start", "on_validation_end", "on_validation_epoch_start",
    "on_validation_epoch_end", "on_validation_batch_start", "on_validation_batch_end", "on_test_start",
    "on_test_end", "on_test_epoch_start", "on_test_epoch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_save_checkpoint", "on_load_checkpoint",
    "state_dict", "load_state_dict",
)
#: The hooks of the inside of an automatic-optimization training step.
IN_STEP = {
    "training_step", "Callback.on_before_zero_grad", "on_before_zero_grad", "optimizer_zero_grad",
    "Callback.on_before_backward", "on_before_backward", "backward", "Callback.on_after_backward",
    "on_after_backward", "Callback.on_before_optimizer_step", "on_before_optimizer_step", "clip_gradients",
    "configure_gradient_clipping", "optimizer_step",
}


def _recorded(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` that appends ``name`` to ``self.calls`` once it returns (Lightning's test records so)."""
    @functools.wraps(method)  # keeps the signature the engine reads (e.g. transfer_batch_to_device's)
    def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = method(self, *args, **kwargs)
        self.calls.append(name)
        return out

    return hook


class _Model(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return {"loss": self(batch[0]).sum()}

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return {"x": self(batch[0]).sum()}

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        return {"y": self(batch[0]).sum()}

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _loader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()


class RecordingModel(_Model):
    """Records every hook of :data:`MODULE_HOOKS` in ``self.calls``."""

    def __init__(self, calls: List[str]) -> None:
        super().__init__()
        self.calls = calls


for _name in MODULE_HOOKS:
    setattr(RecordingModel, _name, _recorded(_name, getattr(_Model, _name)))


class RecordingCallback(Callback):
    """Records every hook of :data:`CALLBACK_HOOKS` as ``Callback.<hook>``; its methods take ``*args``."""

    def __init__(self, calls: List[str]) -> None:
        self.calls = calls
        # A hook assigned on the instance is called too (Lightning calls callbacks' attributes).
        self.on_fit_end = lambda trainer, pl_module: calls.append("Callback.on_fit_end")

    def state_dict(self) -> Any:
        self.calls.append("Callback.state_dict")
        return {"foo": True}

    def load_state_dict(self, state_dict: Any) -> None:
        assert state_dict == {"foo": True}
        self.calls.append("Callback.load_state_dict")


def _callback_hook(name: str) -> Callable[..., None]:
    def hook(self: Any, *args: Any) -> None:
        assert args[0] is not None and isinstance(args[1], LightningModule), name  # trainer, pl_module first
        self.calls.append(f"Callback.{name}")

    hook.__name__ = name
    return hook


for _name in CALLBACK_HOOKS:
    if _name not in ("state_dict", "load_state_dict"):
        assert _name in callback_hooks(), _name
        setattr(RecordingCallback, _name, _callback_hook(_name))


def _trainer(tmp_path: Any, calls: List[str], **flags: Any) -> Trainer:
    settings = dict(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                    # monitor=None keeps the latest checkpoint, as Lightning 2.x's default does: every due save
                    # writes (one ranked by a loss would skip a worse one, and the recorded hooks with it).
                    callbacks=[RecordingCallback(calls)])
    if flags.get("enable_checkpointing", True):
        settings["callbacks"].append(ModelCheckpoint(monitor=None))
    settings.update(flags)
    return Trainer(**settings)


def _without_step(calls: List[str]) -> List[str]:
    return [c for c in calls if c not in IN_STEP]


# ---- the expected lists, Lightning 2.x's ----------------------------------------------------------


def _step() -> List[str]:
    """One automatic-optimization training step (accumulate_grad_batches=1, no scheduler)."""
    return [
        "training_step",
        "Callback.on_before_zero_grad", "on_before_zero_grad", "optimizer_zero_grad",
        "Callback.on_before_backward", "on_before_backward", "backward",
        "Callback.on_after_backward", "on_after_backward",
        "Callback.on_before_optimizer_step", "on_before_optimizer_step",
        "clip_gradients", "configure_gradient_clipping", "optimizer_step",
    ]


def _train_batches(batches: range) -> List[str]:
    out: List[str] = []
    for i in batches:
        out += ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
                "Callback.on_train_batch_start", "on_train_batch_start",
                *_step(),
                "Callback.on_train_batch_end", "on_train_batch_end"]
    return out


def _eval_run(noun: str, batches: int, model_train: bool = True) -> List[str]:
    """An evaluation run from the module's eval mode to its train mode (validation / test)."""
    out = [f"on_{noun}_model_eval", f"Callback.on_{noun}_start", f"on_{noun}_start",
           f"Callback.on_{noun}_epoch_start", f"on_{noun}_epoch_start"]
    for _ in range(batches):
        out += ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
                f"Callback.on_{noun}_batch_start", f"on_{noun}_batch_start", f"{noun}_step",
                f"Callback.on_{noun}_batch_end", f"on_{noun}_batch_end"]
    out += [f"Callback.on_{noun}_epoch_end", f"on_{noun}_epoch_end", f"Callback.on_{noun}_end", f"on_{noun}_end"]
    if model_train:
        out.append(f"on_{noun}_model_train")
    return out


def _setup() -> List[str]:
    return ["configure_callbacks", "prepare_data", "Callback.setup", "setup", "configure_model"]


def _epoch_end_with_checkpoint() -> List[str]:
    return ["Callback.on_train_epoch_end", "on_train_epoch_end",
            # ModelCheckpoint saves here (after every other epoch-end hook)
            "Callback.state_dict", "Callback.on_save_checkpoint", "on_save_checkpoint"]


def _fit_end() -> List[str]:
    return ["Callback.on_train_end", "on_train_end", "Callback.on_fit_end", "on_fit_end",
            "Callback.teardown", "teardown"]


def _expected_fit() -> List[str]:
    """fit: sanity check, two epochs of two batches, each followed by a validation of two batches."""
    expected = [*_setup(), "configure_optimizers", "Callback.on_fit_start", "on_fit_start",
                "Callback.on_sanity_check_start", "val_dataloader", *_eval_run("validation", 2),
                "Callback.on_sanity_check_end", "train_dataloader", "Callback.on_train_start", "on_train_start"]
    for _ in range(2):
        expected += ["Callback.on_train_epoch_start", "on_train_epoch_start", *_train_batches(range(2)),
                     "on_validation_model_zero_grad", *_eval_run("validation", 2), *_epoch_end_with_checkpoint()]
    return expected + _fit_end()


# ---- fit -----------------------------------------------------------------------------------------


def _fit(tmp_path: Any) -> List[str]:
    calls: List[str] = []
    trainer = _trainer(tmp_path, calls, max_epochs=2, accumulate_grad_batches=1)
    trainer.fit(RecordingModel(calls))
    return calls


def test_fit_calls_lightnings_hooks_in_lightnings_order(tmp_path):
    assert _without_step(_fit(tmp_path)) == _without_step(_expected_fit())


def test_fit_calls_the_hooks_of_a_training_step_in_lightnings_order(tmp_path):
    assert _fit(tmp_path) == _expected_fit()


def test_fit_without_validation_loads_no_validation_data_and_calls_no_validation_hook(tmp_path):
    calls: List[str] = []
    trainer = _trainer(tmp_path, calls, limit_val_batches=0)
    trainer.fit(RecordingModel(calls))
    expected = [*_setup(), "configure_optimizers", "Callback.on_fit_start", "on_fit_start",
                "train_dataloader", "Callback.on_train_start", "on_train_start",
                "Callback.on_train_epoch_start", "on_train_epoch_start", *_train_batches(range(2)),
                *_epoch_end_with_checkpoint(), *_fit_end()]
    assert _without_step(calls) == _without_step(expected)
    assert not any("validation" in c or "val_" in c for c in calls)


# ---- resume --------------------------------------------------------------------------------------


def _first_run(tmp_path: Any, **flags: Any) -> str:
    trainer = _trainer(tmp_path, [], limit_val_batches=0, **flags)
    trainer.fit(_Model())
    assert trainer.checkpoint_callback.best_model_path
    return trainer.checkpoint_callback.best_model_path


def _resume_setup() -> List[str]:
    # The checkpoint's module and callbacks are restored before the optimizers are built; the
    # optimizer and loop states once they are (at fit start).
    return [*_setup(), "on_load_checkpoint", "Callback.on_load_checkpoint", "Callback.load_state_dict",
            "configure_optimizers", "Callback.on_fit_start", "on_fit_start", "train_dataloader",
            "Callback.on_train_start", "on_train_start"]


def _resume_after_max_steps(tmp_path: Any) -> List[str]:
    path = _first_run(tmp_path, max_steps=1, limit_train_batches=4)
    calls: List[str] = []
    trainer = _trainer(tmp_path, calls, max_steps=3, limit_train_batches=4, limit_val_batches=0)
    trainer.fit(RecordingModel(calls), ckpt_path=path)
    assert trainer.global_step == 3
    return calls


def _expected_resume_after_max_steps() -> List[str]:
    # The first run stopped after batch 0 of epoch 0: the resumed one trains batches 1 and 2 of that
    # epoch, which started in the first run (no epoch-start hooks), and stops at max_steps=3.
    return [*_resume_setup(), *_train_batches(range(1, 3)), *_epoch_end_with_checkpoint(), *_fit_end()]


def test_resume_after_a_max_steps_stop_continues_that_epoch(tmp_path):
    assert _without_step(_resume_after_max_steps(tmp_path)) == _without_step(_expected_resume_after_max_steps())


def test_resume_after_a_max_steps_stop_calls_the_step_hooks_in_lightnings_order(tmp_path):
    assert _resume_after_max_steps(tmp_path) == _expected_resume_after_max_steps()


def test_resume_after_a_finished_epoch_starts_the_next_one(tmp_path):
    path = _first_run(tmp_path, max_epochs=1)
    calls: List[str] = []
    trainer = _trainer(tmp_path, calls, max_epochs=2, limit_val_batches=0)
    trainer.fit(RecordingModel(calls), ckpt_path=path)
    expected = [*_resume_setup(), "Callback.on_train_epoch_start", "on_train_epoch_start",
                *_train_batches(range(2)), *_epoch_end_with_checkpoint(), *_fit_end()]
    assert _without_step(calls) == _without_step(expected)
    assert trainer.global_step == 4


# ---- validate / test / predict -------------------------------------------------------------------


@pytest.mark.parametrize(("verb", "noun", "loader"), [("validate", "validation", "val"), ("test", "test", "test")])
@pytest.mark.parametrize("override_model_train", [True, False])
@pytest.mark.parametrize("batches", [2, 0])
def test_validate_and_test_call_lightnings_hooks_in_lightnings_order(tmp_path, verb, noun, loader,
                                                                      override_model_train, batches):
    calls: List[str] = []
    model = RecordingModel(calls)
    if not override_model_train:
        # Not overridden: not called; every submodule gets its own mode back instead.
        setattr(model, f"on_{noun}_model_train", None)
        model.layer.eval()
    trainer = _trainer(tmp_path, calls, limit_val_batches=batches, limit_test_batches=batches)
    getattr(trainer, verb)(model, verbose=False)
    run = [f"{loader}_dataloader", *_eval_run(noun, 2, model_train=override_model_train)] if batches else []
    expected = [*_setup(), *run, "Callback.teardown", "teardown"]
    assert calls == expected
    if not batches:
        return
    assert model.training  # back to train mode (its own before the run, or its on_*_model_train's)
    assert model.layer.training is override_model_train


def test_predict_calls_lightnings_hooks_in_lightnings_order(tmp_path):
    calls: List[str] = []
    model = RecordingModel(calls)
    trainer = _trainer(tmp_path, calls, limit_predict_batches=2)
    trainer.predict(model)
    expected = [*_setup(), "predict_dataloader", "on_predict_model_eval",
                "Callback.on_predict_start", "on_predict_start", "Callback.on_predict_epoch_start",
                "on_predict_epoch_start"]
    for _ in range(2):
        expected += ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
                     "Callback.on_predict_batch_start", "on_predict_batch_start", "predict_step",
                     "Callback.on_predict_batch_end", "on_predict_batch_end"]
    expected += ["Callback.on_predict_epoch_end", "on_predict_epoch_end", "Callback.on_predict_end", "on_predict_end",
                 "Callback.teardown", "teardown"]
    assert calls == expected
    assert model.training  # no on_predict_model_train (as in Lightning): the modes are restored


# ---- single behaviours ---------------------------------------------------------------------------


def test_the_batch_reaches_its_device_before_the_batch_start_hooks_see_it(tmp_path):
    seen = []

    class Model(_Model):
        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            return ["moved", *batch]

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            seen.append(("train", batch[0]))

        def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            seen.append(("validation", batch[0]))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return super().training_step(batch[1:], batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            return super().validation_step(batch[1:], batch_idx)

    class Watcher(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(("callback", batch[0]))

    trainer = _trainer(tmp_path, [], callbacks=[Watcher()], num_sanity_val_steps=0, limit_val_batches=1,
                       enable_checkpointing=False)
    trainer.fit(Model())
    assert seen == [("callback", "moved"), ("train", "moved")] * 2 + [("validation", "moved")]


def test_on_train_batch_start_returning_minus_one_skips_the_rest_of_the_epoch(tmp_path):
    steps = []

    class Model(_Model):
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
            return -1 if batch_idx == 1 else None

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            steps.append((self.current_epoch, batch_idx))
            return super().training_step(batch, batch_idx)

    trainer = _trainer(tmp_path, [], max_epochs=2, limit_train_batches=4, limit_val_batches=0,
                       enable_checkpointing=False)
    trainer.fit(Model())
    assert steps == [(0, 0), (1, 0)]


def test_a_module_overriding_on_validation_model_eval_decides_the_mode(tmp_path):
    modes = []

    class Model(_Model):
        def on_validation_model_eval(self) -> None:
            self.eval()
            self.layer.train()  # e.g. Monte-Carlo dropout: keep one part in train mode

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            modes.append((self.training, self.layer.training))
            return super().validation_step(batch, batch_idx)

    model = Model()
    _trainer(tmp_path, [], limit_val_batches=1).validate(model, verbose=False)
    assert modes == [(False, True)]
    assert model.training and model.layer.training


def test_on_validation_model_zero_grad_runs_before_each_validation_of_a_fit_only(tmp_path):
    seen = []

    class Model(_Model):
        def on_validation_model_zero_grad(self) -> None:
            seen.append((self.trainer.sanity_checking, self.training))
            super().on_validation_model_zero_grad()
            assert all(p.grad is None for p in self.parameters())

    _trainer(tmp_path, [], max_epochs=2, enable_checkpointing=False).fit(Model())
    assert seen == [(False, True), (False, True)]


def test_configure_model_runs_after_setup_before_the_optimizers_in_every_stage(tmp_path):
    calls: List[str] = []

    class Model(_Model):
        def __init__(self) -> None:
            super().__init__()
            self.head = None

        def setup(self, stage: str) -> None:
            calls.append(f"setup:{stage}")

        def configure_model(self) -> None:
            calls.append("configure_model")
            if self.head is None:  # built once, lazily (Lightning's use of the hook)
                self.head = torch.nn.Linear(2, 1)

        def configure_optimizers(self) -> Any:
            assert self.head is not None
            calls.append("configure_optimizers")
            return super().configure_optimizers()

    model = Model()
    trainer = _trainer(tmp_path, [], enable_checkpointing=False, limit_test_batches=1, limit_predict_batches=1)
    trainer.fit(model)
    trainer.test(model, verbose=False)
    trainer.predict(model)
    assert calls == ["setup:fit", "configure_model", "configure_optimizers", "setup:test", "configure_model",
                     "setup:predict", "configure_model"]


def test_configure_callbacks_adds_the_modules_callbacks_after_the_trainers_replacing_the_same_type(tmp_path):
    calls = []

    class Named(Callback):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_train_start(self, trainer, pl_module):
            calls.append(self.name)

    class Other(Callback):
        def on_train_start(self, trainer, pl_module):
            calls.append("other")

    class Model(_Model):
        def configure_callbacks(self) -> Any:
            return [Named("model's")]

    trainer = _trainer(tmp_path, [], callbacks=[Named("trainer's"), Other()], enable_checkpointing=False,
                       limit_val_batches=0)
    trainer.fit(Model())
    assert calls == ["other", "model's"]
    assert [c.name for c in trainer.callbacks if isinstance(c, Named)] == ["model's"]
    calls.clear()
    trainer.fit(Model())  # a second run replaces the first run's callback of the module: still one
    assert calls == ["other", "model's"]


def test_callback_methods_taking_star_args_get_every_argument(tmp_path):
    got = []

    class Star(Callback):
        def on_train_batch_end(self, *args):
            got.append(args)

        def on_validation_batch_start(self, trainer, *args):
            got.append(args)

    trainer = _trainer(tmp_path, [], callbacks=[Star()], limit_train_batches=1, limit_val_batches=1,
                       num_sanity_val_steps=0, enable_checkpointing=False)
    model = _Model()
    trainer.fit(model)
    train_end, val_start = got
    assert train_end[0] is trainer and train_end[1] is model and train_end[2]["loss"] is not None
    assert train_end[4] == 0  # trainer, pl_module, outputs, batch, batch_idx[, dataloader_idx]
    assert val_start[0] is model and val_start[2] == 0


def test_a_checkpoint_callback_of_the_module_replaces_the_default_one_and_still_saves_last(tmp_path):
    from engine.errors import PluginError

    order = []
    own = ModelCheckpoint(dirpath=str(tmp_path / "own"))
    saving = own.on_train_epoch_end

    def on_train_epoch_end(trainer, pl_module):
        order.append("checkpoint")
        saving(trainer, pl_module)

    own.on_train_epoch_end = on_train_epoch_end

    class Late(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("late")

    class Model(_Model):
        def configure_callbacks(self) -> Any:
            return [own, Late()]

        def on_train_epoch_end(self) -> None:
            order.append("module")

    trainer = _trainer(tmp_path, [], limit_val_batches=0)
    trainer.fit(Model())
    assert [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)] == [own]
    assert order == ["late", "module", "checkpoint"] and own.best_model_path

    class Typo(Callback):
        def on_train_strat(self, trainer, pl_module):
            pass

    class TypoModel(_Model):
        def configure_callbacks(self) -> Any:
            return Typo()

    with pytest.raises(PluginError, match="on_train_start"):
        _trainer(tmp_path, [], limit_val_batches=0).fit(TypoModel())


def test_load_from_checkpoint_calls_configure_model_before_on_load_checkpoint(tmp_path):
    calls: List[str] = []
    trainer = _trainer(tmp_path, [], limit_val_batches=0)
    trainer.fit(_Model())
    path = str(tmp_path / "model.ckpt")
    trainer.save_checkpoint(path)

    class Model(RecordingModel):
        def __init__(self) -> None:
            super().__init__(calls)

    Model.load_from_checkpoint(path)
    assert calls == ["configure_model", "on_load_checkpoint"]


def test_the_modules_on_load_checkpoint_sees_the_old_weights_and_the_callbacks_the_loaded_ones(tmp_path):
    """Lightning 2.x restores in parts: the module's hook, the weights, then (fitting) the callbacks' hooks."""
    path = _first_run(tmp_path, max_steps=1, limit_train_batches=4)
    saved = torch.load(path, weights_only=True)["state_dict"]["layer.weight"]
    seen = {}

    class Model(_Model):
        def on_load_checkpoint(self, checkpoint):
            seen["module"] = torch.equal(self.layer.weight.detach(), saved)

    class Reader(Callback):
        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            seen.setdefault("callback", []).append(torch.equal(pl_module.layer.weight.detach(), saved))

    model = Model()
    assert not torch.equal(model.layer.weight.detach(), saved)  # a fresh model has other weights
    trainer = _trainer(tmp_path, [], max_steps=2, limit_train_batches=4, limit_val_batches=0, callbacks=[Reader()])
    trainer.fit(model, ckpt_path=path)
    assert seen == {"module": False, "callback": [True]}

    seen.clear()
    for run in (trainer.validate, trainer.test):  # not fitting: the module's hook alone, as in Lightning
        run(Model(), dataloaders=DataLoader(TensorDataset(torch.randn(4, 4)), batch_size=2), ckpt_path=path,
            verbose=False)
    assert seen == {"module": False}
