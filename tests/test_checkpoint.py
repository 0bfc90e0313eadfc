"""ModelCheckpoint: on by default, directories, names, top-k, last, periods; and what a checkpoint holds."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from engine import Callback, Trainer
from engine.errors import MisconfigurationException
from plugins import ModelCheckpoint
from tests.models import ModernModel, SeedModel

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


def _files(directory):
    return sorted(f for f in os.listdir(directory) if not f.startswith("."))


class Scripted(ModernModel):
    """Logs a scripted ``score`` per epoch (and ``val_loss`` from validation)."""

    def __init__(self, scores=(3.0, 1.0, 2.0, 0.5), **kw):
        super().__init__(**kw)
        self.scores = list(scores)

    def on_train_epoch_end(self):
        self.log("score", self.scores[self.current_epoch])


# ---------------------------------------------------------------------------------------
# on by default, off, instances
# ---------------------------------------------------------------------------------------


def test_default_checkpoint_lives_in_the_logger_version_dir_and_monitors_val_loss(tmp_path):
    trainer = Trainer(max_epochs=2, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(SeedModel())
    cb = trainer.checkpoint_callback
    assert isinstance(cb, ModelCheckpoint) and cb.monitor == "val_loss"
    assert cb.dirpath == os.path.join(trainer.log_dir, "checkpoints")
    assert trainer.log_dir.startswith(str(tmp_path)) and trainer.log_dir != str(tmp_path)
    assert _files(cb.dirpath) == [os.path.basename(cb.best_model_path)]
    assert cb.best_model_score == min(cb.best_k_models.values())


def test_default_without_logger_uses_default_root_dir_and_loss_without_validation(tmp_path):
    model = SeedModel()
    model.validation_step = None  # no validation: the seed-era default monitors `loss`
    trainer = Trainer(max_epochs=1, logger=False, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model)
    cb = trainer.checkpoint_callback
    assert cb.monitor == "loss"
    assert cb.dirpath == os.path.join(str(tmp_path), "checkpoints")
    assert _files(cb.dirpath) == ["epoch=0-step=8.ckpt"]


@pytest.mark.parametrize("flags", [dict(checkpoint_callback=False), dict(enable_checkpointing=False)])
def test_checkpointing_off(flags):
    trainer = Trainer(max_epochs=1, logger=False, **QUIET, **flags)
    trainer.fit(SeedModel())
    assert trainer.checkpoint_callback is None
    assert not os.path.exists("checkpoints")
    with pytest.raises(MisconfigurationException, match="ModelCheckpoint"):
        Trainer(callbacks=[ModelCheckpoint()], **flags)


@pytest.mark.parametrize("how", ["checkpoint_callback", "callbacks"])
def test_an_instance_is_used_instead_of_the_default(tmp_path, how):
    mine = ModelCheckpoint(dirpath=str(tmp_path / "mine"), filename="{epoch}-{val_loss:.2f}", monitor="val_loss")
    kwargs = {"checkpoint_callback": mine} if how == "checkpoint_callback" else {"callbacks": [mine]}
    trainer = Trainer(max_epochs=1, logger=False, **QUIET, **kwargs)
    trainer.fit(ModernModel())
    assert [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)] == [mine]
    (name,) = _files(tmp_path / "mine")
    val_loss = float(trainer.callback_metrics["val_loss"])
    assert name == f"epoch=0-val_loss={val_loss:.2f}.ckpt"


# ---------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, k, expected", [
    ("min", 1, ["epoch=3-score=0.50.ckpt"]),
    ("min", 2, ["epoch=1-score=1.00.ckpt", "epoch=3-score=0.50.ckpt"]),
    ("max", 2, ["epoch=0-score=3.00.ckpt", "epoch=2-score=2.00.ckpt"]),
    ("min", -1, ["epoch=0-score=3.00.ckpt", "epoch=1-score=1.00.ckpt", "epoch=2-score=2.00.ckpt",
                 "epoch=3-score=0.50.ckpt"]),
    ("min", 0, []),
])
def test_save_top_k_and_mode(tmp_path, mode, k, expected):
    cb = ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}-{score:.2f}", monitor="score", mode=mode,
                         save_top_k=k)
    Trainer(max_epochs=4, logger=False, callbacks=[cb], **QUIET).fit(Scripted())
    assert _files(tmp_path) == expected
    if k:
        best = {"min": 0.5, "max": 3.0}[mode]
        assert float(cb.best_model_score) == best
        assert os.path.basename(cb.best_model_path).endswith(f"score={best:.2f}.ckpt")
    else:
        assert cb.best_model_path == "" and cb.best_model_score is None


def test_save_last_and_best_model_path(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="score", save_last=True)
    trainer = Trainer(max_epochs=3, logger=False, callbacks=[cb], **QUIET)
    trainer.fit(Scripted())
    assert _files(tmp_path) == ["epoch=1-step=16.ckpt", "last.ckpt"]
    assert cb.last_model_path == str(tmp_path / "last.ckpt")
    assert cb.best_model_path == str(tmp_path / "epoch=1-step=16.ckpt")
    assert torch.load(cb.last_model_path, weights_only=True)["global_step"] == 24


def test_monitor_none_keeps_the_latest(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path))
    Trainer(max_epochs=3, logger=False, callbacks=[cb], **QUIET).fit(ModernModel())
    assert _files(tmp_path) == ["epoch=2-step=24.ckpt"]


def test_missing_monitor_is_an_error_listing_metrics(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_acc_typo")
    with pytest.raises(MisconfigurationException, match=r"val_acc_typo.*val_acc, val_loss"):
        Trainer(max_epochs=1, logger=False, callbacks=[cb], **QUIET).fit(ModernModel())


def test_every_n_epochs(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), save_top_k=-1, every_n_epochs=2)
    Trainer(max_epochs=5, logger=False, callbacks=[cb], **QUIET).fit(ModernModel())
    assert _files(tmp_path) == ["epoch=1-step=16.ckpt", "epoch=3-step=32.ckpt"]


def test_every_n_train_steps_saves_mid_epoch_and_registers_per_batch_hooks_only_then(tmp_path):
    steps = ModelCheckpoint(dirpath=str(tmp_path), save_top_k=-1, every_n_train_steps=3)
    trainer = Trainer(max_epochs=2, logger=False, callbacks=[steps], **QUIET)
    trainer.fit(ModernModel())
    assert set(_files(tmp_path)) == {f"epoch={s // 8}-step={s}.ckpt" for s in (3, 6, 9, 12, 15)}
    record = next(r for r in trainer.registry.records() if r.plugin is steps)
    assert "on_train_batch_end" in record.hooks
    # The defaults (per-epoch checkpoints, early stopping, checkpoint_io, signals) add nothing per batch.
    default = Trainer(max_epochs=1, logger=False, early_stop_callback=True, **QUIET)
    mine = {"checkpoint", "early_stopping", "checkpoint_io", "signals"}
    records = [r for r in default.registry.records() if r.name in mine]
    assert {r.name for r in records} == mine
    assert not [(r.name, h) for r in records for h in r.hooks if "batch" in h]


def test_an_existing_file_is_not_overwritten(tmp_path):
    (tmp_path / "epoch=0-step=8.ckpt").write_text("someone else's")
    cb = ModelCheckpoint(dirpath=str(tmp_path))
    Trainer(max_epochs=1, logger=False, callbacks=[cb], **QUIET).fit(ModernModel())
    assert (tmp_path / "epoch=0-step=8.ckpt").read_text() == "someone else's"
    assert cb.best_model_path == str(tmp_path / "epoch=0-step=8-v1.ckpt")


def test_a_name_that_comes_back_gets_a_version_and_no_kept_file_is_overwritten(tmp_path):
    """Two validations an epoch and ``filename='{epoch}'``: every kept checkpoint is its own file (Lightning 2.x's
    version counter), while a file that leaves the top-k may be overwritten by its successor of the same name."""
    cb = ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}", monitor="val_loss", save_top_k=-1)
    Trainer(max_epochs=2, logger=False, callbacks=[cb], val_check_interval=0.5, num_sanity_val_steps=0,
            **QUIET).fit(ModernModel())
    assert _files(tmp_path) == ["epoch=0-v1.ckpt", "epoch=0.ckpt", "epoch=1-v1.ckpt", "epoch=1.ckpt"]
    assert sorted(cb.best_k_models) == [str(tmp_path / f) for f in _files(tmp_path)]
    steps = sorted(torch.load(tmp_path / f, weights_only=True)["global_step"] for f in _files(tmp_path))
    assert steps == [4, 8, 12, 16]  # four different saves

    best = ModelCheckpoint(dirpath=str(tmp_path / "best"), filename="best", monitor="step_score", mode="max")

    class Rising(ModernModel):
        def validation_step(self, batch, batch_idx):
            self.log("step_score", float(self.global_step))

    Trainer(max_epochs=3, logger=False, callbacks=[best], num_sanity_val_steps=0, **QUIET).fit(Rising())
    assert _files(tmp_path / "best") == ["best.ckpt"]  # each better one replaced the file it evicted
    assert torch.load(tmp_path / "best" / "best.ckpt", weights_only=True)["global_step"] == 24


def test_a_second_run_into_the_directory_keeps_the_first_runs_last_checkpoint(tmp_path):
    first = ModelCheckpoint(dirpath=str(tmp_path), save_last=True, save_top_k=0)
    Trainer(max_epochs=1, logger=False, callbacks=[first], **QUIET).fit(ModernModel())
    second = ModelCheckpoint(dirpath=str(tmp_path), save_last=True, save_top_k=0)
    Trainer(max_epochs=2, logger=False, callbacks=[second], **QUIET).fit(ModernModel())
    assert _files(tmp_path) == ["last-v1.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 8
    assert second.last_model_path == str(tmp_path / "last-v1.ckpt")
    # ckpt_path='last' takes the newest of them; resuming it goes on writing that same file.
    third = ModelCheckpoint(dirpath=str(tmp_path), save_last=True, save_top_k=0)
    trainer = Trainer(max_epochs=3, logger=False, callbacks=[third], **QUIET)
    trainer.fit(ModernModel(), ckpt_path="last")
    assert trainer.ckpt_path == str(tmp_path / "last-v1.ckpt") and third.last_model_path == trainer.ckpt_path
    assert _files(tmp_path) == ["last-v1.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "last-v1.ckpt", weights_only=True)["global_step"] == 24


def test_checkpoint_runs_after_early_stopping():
    trainer = Trainer(logger=False, early_stop_callback=True, callbacks=[ModelCheckpoint()], **QUIET)
    order = [name for name, _ in trainer.registry.call_order("on_train_epoch_end")]
    assert order.index("early_stopping") < order.index(next(n for n in order if n.startswith("ModelCheckpoint")))


# ---------------------------------------------------------------------------------------
# what a checkpoint holds
# ---------------------------------------------------------------------------------------


class Counter(Callback):
    """A stateful callback; two instances coexist thanks to ``state_key``."""

    def __init__(self, name):
        self.name, self.count = name, 0

    @property
    def state_key(self):
        return f"Counter[{self.name}]"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.count += 1

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint.setdefault("extra", []).append(self.name)

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state_dict):
        self.count = state_dict["count"]


class Scheduled(ModernModel):
    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=0.01)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


def test_a_checkpoint_holds_everything_and_loads_with_weights_only(tmp_path):
    a, b = Counter("a"), Counter("b")
    trainer = Trainer(max_epochs=2, logger=False, callbacks=[a, b], early_stop_callback=True, **QUIET)
    trainer.fit(Scheduled(lr=0.01))
    path = str(tmp_path / "full.ckpt")
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    trainer.save_checkpoint(path)
    ck = torch.load(path, weights_only=True)
    from engine import __version__

    assert ck["hookloop_version"] == __version__
    assert ck["epoch"] == 2 and ck["global_step"] == 16
    assert ck["loop"]["resume_epoch"] == 2 and ck["loop"]["resume_batch"] == 0
    assert ck["state_dict"].keys() == trainer.lightning_module.state_dict().keys()
    assert ck["optimizer_states"][0]["state"][0]["exp_avg"].shape == (2, 8)
    assert ck["lr_schedulers"][0]["last_epoch"] == 2
    assert ck["callbacks"]["Counter[a]"] == {"count": 16} and ck["callbacks"]["Counter[b]"] == {"count": 16}
    assert any(k.startswith("EarlyStopping") for k in ck["callbacks"])
    assert any(k.startswith("ModelCheckpoint") for k in ck["callbacks"])
    assert ck["extra"] == ["a", "b"]
    assert ck["hyper_parameters"] == {"lr": 0.01, "n_train": 256, "batch_size": 32}
    assert torch.equal(ck["rng"]["torch"], torch.get_rng_state())
    random.seed(5)
    np.random.seed(6)
    assert ck["rng"]["python"]["state"].tolist() == list(random.getstate()[1])
    assert ck["rng"]["numpy"]["keys"].tolist() == np.random.get_state()[1].tolist()


def test_restoring_puts_back_every_part(tmp_path):
    a = Counter("a")
    trainer = Trainer(max_epochs=2, logger=False, callbacks=[a], **QUIET)
    trainer.fit(Scheduled(lr=0.01))
    trainer.save_checkpoint("two.ckpt")
    seen = {}

    class Peek(Callback):
        def on_train_start(self, trainer, pl_module):
            seen["epoch"], seen["step"] = trainer.current_epoch, trainer.global_step
            seen["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
            seen["exp_avg"] = trainer.optimizers[0].state_dict()["state"][0]["exp_avg"].clone()

    a2 = Counter("a")
    resumed = Trainer(max_epochs=3, logger=False, callbacks=[a2, Peek()], resume_from_checkpoint="two.ckpt", **QUIET)
    resumed.fit(Scheduled(lr=0.01))
    assert seen["epoch"] == 2 and seen["step"] == 16
    assert seen["lr"] == pytest.approx(0.01 * 0.25)
    assert torch.equal(seen["exp_avg"], trainer.optimizers[0].state_dict()["state"][0]["exp_avg"])
    assert a2.count == 16 + 8 and resumed.global_step == 24 and resumed.state.restored


def test_weights_only_checkpoint_cannot_resume_but_loads_a_module(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), save_weights_only=True)
    Trainer(max_epochs=1, logger=False, callbacks=[cb], **QUIET).fit(ModernModel(lr=0.2))
    ck = torch.load(cb.best_model_path, weights_only=True)
    assert "optimizer_states" not in ck and "state_dict" in ck
    assert ModernModel.load_from_checkpoint(cb.best_model_path).hparams.lr == 0.2
    with pytest.raises(RuntimeError, match="weights only"):
        Trainer(max_epochs=2, logger=False, **QUIET).fit(ModernModel(), ckpt_path=cb.best_model_path)


def test_validate_with_ckpt_path_best_loads_the_best_weights(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="score", mode="max")
    trainer = Trainer(max_epochs=3, logger=False, callbacks=[cb], **QUIET)
    model = Scripted(scores=(0.0, 9.0, 1.0))
    trainer.fit(model)
    best = torch.load(cb.best_model_path, weights_only=True)["state_dict"]
    assert not torch.equal(best["layer.weight"], model.layer.weight)
    trainer.validate(model, ckpt_path="best", verbose=False)
    assert trainer.ckpt_path == cb.best_model_path and torch.equal(best["layer.weight"], model.layer.weight)


def test_seed_era_filepath_template_and_auto_mode(tmp_path):
    template = str(tmp_path / "seed" / "{epoch}-{val_acc:.2f}")
    for cb in (ModelCheckpoint(filepath=template, monitor="val_acc", mode="auto"),
               ModelCheckpoint(template, monitor="val_acc", mode="auto")):
        assert cb.dirpath == str(tmp_path / "seed") and cb.filename == "{epoch}-{val_acc:.2f}" and cb.mode == "max"
    assert ModelCheckpoint(monitor="val_loss", mode="auto").mode == "min"
    cb = ModelCheckpoint(filepath=template, monitor="val_acc", mode="auto")
    Trainer(max_epochs=1, logger=False, callbacks=[cb], **QUIET).fit(ModernModel())
    assert os.path.basename(cb.best_model_path).startswith("epoch=0-val_acc=")


# ---------------------------------------------------------------------------------------
# monitors that are not there yet, last.ckpt between periods, resumed-from files, migrations
# ---------------------------------------------------------------------------------------


def test_a_monitor_not_logged_before_the_first_validation_is_a_warning_not_an_error(tmp_path):
    """check_val_every_n_epoch=2: epoch 0 ends before any validation logged val_loss (Lightning warns, skips)."""
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_loss", save_top_k=-1)
    trainer = Trainer(max_epochs=4, logger=False, callbacks=[cb], check_val_every_n_epoch=2, **QUIET)
    with pytest.warns(UserWarning, match=r"could not find 'val_loss'.*no validation has run yet"):
        trainer.fit(ModernModel())
    # Epoch 2 ends without a validation: its val_loss would be epoch 1's, so it ranks nothing (as in Lightning).
    assert _files(tmp_path) == ["epoch=1-step=16.ckpt", "epoch=3-step=32.ckpt"]


def test_an_epoch_without_validation_ranks_no_stale_score_but_updates_last(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_loss", save_top_k=-1, save_last=True)
    record = RecordSaves()
    with pytest.warns(UserWarning, match="no validation has run yet"):  # epoch 0
        Trainer(max_epochs=4, logger=False, callbacks=[cb, record], check_val_every_n_epoch=2,
                num_sanity_val_steps=0, **QUIET).fit(ModernModel())
    assert sorted(cb.best_k_models) == [str(tmp_path / "epoch=1-step=16.ckpt"), str(tmp_path / "epoch=3-step=32.ckpt")]
    # last.ckpt still follows every epoch: top-k file and last at 16 and 32, last alone at 24 (and 8).
    assert [step for step, _, _ in record.saves] == [8, 16, 16, 24, 32, 32]
    # A monitor that changes every epoch (a training metric) still ranks every epoch.
    every = ModelCheckpoint(dirpath=str(tmp_path / "train"), monitor="fit_loss_epoch", save_top_k=-1)

    class EpochLoss(ModernModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("fit_loss", loss, on_step=True, on_epoch=True)
            return loss

    Trainer(max_epochs=3, logger=False, callbacks=[every], check_val_every_n_epoch=2, num_sanity_val_steps=0,
            **QUIET).fit(EpochLoss())
    assert len(every.best_k_models) == 3


def test_a_monitor_still_missing_after_a_validation_is_an_error(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_los", every_n_train_steps=3)
    trainer = Trainer(max_epochs=2, logger=False, callbacks=[cb], val_check_interval=4, **QUIET)
    with pytest.raises(MisconfigurationException, match="val_los"), pytest.warns(UserWarning, match="val_los"):
        trainer.fit(ModernModel())
    assert trainer.global_step > 4  # the first step save warned; the one after validation raised


def test_save_last_updates_last_ckpt_at_every_epoch_end(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), every_n_epochs=2, save_last=True)
    Trainer(max_epochs=3, logger=False, callbacks=[cb], **QUIET).fit(ModernModel())
    assert torch.load(cb.last_model_path, weights_only=True)["global_step"] == 24  # epoch 2, not epoch 1's 16
    assert _files(tmp_path) == ["epoch=1-step=16.ckpt", "last.ckpt"]


def test_the_default_checkpoint_of_a_2x_run_keeps_the_latest_file(tmp_path):
    """Lightning 2.x's default ModelCheckpoint monitors nothing: the latest epoch's file is kept (and is what
    trainer.test() evaluates), though the run logs a ``val_loss`` that got worse."""

    class Worsening(ModernModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", float(self.current_epoch))

    trainer = Trainer(max_epochs=3, default_root_dir=str(tmp_path), logger=False, **QUIET)
    trainer.fit(Worsening())
    assert _files(tmp_path / "checkpoints") == ["epoch=2-step=24.ckpt"]
    assert trainer.checkpoint_callback.best_model_path.endswith("epoch=2-step=24.ckpt")
    assert "loss" not in trainer.callback_metrics  # 2.x has only what was logged
    resumed = Trainer(max_epochs=4, default_root_dir=str(tmp_path), logger=False, **QUIET)
    resumed.fit(Worsening(), ckpt_path=trainer.checkpoint_callback.best_model_path)
    assert _files(tmp_path / "checkpoints") == ["epoch=2-step=24.ckpt", "epoch=3-step=32.ckpt"]


def test_the_seed_default_checkpoint_keeps_the_latest_when_val_loss_is_never_logged(tmp_path):
    class AccuracyOnly(SeedModel):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            return {"val_acc": (self(x).argmax(-1) == y).float().mean()}

        def validation_epoch_end(self, outputs):
            acc = torch.stack([o["val_acc"] for o in outputs]).mean()
            return {"log": {"val_acc": acc}}

    trainer = Trainer(max_epochs=2, default_root_dir=str(tmp_path), logger=False, **QUIET)
    with pytest.warns(UserWarning, match="monitors 'val_loss', which was not logged; it keeps the latest"):
        trainer.fit(AccuracyOnly())
    assert _files(tmp_path / "checkpoints") == ["epoch=1-step=16.ckpt"]
    assert trainer.checkpoint_callback.best_model_path.endswith("epoch=1-step=16.ckpt")
    # A resumed run finds the default checkpoint's state under the key it started with.
    resumed = Trainer(max_epochs=3, default_root_dir=str(tmp_path), logger=False, **QUIET)
    with pytest.warns(UserWarning, match="keeps the latest"):
        resumed.fit(AccuracyOnly(), ckpt_path=trainer.checkpoint_callback.best_model_path)
    assert _files(tmp_path / "checkpoints") == ["epoch=1-step=16.ckpt", "epoch=2-step=24.ckpt"]


def test_resuming_never_deletes_the_checkpoint_it_resumed_from(tmp_path):
    first = ModelCheckpoint(dirpath=str(tmp_path))
    Trainer(max_epochs=2, logger=False, callbacks=[first], **QUIET).fit(ModernModel())
    resumed_from = first.best_model_path
    second = ModelCheckpoint(dirpath=str(tmp_path))
    Trainer(max_epochs=3, logger=False, callbacks=[second], **QUIET).fit(ModernModel(), ckpt_path=resumed_from)
    assert os.path.isfile(resumed_from)  # the user's file; Lightning keeps it too
    assert _files(tmp_path) == ["epoch=1-step=16.ckpt", "epoch=2-step=24.ckpt"]
    assert second.best_model_path == str(tmp_path / "epoch=2-step=24.ckpt")


class Renamed(ModernModel):
    """Version 2 of ModernModel: its layer is called ``proj``; old checkpoints are migrated on load."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.proj = self.layer
        del self.layer

    def forward(self, x):
        return self.proj(x)

    def on_load_checkpoint(self, checkpoint):
        weights = checkpoint["state_dict"]
        for key in [k for k in weights if k.startswith("layer.")]:
            weights["proj." + key[len("layer."):]] = weights.pop(key)


def test_on_load_checkpoint_runs_before_the_weights_load_so_it_can_migrate_them(tmp_path):
    old = ModernModel()
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, **QUIET)
    trainer.fit(old)
    path = str(tmp_path / "v1.ckpt")
    trainer.save_checkpoint(path)
    loaded = Renamed.load_from_checkpoint(path)
    assert torch.equal(loaded.proj.weight, old.layer.weight)
    resumed = Renamed()
    Trainer(max_epochs=2, logger=False, enable_checkpointing=False, **QUIET).fit(resumed, ckpt_path=path)
    assert resumed.trainer.global_step == 16
    validated = Renamed()
    Trainer(logger=False, **QUIET).validate(validated, ckpt_path=path)
    assert torch.equal(validated.proj.weight, old.layer.weight)


# ---------------------------------------------------------------------------------------
# validation in the middle of an epoch (val_check_interval)
# ---------------------------------------------------------------------------------------


class ScriptedValidation(ModernModel):
    """Validation run ``i`` logs ``val_score = scores[i]`` (8 training batches per epoch)."""

    def __init__(self, scores, **kw):
        super().__init__(**kw)
        self.scores, self.runs = list(scores), 0

    def on_validation_epoch_end(self):
        self.log("val_score", self.scores[self.runs])
        self.runs += 1


MID_EPOCH = dict(max_epochs=2, logger=False, val_check_interval=0.5, num_sanity_val_steps=0, **QUIET)


def test_every_mid_epoch_validation_saves(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_score", save_top_k=-1)
    Trainer(callbacks=[cb], **MID_EPOCH).fit(ScriptedValidation([4.0, 3.0, 2.0, 1.0]))
    # Validations after batches 4 and 8 of each epoch; the epoch-end one saves at on_train_epoch_end.
    assert _files(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt", "epoch=1-step=12.ckpt",
                                "epoch=1-step=16.ckpt"]
    mid = torch.load(str(tmp_path / "epoch=0-step=4.ckpt"), weights_only=True)
    assert (mid["loop"]["resume_epoch"], mid["loop"]["resume_batch"]) == (0, 4)  # resumes at the next batch


def test_the_best_model_of_a_mid_epoch_validation_is_kept(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_score", save_last=True)
    Trainer(callbacks=[cb], **MID_EPOCH).fit(ScriptedValidation([3.0, 2.0, 1.0, 4.0]))
    assert cb.best_model_path == str(tmp_path / "epoch=1-step=12.ckpt")  # the third validation, mid-epoch
    assert _files(tmp_path) == ["epoch=1-step=12.ckpt", "last.ckpt"]
    assert torch.load(cb.last_model_path, weights_only=True)["global_step"] == 16


def test_mid_epoch_saves_follow_every_n_epochs(tmp_path):
    cb = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_score", save_top_k=-1, every_n_epochs=2)
    Trainer(callbacks=[cb], **MID_EPOCH).fit(ScriptedValidation([4.0, 3.0, 2.0, 1.0]))
    assert _files(tmp_path) == ["epoch=1-step=12.ckpt", "epoch=1-step=16.ckpt"]


def test_no_mid_epoch_save_before_the_first_optimizer_step(tmp_path):
    """As in Lightning: a validation before any step (accumulating 4 batches, validating every 2) saves nothing."""
    cb = ModelCheckpoint(dirpath=str(tmp_path), save_top_k=-1)
    Trainer(max_epochs=1, logger=False, callbacks=[cb], accumulate_grad_batches=4, val_check_interval=2,
            num_sanity_val_steps=0, **QUIET).fit(ModernModel())
    assert _files(tmp_path) == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt"]


class RecordSaves(Callback):
    """Notes every checkpoint written: its step and where it resumes."""

    def __init__(self):
        self.saves = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        loop = checkpoint["loop"]
        self.saves.append((checkpoint["global_step"], loop["resume_epoch"], loop["resume_batch"]))


def test_a_stop_asked_for_in_a_mid_epoch_validation_saves_once_at_the_epochs_end(tmp_path):
    from plugins import EarlyStopping

    cb, record = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_score", save_top_k=-1), RecordSaves()
    stop = EarlyStopping(monitor="val_score", patience=0)
    Trainer(callbacks=[stop, cb, record], **{**MID_EPOCH, "max_epochs": 3}).fit(
        ScriptedValidation([2.0, 1.0, 3.0, 0.5]))
    # The third validation (mid-epoch 1, step 12) got worse: the run stops there; step 12 is saved once,
    # resuming after the epoch's end.
    assert record.saves == [(4, 0, 4), (8, 1, 0), (12, 2, 0)]
    assert _files(tmp_path) == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt", "epoch=1-step=12.ckpt"]


def test_a_validation_that_turns_out_to_end_the_epoch_is_rewritten_not_ranked_twice(tmp_path):
    """Data without a length: a validation every 4 batches, the epoch ends right after the one at batch 8."""
    cb, record = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_score", save_top_k=-1), RecordSaves()
    model = ScriptedValidation([3.0, 2.0, 1.0, 0.5])
    loader = model.train_dataloader()
    Trainer(callbacks=[cb, record], max_epochs=2, logger=False, val_check_interval=4, num_sanity_val_steps=0,
            **QUIET).fit(model, train_dataloaders=_Unsized(loader))
    assert record.saves == [(4, 0, 4), (8, 0, 8), (8, 1, 0), (12, 1, 4), (16, 1, 8), (16, 2, 0)]
    assert len(cb.best_k_models) == 4


class _Unsized:
    """An iterable over a loader's batches with no ``__len__``."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        return iter(self.loader)


def test_step_and_epoch_periods_together_are_rejected_as_in_lightning():
    with pytest.raises(MisconfigurationException, match="every N steps or every N epochs, not both"):
        ModelCheckpoint(every_n_train_steps=4, every_n_epochs=1)
    assert ModelCheckpoint(every_n_train_steps=4).every_n_epochs == 0
