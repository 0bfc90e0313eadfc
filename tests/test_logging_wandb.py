"""WandbLogger, run for real in offline mode: a fit's metrics, hyperparameters, media and checkpoints read back
from the run's own files."""
from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys

import pytest
import torch

from plugins import CSVLogger, ModelCheckpoint, WandbLogger
from plugins.logger_base import DummyExperiment
from tests.core_support import SecondRank, fit_for_logs
from tests.models import ModernModel
from tests.wandb_support import finish_and_read


@pytest.fixture(autouse=True)
def wandb_env(tmp_path, monkeypatch):
    """wandb quiet and confined to ``tmp_path`` (config, cache, artifact staging); the run finished at the end."""
    for name, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(name, str(tmp_path / ".wandb-home" / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    # No stdout/stderr capture: its hooks outlive a finished run and log errors into later tests' output.
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    import wandb

    yield wandb
    if wandb.run is not None:
        wandb.finish()


def test_a_fit_offline_logs_metrics_at_the_global_step_and_the_hyperparameters():
    logger = WandbLogger(name="first", project="digits", offline=True)
    csv_logger = CSVLogger(".", name="csv")
    trainer = fit_for_logs(ModernModel(lr=0.05, n_train=64), logger=[logger, csv_logger], log_every_n_steps=1,
                           enable_checkpointing=True)
    run_id = logger.experiment.id
    assert trainer.loggers == [logger, csv_logger] and trainer.logger.experiment[0] is logger.experiment
    assert logger.version == run_id and logger.name == "digits" and logger.save_dir == "."
    # The default checkpoints go where Lightning puts them with this logger: save_dir/project/run id/checkpoints
    assert os.listdir(os.path.join("digits", run_id, "checkpoints")) == ["epoch=1-step=4.ckpt"]
    run = finish_and_read()
    assert (run.run_id, run.project, run.display_name, run.finished) == (run_id, "digits", "first", True)
    assert {k: run.config[k] for k in ("lr", "n_train", "batch_size")} == {"lr": 0.05, "n_train": 64, "batch_size": 32}
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = [(int(r["step"]), float(r["train_loss"])) for r in rows if r["train_loss"]]
    assert [s for s, _ in expected] == [0, 1, 2, 3]
    assert [s for s, _ in run.values("train_loss")] == [s for s, _ in expected]
    assert [v for _, v in run.values("train_loss")] == pytest.approx([v for _, v in expected])
    assert [s for s, _ in run.values("val_acc")] == [1, 3]
    assert [v for _, v in run.values("epoch")] == [0, 0, 0, 1, 1, 1]  # every row carries its epoch


def test_prefix_id_and_a_module_using_the_run_directly():
    class UsesRun(ModernModel):
        def on_train_epoch_end(self):
            self.logger.experiment.log({"custom": 7.0, "trainer/global_step": self.global_step})

    logger = WandbLogger(save_dir="runs", version="fixedid1", offline=True, prefix="train")
    fit_for_logs(UsesRun(n_train=64), max_epochs=1, logger=logger, log_every_n_steps=1)
    assert logger.log_dir == os.path.join("runs", "lightning_logs", "fixedid1")
    run = finish_and_read("runs")
    assert run.run_id == "fixedid1"
    assert [s for s, _ in run.values("train-train_loss")] == [0, 1] and not run.values("train_loss")
    assert run.values("custom") == [(2, 7.0)]


def test_images_tables_and_text():
    logger = WandbLogger(offline=True)
    images = [torch.rand(3, 8, 8), torch.rand(3, 8, 8)]
    logger.log_image("samples", images, step=5, caption=["a", "b"])
    logger.log_table("scores", columns=["name", "score"], data=[["x", 1.0], ["y", 2.0]], step=6)
    logger.log_text("notes", columns=["text"], data=[["hello"]], step=6)
    with pytest.raises(ValueError, match="2 images but 1 values for 'caption'"):
        logger.log_image("bad", images, caption=["only one"])
    with pytest.raises(TypeError, match='"images" must be a list'):
        logger.log_image("bad", images[0])
    run = finish_and_read()
    (step, samples), = run.values("samples/captions")
    assert (step, samples) == (5, ["a", "b"])
    (_, names), = run.values("samples/filenames")
    assert len(names) == 2 and all(os.path.isfile(os.path.join(run.files, n)) for n in names)
    assert [s for s, _ in run.values("scores/_type")] == [6] and run.values("scores/_type")[0][1] == "table-file"
    (_, table_path), = run.values("notes/path")
    with open(os.path.join(run.files, table_path)) as fh:
        assert "hello" in fh.read()


@pytest.mark.parametrize("log_model, expected", [
    # "all": each file when it is saved (epoch 0's best, then epoch 1's best, last.ckpt each time)
    ("all", 4),
    # True: the files kept when fit ends (the top 2 and last.ckpt), once each
    (True, 3),
])
def test_log_model_uploads_checkpoints_as_model_artifacts(log_model, expected):
    logger = WandbLogger(offline=True, log_model=log_model)
    checkpoint = ModelCheckpoint(dirpath="ckpts", monitor="val_loss", save_top_k=2, save_last=True)
    fit_for_logs(ModernModel(n_train=64), logger=logger, callbacks=[checkpoint], enable_checkpointing=True)
    run_id = logger.experiment.id
    artifacts = finish_and_read().artifacts
    assert len(artifacts) == expected
    assert {a.name for a in artifacts} == {f"model-{run_id}"} and {a.type for a in artifacts} == {"model"}
    import json

    kept = {os.path.basename(p) for p in checkpoint.best_k_models} | {"last.ckpt"}
    names = [json.loads(a.metadata)["original_filename"] for a in artifacts]
    assert set(names) == kept
    best = [a for a in artifacts if "best" in a.aliases]
    assert [json.loads(a.metadata)["original_filename"] for a in best][-1] == os.path.basename(
        checkpoint.best_model_path)
    assert json.loads(best[-1].metadata)["score"] == pytest.approx(checkpoint.best_model_score.item())
    assert all("latest" in a.aliases for a in artifacts)


def test_log_model_false_uploads_nothing_and_a_bad_value_is_an_error():
    from engine.errors import MisconfigurationException

    with pytest.raises(MisconfigurationException, match="log_model='best'.*False.*True.*'all'"):
        WandbLogger(offline=True, log_model="best")
    logger = WandbLogger(offline=True)
    fit_for_logs(ModernModel(n_train=64), max_epochs=1, logger=logger, enable_checkpointing=True)
    assert finish_and_read().artifacts == []


def test_watch_logs_gradient_histograms():
    model = ModernModel(n_train=64)
    logger = WandbLogger(offline=True)
    logger.watch(model, log_freq=1, log_graph=False)
    fit_for_logs(model, max_epochs=1, logger=logger, log_every_n_steps=1)
    keys = set().union(*finish_and_read().history)
    assert any(k.startswith("gradients/layer.weight") for k in keys)


def test_other_ranks_create_no_run(wandb_env):
    logger = WandbLogger(offline=True)
    fit_for_logs(ModernModel(n_train=64), max_epochs=1, plugins=[SecondRank()], logger=logger, log_every_n_steps=1)
    assert isinstance(logger.experiment, DummyExperiment) and wandb_env.run is None
    assert not os.path.exists("wandb")


def test_a_pickled_logger_logs_to_the_same_run():
    logger = WandbLogger(offline=True)
    logger.log_metrics({"before": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))  # what strategy="ddp_spawn" sends each process
    copy.log_metrics({"after": 2.0}, step=1)
    assert copy.experiment.id == logger.experiment.id
    run = finish_and_read()
    assert run.values("before") == [(0, 1.0)] and run.values("after") == [(1, 2.0)]


def test_an_existing_run_is_reused_with_a_warning(wandb_env):
    run = wandb_env.init(mode="offline", dir=".")
    with pytest.warns(UserWarning, match="already in progress"):
        assert WandbLogger(offline=True).experiment is run
    given = WandbLogger(experiment=run)
    assert given.experiment is run and given.version == run.id


def test_wandb_is_needed_only_when_used_and_import_plugins_imports_neither_wandb_nor_mlflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match="WandbLogger needs the `wandb` package.*pip install wandb"):
        WandbLogger(offline=True)
    code = ("import sys\nimport plugins\nfrom plugins import MLFlowLogger, WandbLogger\nfrom engine import Trainer\n"
            "Trainer(logger=False)\nprint(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"  # neither logger's package is imported until a run needs it
