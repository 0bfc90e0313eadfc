"""0.8/0.9 code as researchers wrote it: OrderedDict returns, extra keys, test() after fit, 'auto' modes,
ModelCheckpoint(filepath=...), old Trainer flags and attributes, old optimizer_step signatures, hparams."""
from __future__ import annotations

import argparse
import os
import pathlib
from collections import OrderedDict

import pytest
import torch
from torch import nn

from engine import Trainer
from engine.errors import MisconfigurationException
from plugins import EarlyStopping, ModelCheckpoint
from tests.core_support import quiet_trainer
from tests.models import SeedModel, make_loader

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


class OrderedDictModel(SeedModel):
    """The 0.7/0.8 templates (and the GAN example) returned OrderedDicts."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        return OrderedDict({"loss": loss, "progress_bar": {"bar_loss": loss}, "log": {"od_loss": loss}})


def test_an_ordered_dict_step_output_is_logged_like_a_dict():
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(OrderedDictModel())
    assert "od_loss" in trainer.logged_metrics and "bar_loss" in trainer.progress_bar_metrics


class ExtraKeys(SeedModel):
    """Returns predictions with every step for an epoch-end metric, and a non-scalar at epoch end."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "preds": logits.detach(), "target": y,
                "flag": True, "note": "text", "n": len(y)}

    def training_epoch_end(self, outputs):
        self.seen_preds = sum(len(o["preds"]) for o in outputs)

    def validation_epoch_end(self, outputs):
        avg = torch.stack([o["val_loss"] for o in outputs]).mean()
        return {"val_loss": avg, "confusion": torch.zeros(2, 2), "progress_bar": {"val_acc": 1.0 - avg}}


def test_extra_keys_are_data_for_the_epoch_end_not_metrics():
    """0.8/0.9 took only numbers as monitor candidates; tensors of predictions, flags and text are the module's."""
    trainer = quiet_trainer(max_epochs=1)
    model = ExtraKeys()
    trainer.fit(model)
    assert model.seen_preds == 256
    metrics = trainer.callback_metrics
    assert "n" in metrics and not {"preds", "target", "flag", "note", "confusion"} & set(metrics)
    # 'progress_bar' values are monitor candidates too, as in 0.8/0.9 (callback_metrics.update(pbar)).
    assert float(metrics["val_acc"]) == pytest.approx(1.0 - float(metrics["val_loss"]))


def test_a_progress_bar_value_can_be_monitored(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_acc", save_top_k=1)
    Trainer(max_epochs=2, logger=False, callbacks=[checkpoint], **QUIET).fit(ExtraKeys())
    assert checkpoint.best_model_path and checkpoint.mode == "max"


class Evaluated(SeedModel):
    def test_step(self, batch, batch_idx):
        x, y = batch
        return {"test_loss": nn.functional.cross_entropy(self(x), y)}

    def test_epoch_end(self, outputs):
        return {"test_loss": torch.stack([o["test_loss"] for o in outputs]).mean()}

    def test_dataloader(self):
        return make_loader(64, 32, seed=2)


class WreckedAtTheEnd(Evaluated):
    """Validation is good after epoch 0; epoch 1 starts from destroyed weights."""

    def on_train_epoch_start(self):
        if self.current_epoch == 1:
            with torch.no_grad():
                self.layer.weight.mul_(-100.0)


def test_test_after_fit_evaluates_the_best_checkpoint(tmp_path, capsys):
    """As in Lightning 0.8 on (and 2.x): trainer.test() without a model tests the fit's best checkpoint."""
    trainer = Trainer(max_epochs=2, default_root_dir=str(tmp_path), logger=False, **QUIET)
    model = WreckedAtTheEnd()
    trainer.fit(model)
    best = trainer.checkpoint_callback.best_model_path
    assert best.endswith("epoch=0-step=8.ckpt")  # the wrecked epoch 1 did not improve val_loss
    current = trainer.test(model, verbose=False)[0]["test_loss"]  # a model passed: its own (last) weights
    assert "best checkpoint" not in capsys.readouterr().out
    tested = trainer.test(verbose=False)[0]["test_loss"]  # loads the best weights into the model, as Lightning
    assert "evaluates the best checkpoint of the fit" in capsys.readouterr().out
    from_best = trainer.test(Evaluated.load_from_checkpoint(best), verbose=False)[0]["test_loss"]
    assert tested == from_best != current


def test_auto_mode_is_the_default_so_accuracy_is_maximised(tmp_path):
    """0.8/0.9's mode='auto': an accuracy-like monitor is maximised without mode='max'."""
    assert ModelCheckpoint(monitor="val_acc").mode == "max" and EarlyStopping(monitor="val_acc").mode == "max"
    assert ModelCheckpoint(monitor="val_loss").mode == "min" and EarlyStopping().mode == "min"
    assert ModelCheckpoint(monitor="val_acc", mode="min").mode == "min"


def test_a_seed_era_filepath_checkpoint_monitors_val_loss(tmp_path):
    checkpoint = ModelCheckpoint(filepath=str(tmp_path / "{epoch}-{val_loss:.3f}"), save_top_k=2)
    Trainer(max_epochs=3, logger=False, checkpoint_callback=checkpoint, **QUIET).fit(SeedModel())
    assert checkpoint.monitor == "val_loss" and checkpoint.best_model_score is not None
    assert len(checkpoint.best_k_models) == 2 and all("val_loss=" in p for p in checkpoint.best_k_models)
    with pytest.raises(MisconfigurationException, match="needs a monitor"):
        ModelCheckpoint(dirpath=str(tmp_path), save_top_k=2)  # 2.x style: no monitor is no monitor


def test_renamed_ignored_and_refused_seed_flags():
    with pytest.warns(DeprecationWarning, match="val_percent_check"):
        trainer = Trainer(train_percent_check=0.5, val_percent_check=0.25, overfit_pct=0.0, logger=False)
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (0.5, 0.25)
    with pytest.warns(UserWarning, match=r"log_save_interval=100\) has no effect"):
        Trainer(log_save_interval=100, logger=False)
    with pytest.raises(MisconfigurationException, match=r"Trainer\(tpu_cores=.*not supported"):
        Trainer(tpu_cores=8)
    with pytest.raises(MisconfigurationException, match="amp_backend='apex'"):
        Trainer(amp_backend="apex")
    with pytest.raises(MisconfigurationException, match="max_nb_epochs.*Did you mean `max_epochs`"):
        Trainer(max_nb_epochs=3)


def test_seed_flags_parse_from_the_command_line(tmp_path):
    parser = Trainer.add_argparse_args(argparse.ArgumentParser())
    args = parser.parse_args(["--val_percent_check", "0.1", "--weights_save_path", str(tmp_path / "w")])
    with pytest.warns(DeprecationWarning):
        trainer = Trainer.from_argparse_args(args, logger=False, **QUIET)
    assert trainer.limit_val_batches == 0.1 and trainer.weights_save_path == str(tmp_path / "w")
    trainer.fit(SeedModel(), )
    assert os.listdir(tmp_path / "w" / "checkpoints")  # the default checkpoint went there


class Scheduled(SeedModel):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    def training_step(self, batch, batch_idx):
        # The 0.7/0.8 template's DP/DDP2 reshape, and learning-rate logging through the scheduler dicts.
        out = super().training_step(batch, batch_idx)
        if self.trainer.use_dp or self.trainer.use_ddp2:
            out["loss"] = out["loss"].unsqueeze(0)
        lr = self.trainer.lr_schedulers[0]["scheduler"].get_last_lr()[0]
        out["log"]["lr"] = torch.tensor(lr)
        return out


def test_seed_era_trainer_attributes():
    trainer = quiet_trainer(max_epochs=2)
    model = Scheduled()
    trainer.fit(model)
    assert float(trainer.logged_metrics["lr"]) == pytest.approx(0.05)  # epoch 1, after one StepLR step
    assert (trainer.use_dp, trainer.use_ddp, trainer.use_ddp2, trainer.use_amp, trainer.on_gpu) == (False,) * 5
    assert (trainer.root_gpu, trainer.num_gpus, trainer.proc_rank, trainer.data_parallel) == (None, 0, 0, False)
    assert trainer.lr_schedulers[0]["interval"] == "epoch" and trainer.row_log_interval == 50
    assert not trainer.disable_validation and not trainer.testing
    assert (model.use_dp, model.use_ddp, model.use_amp) == (False, False, False)
    assert set(trainer.progress_bar_dict) >= {"loss"} or trainer.progress_bar_callback is None


class OldOptimizerStep(SeedModel):
    """0.7-era override: the 4th argument is not called optimizer_idx."""

    def configure_optimizers(self):
        return [torch.optim.SGD([self.layer.weight], lr=0.1), torch.optim.SGD([self.layer.bias], lr=0.1)]

    def training_step(self, batch, batch_idx, optimizer_idx):
        return super().training_step(batch, batch_idx)

    def optimizer_step(self, current_epoch, batch_nb, optimizer, optimizer_i, second_order_closure=None):
        self.stepped = getattr(self, "stepped", {0: 0, 1: 0})
        if optimizer_i == 0 or batch_nb % 2 == 0:  # the generator every batch, the discriminator every 2nd
            optimizer.step(second_order_closure)
            self.stepped[optimizer_i] += 1
        optimizer.zero_grad()


def test_an_old_optimizer_step_signature_gets_the_index_and_the_closure():
    model = OldOptimizerStep()
    quiet_trainer(max_epochs=1).fit(model)
    assert model.stepped == {0: 8, 1: 4}


class PathHparams(SeedModel):
    def __init__(self, hparams):
        super().__init__(lr=hparams.lr)
        self.hparams = hparams


def test_none_and_path_hyperparameters_survive_a_checkpoint(tmp_path):
    hparams = argparse.Namespace(lr=0.05, gpus=None, data_dir=pathlib.Path("/data/x"), shape={1, 2})
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), logger=False, **QUIET)
    with pytest.warns(UserWarning, match=r"\['shape'\] are not plain data"):
        trainer.fit(PathHparams(hparams))
    loaded = PathHparams.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    # A path travels as its string and comes back a path (the file stays plain data).
    assert loaded.hparams.gpus is None and loaded.hparams.data_dir == pathlib.Path("/data/x")
    assert torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)["hyper_parameters"][
        "data_dir"] == "/data/x"


def test_a_2x_optimizer_step_with_extra_kwargs_gets_the_closure():
    class KwStep(SeedModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None, *args, **kwargs):
            self.got = (optimizer_closure, args)
            optimizer.step(closure=optimizer_closure)

    model = KwStep()
    quiet_trainer(max_epochs=1, limit_train_batches=2).fit(model)
    closure, args = model.got
    assert callable(closure) and args == ()


def test_seed_attributes_can_still_be_assigned():
    """Code of every era assigns some of these names itself (a module's ``self.use_amp = ...``)."""

    class OwnFlags(SeedModel):
        def __init__(self):
            super().__init__()
            self.use_amp = "mine"

    assert OwnFlags().use_amp == "mine" and SeedModel().use_amp is False
    trainer = quiet_trainer()
    trainer.testing = True
    trainer.weights_save_path = "/elsewhere"
    assert trainer.testing is True and trainer.weights_save_path == "/elsewhere"


@pytest.mark.parametrize("name, mode", [
    ("val_acc", "max"), ("val_accuracy", "max"), ("valacc", "max"), ("val_f1", "max"), ("fmeasure", "max"),
    ("val_loss", "min"), ("val_loss_accum", "min"), ("accuracy_error", "min"), ("val_acc_loss", "min"),
    ("val_accum", "min"), ("train/acc", "max"),
])
def test_auto_mode_reads_the_words_of_the_name(name, mode):
    assert ModelCheckpoint(monitor=name).mode == mode == EarlyStopping(monitor=name).mode


def test_a_best_checkpoint_that_is_gone_is_an_error_not_a_silent_test_of_other_weights(tmp_path):
    from plugins.checkpoint_io import CheckpointError

    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), logger=False, **QUIET)
    trainer.fit(Evaluated())
    os.remove(trainer.checkpoint_callback.best_model_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        trainer.test(verbose=False)


class SavedHparams(SeedModel):
    def __init__(self, lr: float = 0.05, width: int = 2):
        super().__init__(lr=lr)
        self.save_hyperparameters()


def test_load_from_checkpoint_takes_the_hyperparameters_of_an_hparams_file(tmp_path):
    """0.8/0.9 (and 2.x): ``hparams_file`` (the logger's hparams.yaml, or 0.8's csv) replaces the checkpoint's;
    keyword overrides still win."""
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(SavedHparams(lr=0.05))
    ckpt = trainer.checkpoint_callback.best_model_path
    written = pathlib.Path(trainer.logger.log_dir) / "hparams.yaml"
    assert "lr: 0.05" in written.read_text()
    written.write_text("lr: 0.001\nwidth: 2\n")
    assert SavedHparams.load_from_checkpoint(ckpt, hparams_file=str(written)).hparams.lr == 0.001
    assert SavedHparams.load_from_checkpoint(ckpt, hparams_file=written, lr=0.3).hparams.lr == 0.3
    tags = tmp_path / "meta_tags.csv"
    tags.write_text("key,value\nlr,0.002\nwidth,2\n")
    loaded = SavedHparams.load_from_checkpoint(ckpt, hparams_file=tags)
    assert loaded.hparams.lr == 0.002 and loaded.hparams.width == 2
    assert "hparams_file" not in loaded.hparams
    from plugins.checkpoint_io import CheckpointError

    with pytest.raises(CheckpointError, match=r"hparams_file='.*h.json': give a .yaml, .yml or .csv file"):
        SavedHparams.load_from_checkpoint(ckpt, hparams_file=str(tmp_path / "h.json"))
    with pytest.raises(CheckpointError, match=r"missing.yaml' does not exist"):
        SavedHparams.load_from_checkpoint(ckpt, hparams_file=str(tmp_path / "missing.yaml"))


def test_an_hparams_file_fills_a_seed_era_namespace(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), logger=False, **QUIET)
    trainer.fit(PathHparams(argparse.Namespace(lr=0.05, data_dir="/data/x")))
    yaml_file = tmp_path / "hparams.yaml"
    yaml_file.write_text("lr: 0.01\ndata_dir: /data/y\n")
    loaded = PathHparams.load_from_checkpoint(trainer.checkpoint_callback.best_model_path, hparams_file=yaml_file)
    assert loaded.hparams_assigned == "Namespace"  # built from a Namespace, as it was saved
    assert loaded.hparams.data_dir == "/data/y" and loaded.lr == 0.01


def test_more_0_9_trainer_attributes_callbacks_and_modules_read(monkeypatch):
    seen = {}

    class Model(SeedModel):
        def validation_step(self, batch, batch_idx):
            seen.setdefault("sanity", []).append(self.trainer.running_sanity_check)
            return super().validation_step(batch, batch_idx)

        def training_step(self, batch, batch_idx):
            seen.setdefault("total", []).append(self.trainer.total_batch_idx)
            assert self.trainer.get_model() is self
            return super().training_step(batch, batch_idx)

    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, log_save_interval=10,
                      reload_dataloaders_every_epoch=True, num_sanity_val_steps=1, limit_val_batches=1, **QUIET)
    trainer.fit(Model(n_train=96))
    assert seen["sanity"] == [True, False, False]  # the sanity check's one batch, then each epoch's
    assert seen["total"] == list(range(6)) and trainer.total_batch_idx == 6
    assert (trainer.log_save_interval, trainer.amp_level, trainer.reload_dataloaders_every_epoch) == (10, "O2", True)
    assert (trainer.tpu_cores, trainer.on_tpu, trainer.data_parallel_device_ids) == (None, False, None)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert trainer.slurm_job_id == 1234
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive job is no batch job
    assert trainer.slurm_job_id is None


def test_device_ids_num_devices_and_the_test_dataloaders_as_in_2x():
    assert (Trainer(logger=False).device_ids, Trainer(logger=False).num_devices) == ([0], 1)
    ddp = Trainer(logger=False, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert (ddp.device_ids, ddp.num_devices) == ([0, 1], 2)
    from tests.models import ModernModel

    class Model(ModernModel):
        def predict_step(self, batch, batch_idx):
            return self(batch[0])

    trainer = quiet_trainer(max_epochs=1)
    model = Model(n_train=64)
    loader = make_loader(32, 16)
    trainer.test(model, dataloaders=[loader, make_loader(16, 16)], verbose=False)
    assert trainer.test_dataloaders[0] is loader and len(trainer.test_dataloaders) == 2
    trainer.predict(model, dataloaders=loader)
    assert trainer.predict_dataloaders == [loader]
