"""The seed-era (Lightning 0.8/0.9) LightningModule API."""
from __future__ import annotations

import torch
from torch import nn

from engine import Callback, LightningModule
from plugins.model_hooks import ModuleHooks
from tests.core_support import quiet_trainer
from tests.models import SeedModel, make_loader


class WeightWatch(Callback):
    """Records, per training batch, whether the weights changed and the global step after it."""

    def __init__(self):
        self.changed, self.steps = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.changed.append(any(not torch.equal(a, b) for a, b in zip(self.before, pl_module.parameters())))
        self.steps.append(trainer.global_step)


def test_dict_with_loss_log_progress_bar_and_other_keys():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            return {"loss": loss, "log": {"train_loss": loss}, "progress_bar": {"pb_loss": loss},
                    "extra": loss * 2, "note": "kept in outputs"}

        def training_epoch_end(self, outputs):
            self.keys = sorted(outputs[0])

    watch = WeightWatch()
    model = Model()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[watch])
    trainer.fit(model)
    assert watch.changed == [True, True] and trainer.global_step == 2
    assert set(trainer.logged_metrics) >= {"train_loss"}
    assert "pb_loss" in trainer.progress_bar_metrics
    assert "extra" in trainer.callback_metrics and "train_loss" in trainer.callback_metrics
    assert model.keys == ["extra", "log", "loss", "note", "progress_bar"]


def test_bare_tensor_trains():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

    watch = WeightWatch()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=[watch])
    trainer.fit(Model())
    assert watch.changed == [True, True, True] and watch.steps == [1, 2, 3]


def test_none_skips_the_batch_optimization():
    class Model(SeedModel):
        def training_step(self, batch, batch_idx):
            return None if batch_idx == 1 else super().training_step(batch, batch_idx)

        def training_epoch_end(self, outputs):
            self.outputs = outputs

    watch = WeightWatch()
    model = Model()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, callbacks=[watch])
    trainer.fit(model)
    assert watch.changed == [True, False, True]
    assert watch.steps == [1, 1, 2]
    assert len(model.outputs) == 2  # the skipped batch has no output


def test_training_epoch_end_gets_every_output_detached():
    model = SeedModel()
    quiet_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0).fit(model)
    assert [len(o) for o in model.epoch_end_outputs] == [3, 3]  # reset every epoch
    for epoch in model.epoch_end_outputs:
        for out in epoch:
            assert out["loss"].grad_fn is None and not out["loss"].requires_grad
            assert not out["log"]["train_loss"].requires_grad


def test_outputs_are_not_collected_without_training_epoch_end():
    class NoEpochEnd(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(8, 2)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return make_loader(64, 16)

    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    assert "on_train_batch_end" not in ModuleHooks(trainer, NoEpochEnd()).__engine_hooks__  # nothing runs per batch

    class PerBatchHook(NoEpochEnd):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.last = outputs

    class Peek(Callback):
        def on_train_end(self, trainer, pl_module):
            self.kept = list(trainer.plugin("lightning_module")._train_outputs)

    peek = Peek()
    model = PerBatchHook()
    quiet_trainer(max_epochs=1, limit_val_batches=0, callbacks=[peek]).fit(model)
    assert peek.kept == [] and model.last is not None  # the hook ran, nothing was kept for an epoch end


def test_validation_runs_in_eval_under_no_grad_then_restores():
    seen = []

    class Model(SeedModel):
        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(0.5)

        def training_step(self, batch, batch_idx):
            seen.append(("train", self.training, self.dropout.training, torch.is_grad_enabled()))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            seen.append(("val", self.training, self.dropout.training, torch.is_grad_enabled()))
            return super().validation_step(batch, batch_idx)

    model = Model()
    quiet_trainer(max_epochs=1, limit_train_batches=4, val_check_interval=0.5, limit_val_batches=1,
                  num_sanity_val_steps=1).fit(model)
    assert [s[0] for s in seen] == ["val", "train", "train", "val", "train", "train", "val"]
    assert all(s[1:] == (False, False, False) for s in seen if s[0] == "val")
    assert all(s[1:] == (True, True, True) for s in seen if s[0] == "train")
    assert model.training and torch.is_grad_enabled()


def test_validate_restores_a_model_left_in_eval_mode_and_grad_off():
    model = SeedModel()
    model.eval()
    trainer = quiet_trainer()
    with torch.no_grad():
        trainer.validate(model)
        assert not torch.is_grad_enabled()
    assert not model.training


def test_validation_epoch_end_dict_routes_metrics():
    class Model(SeedModel):
        def validation_epoch_end(self, outputs):
            avg = torch.stack([o["val_loss"] for o in outputs]).mean()
            return {"val_loss": avg, "monitor_me": avg * 2,
                    "log": {"eval_loss": avg}, "progress_bar": {"pb_val": avg}}

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0)
    trainer.fit(Model())
    cm, lm, pm = trainer.callback_metrics, trainer.logged_metrics, trainer.progress_bar_metrics
    assert {"val_loss", "monitor_me", "eval_loss"} <= set(cm)
    assert torch.allclose(cm["monitor_me"], cm["val_loss"] * 2)
    assert "eval_loss" in lm and "val_loss" not in lm and "monitor_me" not in lm
    assert "pb_val" in pm and "pb_val" not in lm


def test_sanity_check_metrics_are_discarded():
    class Model(SeedModel):
        def validation_epoch_end(self, outputs):
            return {"val_loss": torch.tensor(float(self.trainer.sanity_checking))}

    # check_val_every_n_epoch=2 with one epoch: only the sanity check validates.
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=1,
                            check_val_every_n_epoch=2)
    trainer.fit(Model())
    assert "val_loss" not in trainer.callback_metrics and "loss" in trainer.callback_metrics


def test_module_hooks_fire_in_lightning_order():
    calls = []
    names = ["prepare_data", "setup", "teardown", "on_fit_start", "on_fit_end", "on_train_start", "on_train_end",
             "on_epoch_start", "on_epoch_end", "on_train_epoch_start", "on_train_epoch_end", "training_epoch_end",
             "on_validation_start", "on_validation_end", "validation_epoch_end"]

    def recorder(name):
        def hook(self, *args):
            calls.append(name if name not in ("setup", "teardown") else f"{name}:{args[0]}")
        return hook

    Model = type("Model", (SeedModel,), {n: recorder(n) for n in names})
    quiet_trainer(max_epochs=2, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0).fit(Model())
    epoch = ["on_epoch_start", "on_train_epoch_start", "on_validation_start", "validation_epoch_end",
             "on_validation_end", "training_epoch_end", "on_train_epoch_end", "on_epoch_end"]
    assert calls == (["prepare_data", "setup:fit", "on_fit_start", "on_train_start"] + epoch * 2
                     + ["on_train_end", "on_fit_end", "teardown:fit"])


def test_on_batch_start_minus_one_skips_rest_of_epoch():
    class Model(SeedModel):
        def on_batch_start(self, batch):
            return -1 if self.trainer.state.batch_idx == 2 else None

    trainer = quiet_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(Model())
    # 2 batches in each of 2 epochs; current_epoch after a seed-era fit is 0.9's last epoch index
    assert trainer.global_step == 4 and trainer.state.epoch == 2 and trainer.current_epoch == 1


def test_model_stays_a_plain_module():
    model = SeedModel()
    quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0).fit(model)
    model.eval()
    assert model(torch.randn(3, 8)).shape == (3, 2)
    assert model.trainer is not None and isinstance(model.state_dict(), dict)


def test_validation_restores_each_submodule_mode():
    """A backbone the user froze in eval mode stays in eval mode after validation."""
    class Model(SeedModel):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.layer(self.norm(x))

        def on_train_start(self):
            self.norm.eval()  # frozen statistics

        def training_step(self, batch, batch_idx):
            assert self.training and not self.norm.training
            return super().training_step(batch, batch_idx)

    model = Model()
    quiet_trainer(max_epochs=1, limit_train_batches=4, val_check_interval=2, limit_val_batches=1).fit(model)
    assert model.training and not model.norm.training
