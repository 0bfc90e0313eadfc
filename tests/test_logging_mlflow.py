"""MLFlowLogger with a real local file store, read back with MLflow's own client."""
from __future__ import annotations

import csv
import os
import pickle
import sys

import pytest
import yaml

from engine import seed_everything
from engine.errors import MisconfigurationException
from plugins import CSVLogger, MLFlowLogger, ModelCheckpoint
from tests.core_support import SecondRank, fit_for_logs
from tests.models import ModernModel


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch):
    """A file store allowed (MLflow 3.13+ asks for it), no telemetry, no tracking URI from outside."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def history(uri, run_id, key):
    return [(m.step, m.value) for m in sorted(client(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


def test_a_fit_logs_metrics_and_params_to_a_finished_run(tmp_path):
    uri = f"file:{tmp_path / 'store'}"
    logger = MLFlowLogger(experiment_name="digits", run_name="first", tracking_uri=uri, tags={"team": "vision"})
    csv_logger = CSVLogger(".", name="csv")
    trainer = fit_for_logs(ModernModel(lr=0.05, n_train=64), logger=[logger, csv_logger], log_every_n_steps=1,
                           enable_checkpointing=True)
    assert trainer.logger.experiment[0] is logger.experiment

    run = client(uri).get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert client(uri).get_experiment(run.info.experiment_id).name == "digits"
    assert run.data.params == {"lr": "0.05", "n_train": "64", "batch_size": "32"}
    assert run.data.tags["mlflow.runName"] == "first" and run.data.tags["team"] == "vision"
    assert (logger.name, logger.version) == (run.info.experiment_id, run.info.run_id)
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = [(int(r["step"]), float(r["train_loss"])) for r in rows if r["train_loss"]]
    logged = history(uri, logger.run_id, "train_loss")
    assert [s for s, _ in logged] == [s for s, _ in expected] == [0, 1, 2, 3]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected])
    assert [s for s, _ in history(uri, logger.run_id, "val_acc")] == [1, 3]
    # The default checkpoints go where Lightning puts them with this logger: the run's directory in the store
    ckpts = tmp_path / "store" / run.info.experiment_id / run.info.run_id / "checkpoints"
    assert os.listdir(ckpts) == ["epoch=1-step=4.ckpt"]


def test_default_store_prefix_and_a_failed_run(tmp_path):
    class Boom(ModernModel):
        def training_step(self, batch, batch_idx):
            if self.current_epoch == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = MLFlowLogger(prefix="fit")
    assert logger.save_dir == "./mlruns"
    with pytest.raises(RuntimeError, match="boom"):
        fit_for_logs(Boom(n_train=64), logger=logger, log_every_n_steps=1)
    uri = f"file:{tmp_path / 'mlruns'}"
    assert client(uri).get_run(logger.run_id).info.status == "FAILED"
    assert [s for s, _ in history(uri, logger.run_id, "fit-train_loss")] == [0, 1]
    assert client(uri).get_experiment_by_name("lightning_logs") is not None


def test_run_id_logs_to_an_existing_run_and_test_after_fit_joins_it(tmp_path):
    uri = f"file:{tmp_path / 'store'}"
    first = MLFlowLogger(tracking_uri=uri)
    trainer = fit_for_logs(ModernModel(n_train=64), max_epochs=1, logger=first)
    trainer.test(ModernModel(n_train=64), verbose=False)
    assert [s for s, _ in history(uri, first.run_id, "test_acc")] == [1]

    again = MLFlowLogger(tracking_uri=uri, run_id=first.run_id)
    again.log_metrics({"later": 1.0}, step=9)
    assert again.experiment_id == first.experiment_id
    assert history(uri, first.run_id, "later") == [(9, 1.0)]


def test_metric_names_are_cleaned_and_strings_left_out(tmp_path):
    uri = f"file:{tmp_path / 'store'}"
    logger = MLFlowLogger(tracking_uri=uri)
    with pytest.warns(RuntimeWarning, match="'acc@top1' is logged as 'acctop1'"):
        logger.log_metrics({"acc@top1": 0.5}, step=2)
    with pytest.warns(UserWarning, match="note='hello' is a string"):
        logger.log_metrics({"note": "hello", "loss": 1.5}, step=3)
    assert history(uri, logger.run_id, "acctop1") == [(2, 0.5)]
    assert history(uri, logger.run_id, "loss") == [(3, 1.5)]
    assert client(uri).get_metric_history(logger.run_id, "note") == []


def read_uploaded(uri, run_id, tmp_path):
    """``{checkpoint name: (files, metadata, aliases)}`` of the checkpoints uploaded to the run."""
    store = client(uri)
    out = {}
    for entry in store.list_artifacts(run_id, "model/checkpoints"):
        local = store.download_artifacts(run_id, entry.path, str(tmp_path / "downloads"))
        with open(os.path.join(local, "metadata.yaml")) as fh:
            metadata = yaml.safe_load(fh)
        with open(os.path.join(local, "aliases.txt")) as fh:
            aliases = fh.read()
        out[os.path.basename(entry.path)] = (sorted(os.listdir(local)), metadata, aliases)
    return out


@pytest.mark.parametrize("log_model", ["all", True])
def test_log_model_uploads_the_kept_checkpoints_with_their_metadata(tmp_path, log_model):
    seed_everything(0)  # epoch 1 improves on epoch 0, so its file replaces epoch 0's in the top 1
    uri = f"file:{tmp_path / 'store'}"
    logger = MLFlowLogger(tracking_uri=uri, log_model=log_model)
    checkpoint = ModelCheckpoint(dirpath="ckpts", monitor="val_loss", save_top_k=1, save_last=True)
    fit_for_logs(ModernModel(n_train=64), logger=logger, callbacks=[checkpoint], enable_checkpointing=True)
    assert os.path.basename(checkpoint.best_model_path) == "epoch=1-step=4.ckpt"

    uploaded = read_uploaded(uri, logger.run_id, tmp_path)
    best = os.path.splitext(os.path.basename(checkpoint.best_model_path))[0]
    # "all" also uploaded epoch 0's best file, dropped from the top 1 afterwards; True only what is kept at the end
    expected = {best, "last"} if log_model is True else {"epoch=0-step=2", "epoch=1-step=4", "last"}
    assert set(uploaded) == expected
    files, metadata, aliases = uploaded[best]
    assert files == sorted([f"{best}.ckpt", "metadata.yaml", "aliases.txt"])
    assert metadata["score"] == pytest.approx(checkpoint.best_model_score.item())
    assert metadata["original_filename"] == f"{best}.ckpt"
    assert metadata["ModelCheckpoint"]["monitor"] == "val_loss" and metadata["ModelCheckpoint"]["save_top_k"] == 1
    assert aliases == "['latest', 'best']" and uploaded["last"][2] == "['latest']"


def test_other_ranks_create_no_run(tmp_path):
    logger = MLFlowLogger(tracking_uri=f"file:{tmp_path / 'store'}")
    fit_for_logs(ModernModel(n_train=64), max_epochs=1, plugins=[SecondRank()], logger=logger, log_every_n_steps=1)
    assert logger.run_id is None and not (tmp_path / "store").exists()


def test_a_pickled_logger_logs_to_the_same_run(tmp_path):
    uri = f"file:{tmp_path / 'store'}"
    logger = MLFlowLogger(tracking_uri=uri)
    logger.log_metrics({"before": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))  # what strategy="ddp_spawn" sends each process
    copy.log_metrics({"after": 2.0}, step=1)
    assert copy.run_id == logger.run_id and history(uri, logger.run_id, "after") == [(1, 2.0)]


def test_a_file_store_mlflow_refuses_is_a_clear_error(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    uri = f"file:{tmp_path / 'store'}"
    try:
        client(uri)
    except MlflowException:
        pass
    else:
        pytest.skip("this MLflow keeps file stores without being asked")
    with pytest.raises(MisconfigurationException, match="MLFlowLogger.*MLFLOW_ALLOW_FILE_STORE=true.*sqlite"):
        MLFlowLogger(tracking_uri=uri).log_metrics({"x": 1.0}, step=0)


def test_mlflow_is_needed_only_when_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match="MLFlowLogger needs the `mlflow` package.*pip install mlflow"):
        MLFlowLogger()
