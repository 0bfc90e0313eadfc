"""Which steps reach loggers (accumulation, ``log_every_n_steps``), the ``epoch`` every row carries, ``reduce_fx``."""
from __future__ import annotations

import builtins
import csv
import os

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from engine import LightningModule, Trainer
from engine.errors import MisconfigurationException
from plugins import CSVLogger, TensorBoardLogger
from tests.core_support import RecordingLogger as Recorder


class Indexed(LightningModule):
    """Logs its batch index per step; ``n_batches`` batches of 2 per epoch."""

    def __init__(self, n_batches: int = 8, seed_dicts: bool = False):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.n_batches, self.seed_dicts = n_batches, seed_dicts

    def _loader(self, n):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(2 * n, 4, generator=g), torch.randn(2 * n, 1, generator=g)),
                          batch_size=2)

    def train_dataloader(self):
        return self._loader(self.n_batches)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.seed_dicts:
            return {"loss": loss, "log": {"bidx": float(batch_idx)}}
        self.log("bidx", float(batch_idx))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class WithValidation(Indexed):
    def val_dataloader(self):
        return self._loader(2)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.seed_dicts:
            return {"val_loss": loss}
        self.log("val_loss", loss)


class SeedWithValidation(WithValidation):
    """Seed-era dicts throughout: a step ``'log'`` dict and an epoch-end one."""

    def __init__(self, n_batches: int = 8):
        super().__init__(n_batches, seed_dicts=True)

    def validation_epoch_end(self, outputs):
        avg = torch.stack([o["val_loss"] for o in outputs]).mean()
        return {"val_loss": avg, "log": {"val_loss": avg}}


def fit(model, **flags):
    flags.setdefault("max_epochs", 1)
    flags.setdefault("enable_progress_bar", False)
    flags.setdefault("enable_checkpointing", False)
    flags.setdefault("enable_model_summary", False)
    flags.setdefault("num_sanity_val_steps", 0)
    trainer = Trainer(**flags)
    trainer.fit(model)
    return trainer


# ---- 1. accumulation: one row per optimizer step ------------------------------------------------

@pytest.mark.parametrize("seed_dicts", [False, True])
@pytest.mark.parametrize("accumulate, every, n_batches, expected", [
    # x = the optimizer step, value = the index of the batch that stepped
    (2, 1, 8, [(0, 1.0), (1, 3.0), (2, 5.0), (3, 7.0)]),
    (2, 2, 8, [(1, 3.0), (3, 7.0)]),
    (1, 2, 8, [(1, 1.0), (3, 3.0), (5, 5.0), (7, 7.0)]),  # without accumulation: unchanged
    (3, 1, 7, [(0, 2.0), (1, 5.0), (2, 6.0)]),  # the epoch's last, incomplete group steps too
    ({0: 4}, 1, 8, [(0, 3.0), (1, 7.0)]),  # an {epoch: k} schedule
])
def test_accumulation_sends_one_row_per_optimizer_step(seed_dicts, accumulate, every, n_batches, expected):
    logger = Recorder()
    trainer = fit(Indexed(n_batches, seed_dicts=seed_dicts), logger=logger,
                  accumulate_grad_batches=accumulate, log_every_n_steps=every)
    assert logger.with_key("bidx") == expected
    steps = [step for step, _ in logger.rows]
    assert min(steps) >= 0 and len(steps) == len(set(steps))  # no step -1, no step twice
    assert trainer.global_step == len(expected) * every


# ---- 2. log_every_n_steps=0 and bad values --------------------------------------------------------

def test_log_every_n_steps_zero_turns_step_logging_off_but_keeps_epoch_values():
    class EpochToo(WithValidation):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss_both", loss, on_step=True, on_epoch=True)
            return loss

    logger = Recorder()
    trainer = fit(EpochToo(4), max_epochs=2, logger=logger, log_every_n_steps=0)
    assert logger.with_key("bidx") == [] and logger.with_key("loss_both_step") == []
    assert [step for step, _ in logger.with_key("loss_both_epoch")] == [3, 7]
    assert [step for step, _ in logger.with_key("val_loss")] == [3, 7]
    assert "bidx" in trainer.logged_metrics  # still in the trainer's dicts, only not sent
    assert trainer.registry.get_plugin("step_values") is None  # nothing listens per batch


@pytest.mark.parametrize("flags, name", [
    ({"log_every_n_steps": -1}, "log_every_n_steps"),
    ({"row_log_interval": -5}, "row_log_interval"),
    ({"log_every_n_steps": 2.5}, "log_every_n_steps"),
    ({"log_every_n_steps": True}, "log_every_n_steps"),
])
def test_bad_log_every_n_steps_is_rejected_at_construction(flags, name):
    with pytest.raises(MisconfigurationException, match=f"{name} must be an int >= 0"):
        Trainer(**flags)


# ---- 3. 'epoch' in every row ------------------------------------------------------------------

def test_step_rows_carry_the_epoch():
    logger = Recorder()
    fit(WithValidation(4), max_epochs=2, logger=logger, log_every_n_steps=2)
    assert [(step, row["epoch"]) for step, row in logger.rows if "bidx" in row] == [
        (1, 0.0), (3, 0.0), (5, 1.0), (7, 1.0)]
    assert all(isinstance(row["epoch"], float) for _, row in logger.rows)
    # validation rows carry it as before
    assert [(step, row["epoch"]) for step, row in logger.rows if "val_loss" in row] == [(3, 0.0), (7, 1.0)]


def test_seed_era_log_dicts_carry_the_epoch():
    logger = Recorder()
    fit(SeedWithValidation(4), max_epochs=2, logger=logger, log_every_n_steps=2)
    assert [(step, row["epoch"]) for step, row in logger.rows if "bidx" in row] == [
        (1, 0.0), (3, 0.0), (5, 1.0), (7, 1.0)]
    assert [(step, row["epoch"]) for step, row in logger.rows if "val_loss" in row] == [(3, 0.0), (7, 1.0)]


def test_a_logged_epoch_value_is_kept():
    class OwnEpoch(Indexed):
        def training_step(self, batch, batch_idx):
            self.log("epoch", 42.0)
            return super().training_step(batch, batch_idx)

    logger = Recorder()
    fit(OwnEpoch(2), logger=logger, log_every_n_steps=1)
    assert [row["epoch"] for _, row in logger.rows] == [42.0, 42.0]


def test_csv_and_tensorboard_read_back_the_epoch_in_step_rows():
    csv_logger, tb = CSVLogger(".", name="csv"), TensorBoardLogger(".", name="tb", default_hp_metric=False)
    fit(WithValidation(4), max_epochs=2, logger=[csv_logger, tb], log_every_n_steps=2)
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    # one row per step still: the validation values join the step row (same epoch, no clash)
    assert [(r["step"], r["epoch"], r["bidx"], r["val_loss"] != "") for r in rows] == [
        ("1", "0", "1.0", False), ("3", "0", "3.0", True), ("5", "1", "1.0", False), ("7", "1", "3.0", True)]
    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    assert sorted({(e.step, e.value) for e in acc.Scalars("epoch")}) == [(1, 0.0), (3, 0.0), (5, 1.0), (7, 1.0)]
    assert [(e.step, e.value) for e in acc.Scalars("bidx")] == [(1, 1.0), (3, 3.0), (5, 1.0), (7, 3.0)]


# ---- 4. reduce_fx -----------------------------------------------------------------------------

def _epoch_value(reduce_fx):
    class Reduced(Indexed):
        def training_step(self, batch, batch_idx):
            self.log("v", float(batch_idx), on_step=False, on_epoch=True, reduce_fx=reduce_fx)
            return super().training_step(batch, batch_idx)

    trainer = fit(Reduced(4), logger=False)
    return float(trainer.callback_metrics["v"])


@pytest.mark.parametrize("reduce_fx, expected", [
    ("mean", 1.5), ("avg", 1.5), ("AVG", 1.5), ("Sum", 6.0), ("max", 3.0), ("min", 0.0),
    (torch.mean, 1.5), (torch.sum, 6.0), (torch.max, 3.0), (torch.min, 0.0),
    (builtins.sum, 6.0), (builtins.max, 3.0), (builtins.min, 0.0),
])
def test_reduce_fx_accepts_lightnings_names_and_callables(reduce_fx, expected):
    assert _epoch_value(reduce_fx) == pytest.approx(expected)


@pytest.mark.parametrize("reduce_fx", ["median", torch.median, len, lambda t: t.mean(), ["sum"]])
def test_other_reduce_fx_values_are_rejected_naming_the_accepted_ones(reduce_fx):
    with pytest.raises(MisconfigurationException) as info:
        _epoch_value(reduce_fx)
    message = str(info.value)
    assert repr(reduce_fx) in message and "'avg'" in message and "torch.mean" in message


# ---- 5. step values of validation and test batches ------------------------------------------------

class EvalSteps(Indexed):
    """Logs each validation/test batch's index per step (``val_idx``), and both per step and per epoch (``val_both``)."""

    def __init__(self, n_val: int = 3, n_batches: int = 4):
        super().__init__(n_batches)
        self.n_val = n_val

    def val_dataloader(self):
        return self._loader(self.n_val)

    def test_dataloader(self):
        return self._loader(self.n_val)

    def validation_step(self, batch, batch_idx):
        self.log("val_idx", float(batch_idx), on_step=True, on_epoch=False)
        self.log("val_both", float(batch_idx), on_step=True, on_epoch=True)

    def test_step(self, batch, batch_idx):
        self.log("test_idx", float(10 + batch_idx), on_step=True, on_epoch=False)


def test_validation_step_values_reach_loggers_at_a_growing_batch_count():
    """As in Lightning 2.x: one row per validation batch; the x-axis counts the fit's validation batches."""
    logger = Recorder()
    fit(EvalSteps(n_val=3), logger=logger, max_epochs=2, num_sanity_val_steps=2)
    # The sanity check's two batches are not sent; each epoch's three are, at x = 0, 1, 2 then 3, 4, 5.
    assert logger.with_key("val_idx") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 0.0), (4, 1.0), (5, 2.0)]
    assert logger.with_key("val_both_step") == logger.with_key("val_idx")
    assert [v for _, v in logger.with_key("val_both_epoch")] == [1.0, 1.0]  # the epoch mean, as before
    assert [row for _, row in logger.rows if "val_idx" in row][0]["epoch"] == 0


def test_test_step_values_reach_loggers_and_count_from_zero_per_call():
    logger = Recorder()
    trainer = Trainer(logger=logger, enable_progress_bar=False, enable_model_summary=False)
    model = EvalSteps(n_val=2)
    trainer.test(model, verbose=False)
    trainer.test(model, verbose=False)
    assert logger.with_key("test_idx") == [(0, 10.0), (1, 11.0), (0, 10.0), (1, 11.0)]


def test_validation_step_values_go_to_a_csv_file(tmp_path):
    csv_logger = CSVLogger(str(tmp_path))
    fit(EvalSteps(n_val=2), logger=csv_logger, max_epochs=1)
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_idx")]
    assert [(r["step"], float(r["val_idx"])) for r in rows] == [("0", 0.0), ("1", 1.0)]


def test_a_seed_era_validation_step_log_dict_is_not_sent_per_batch():
    """0.8/0.9 sent a validation step's 'log' dict nowhere; only the epoch-end dict reaches loggers."""
    class SeedLog(SeedWithValidation):
        def validation_step(self, batch, batch_idx):
            out = super().validation_step(batch, batch_idx)
            out["log"] = {"val_step_log": float(batch_idx)}
            return out

    logger = Recorder()
    fit(SeedLog(), logger=logger)
    assert logger.with_key("val_step_log") == []
    assert len(logger.with_key("val_loss")) == 1


def test_eval_step_values_logged_late_or_in_batch_end_hooks_keep_lightnings_x_axis():
    """The sender listens from the first validation batch: values first logged in the second run continue the
    count (3, 4, 5), and values logged in on_validation_batch_end (module or callback) go out from batch 0."""
    from engine import Callback

    class Late(EvalSteps):
        def validation_step(self, batch, batch_idx):
            if self.current_epoch == 1:
                self.log("late", float(batch_idx), on_step=True, on_epoch=False)

        def on_validation_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            self.log("from_hook", float(batch_idx), on_step=True, on_epoch=False)

    class FromCallback(Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            pl_module.log("from_callback", float(batch_idx), on_step=True, on_epoch=False)

    logger = Recorder()
    fit(Late(n_val=3), logger=logger, max_epochs=2, callbacks=[FromCallback()])
    assert logger.with_key("late") == [(3, 0.0), (4, 1.0), (5, 2.0)]
    expected = [(0, 0.0), (1, 1.0), (2, 2.0), (3, 0.0), (4, 1.0), (5, 2.0)]
    assert logger.with_key("from_hook") == logger.with_key("from_callback") == expected
