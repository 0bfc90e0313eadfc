"""The tqdm progress bar: what it shows, in a terminal and in a log file, and how to turn it off."""
from __future__ import annotations

import io
import re

import pytest
import torch

from engine import Callback, Trainer
from plugins.progress import TQDMProgressBar
from tests.models import ModernModel, SeedModel


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def screen(raw: str):
    """What a terminal shows after ``raw``: handles newlines, carriage returns and cursor-up."""
    rows, row, col = [[]], 0, 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[A", i):
            row, i = max(row - 1, 0), i + 3
            continue
        ch = raw[i]
        i += 1
        if ch == "\n":
            row, col = row + 1, 0
            while len(rows) <= row:
                rows.append([])
        elif ch == "\r":
            col = 0
        else:
            line = rows[row]
            line.extend(" " * (col - len(line) + 1) if col >= len(line) else "")
            line[col] = ch
            col += 1
    return [s for s in ("".join(r).rstrip() for r in rows) if s]


class BarModel(ModernModel):
    """Logs a prog_bar value and returns a seed-era 'progress_bar' dict."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return {"loss": loss, "progress_bar": {"shown_lr": 0.05}}


def fit(model, **flags):
    flags.setdefault("max_epochs", 2)
    flags.setdefault("weights_summary", None)
    flags.setdefault("logger", False)
    flags.setdefault("enable_checkpointing", False)
    trainer = Trainer(**flags)
    trainer.fit(model)
    return trainer


def test_plain_lines_when_stdout_is_not_a_terminal(capsys):
    fit(BarModel(n_train=32 * 40), max_epochs=3, logger=True)  # 40 batches per epoch
    lines = capsys.readouterr().out.splitlines()
    epochs = [l for l in lines if l.startswith("Epoch")]
    assert len(lines) == len(epochs) == 3  # one line per epoch, no bar redraws
    for n, line in enumerate(epochs):
        assert line.startswith(f"Epoch {n}: 100%") and "40/40" in line
        assert re.search(r"loss=\d\.\d+", line)
        assert "v_num=0" in line
        for name in ("train_loss=", "val_acc=", "shown_lr=0.05"):
            assert name in line
    assert "val_loss" not in epochs[-1]  # not a prog_bar value


def test_terminal_bar_per_epoch_and_validation_leaves_no_trail():
    term = FakeTerminal()
    fit(BarModel(n_train=128), callbacks=[TQDMProgressBar(file=term)])
    raw = term.getvalue()
    assert "Sanity Checking" in raw and "Validation" in raw  # drawn while running...
    shown = screen(raw)
    assert [l.split(":")[0] for l in shown] == ["Epoch 0", "Epoch 1"]  # ...but only the epoch bars remain
    assert all("4/4" in l and "loss=" in l and "val_acc=" in l and "shown_lr=" in l for l in shown)


def test_refresh_rate_moves_the_bar_every_n_batches():
    term = FakeTerminal()
    trainer = fit(ModernModel(n_train=16 * 8, batch_size=8), max_epochs=1, progress_bar_refresh_rate=4,
                  callbacks=[], num_sanity_val_steps=0, limit_val_batches=0)
    assert trainer.plugin("progress_bar").refresh_rate == 4
    bar = TQDMProgressBar(refresh_rate=4, file=term)
    fit(ModernModel(n_train=16 * 8, batch_size=8), max_epochs=1, callbacks=[bar], limit_val_batches=0)
    counts = {int(m) for m in re.findall(r"(\d+)/16", term.getvalue())}
    assert 16 in counts and counts <= {0, 4, 8, 12, 16}


@pytest.mark.parametrize("flags", [{"enable_progress_bar": False}, {"progress_bar_refresh_rate": 0}])
def test_turned_off(capsys, flags):
    trainer = fit(ModernModel(n_train=64), **flags)
    assert "progress_bar" not in trainer.registry.names()
    assert capsys.readouterr().out == ""


def test_one_bar_over_steps_when_max_steps_drives_training(capsys):
    fit(SeedModel(n_train=64), max_epochs=None, max_steps=12)  # 2 batches per epoch, 6 epochs
    lines = capsys.readouterr().out.splitlines()
    assert not [l for l in lines if l.startswith("Epoch")]
    assert 1 <= len(lines) <= 5 and all(l.startswith("Training") for l in lines)
    assert "12/12" in lines[-1] and "loss=" in lines[-1]


def test_standalone_test_keeps_its_bar(capsys):
    model = ModernModel(n_train=64)
    trainer = Trainer(logger=False, enable_checkpointing=False, weights_summary=None)
    trainer.test(model)
    out = capsys.readouterr().out
    assert out.startswith("Testing") and "2/2" in out  # with its total, as the epoch bars have
    assert trainer.num_test_batches == [2]


def test_long_epoch_without_terminal_prints_every_quarter(capsys):
    # 1000 batches of 1 sample: a long epoch gets a line at each quarter, and only those.
    fit(SeedModel(n_train=1000, batch_size=1), max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
    lines = capsys.readouterr().out.splitlines()
    counts = [int(re.search(r"(\d+)/1000", l).group(1)) for l in lines]
    assert counts == [250, 500, 750, 1000]
    assert all("loss=" in l for l in lines)


def test_step_bar_with_accumulation_prints_every_quarter_of_the_steps(capsys):
    # 16 batches per epoch, 2 per optimizer step: the bar counts steps (8 per epoch), not batches.
    fit(SeedModel(n_train=16 * 8, batch_size=8), max_epochs=None, max_steps=16, accumulate_grad_batches=2,
        limit_val_batches=0, num_sanity_val_steps=0)
    lines = capsys.readouterr().out.splitlines()
    assert [int(re.search(r"(\d+)/16", l).group(1)) for l in lines] == [4, 8, 12, 16]


def test_terminal_bar_moves_in_batches_of_about_a_redraw_not_every_batch(monkeypatch):
    # tqdm redraws at most every 0.1 s: moving it per fast batch would only cost time. Count the moves.
    import tqdm

    moves = []
    real_update = tqdm.tqdm.update
    monkeypatch.setattr(tqdm.tqdm, "update", lambda self, n=1: (moves.append(n), real_update(self, n))[1])
    term = FakeTerminal()
    fit(SeedModel(n_train=1000, batch_size=1), max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[TQDMProgressBar(file=term)])
    assert sum(moves) == 1000 and "1000/1000" in screen(term.getvalue())[-1]
    assert len(moves) < 500  # one per batch before; a few dozen at most now, even on a slow machine


def test_a_failed_epoch_shows_every_batch_that_finished(capsys):
    class Failing(SeedModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 600:
                raise RuntimeError("boom at 600")
            return super().training_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match="boom at 600"):
        fit(Failing(n_train=1000, batch_size=1), max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
    lines = capsys.readouterr().out.splitlines()
    assert "250/1000" in lines[0] and "500/1000" in lines[1]
    assert "600/1000" in lines[-1]  # the bar moves only when due, but its last line counts all 600


class TwoStepsPerBatch(SeedModel):
    """Manual optimization stepping two optimizers per batch: global_step moves by 2 per batch."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.other = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        for opt in self.optimizers():
            loss = super().training_step(batch, batch_idx)["loss"]
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def configure_optimizers(self):
        return [torch.optim.SGD(self.layer.parameters(), lr=0.1), torch.optim.SGD(self.other.parameters(), lr=0.1)]


def test_step_bar_with_two_steps_per_batch_prints_every_quarter(capsys):
    # One long epoch (100 batches, 200 steps' worth): max_steps=100 ends it after 50 batches.
    fit(TwoStepsPerBatch(n_train=100 * 8, batch_size=8), max_epochs=None, max_steps=100,
        limit_val_batches=0, num_sanity_val_steps=0)
    lines = capsys.readouterr().out.splitlines()
    assert [int(re.search(r"(\d+)/100", l).group(1)) for l in lines] == [26, 52, 78, 100]


def test_terminal_bar_keeps_moving_when_batches_slow_down_after_a_fast_start(monkeypatch):
    # A fake clock: the first batch takes 1 µs (a prefetched batch), every other one 10 ms. The bar
    # must not extrapolate the first pace into tens of thousands of batches between moves.
    import types

    import plugins.progress as progress

    clock = [0.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    class Paced(SeedModel):
        def training_step(self, batch, batch_idx):
            clock[0] += 1e-6 if batch_idx == 0 else 0.01
            return super().training_step(batch, batch_idx)

    moves = []
    bar = TQDMProgressBar(file=FakeTerminal())
    real_advance = bar._advance
    monkeypatch.setattr(bar, "_advance", lambda trainer: (moves.append(trainer.state.batch_idx), real_advance(trainer)))
    fit(Paced(n_train=200, batch_size=1), max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[bar])
    # At 10 ms per batch the bar moves about every 5 batches (MOVE_INTERVAL = 50 ms) once it has adapted.
    assert len(moves) >= 20, moves


class IndexLoss(ModernModel):
    """Batch ``i``'s loss is ``i`` (plus a zero term that keeps it differentiable): the bar's mean is checkable."""

    def training_step(self, batch, batch_idx):
        return (self.layer.weight * 0).sum() + float(batch_idx)


class RecordingBar(TQDMProgressBar):
    """The built-in bar, noting the running-mean loss each time it computes what to show."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown = []

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        self.shown.append(metrics.get("loss"))
        return metrics


@pytest.mark.parametrize("sized", [True, False], ids=["known_length", "unknown_length"])
def test_the_loss_shown_is_the_mean_of_the_last_20_batches(capsys, sized):
    """Each line's loss is the running mean of the 20 batches before it, though losses are kept only near a draw."""
    model = IndexLoss(n_train=1010, batch_size=1)  # quarters of 253: the epoch ends before a fourth
    loader = model.train_dataloader()
    bar = RecordingBar()
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                      limit_val_batches=0, num_sanity_val_steps=0, callbacks=[bar])
    trainer.fit(model, train_dataloaders=loader if sized else (batch for batch in loader))
    lines = capsys.readouterr().out.splitlines()
    # Without a terminal: a line at each quarter of a long epoch (batches 233..252 before the first, and so
    # on) and at its end, or, for an epoch the bar cannot see the end of, one line at its end.
    ends = (253, 506, 759, 1010) if sized else (1010,)
    assert bar.shown == [sum(range(n - 20, n)) / 20 for n in ends]
    assert len(lines) == (4 if sized else 1)


def test_the_bar_leaves_on_train_batch_end_without_listeners(capsys):
    """The bar listens on ``on_batch_end``: no ``{'loss': loss.detach()}`` is built per batch for it."""
    trainer = fit(ModernModel(), max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0)
    assert trainer.hooks.on_train_batch_end is None
    assert "progress_bar" in [name for name, _ in trainer.registry.call_order("on_batch_end")]


class EpochIndexLoss(IndexLoss):
    """Batch ``i`` of epoch ``e`` has loss ``i + 1000 * e``."""

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + 1000.0 * self.current_epoch


def _fit_recording(model, **flags):
    bar = RecordingBar(**{k: flags.pop(k) for k in ("refresh_rate",) if k in flags})
    Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
            num_sanity_val_steps=0, callbacks=[bar] + flags.pop("callbacks", []), **flags).fit(model)
    return bar.shown


def test_the_shown_loss_covers_epochs_that_end_early(capsys):
    """max_steps, should_stop, a short iterable: the line at the end still shows the last 20 batches' mean."""
    assert _fit_recording(EpochIndexLoss(n_train=100, batch_size=1), max_epochs=2, max_steps=30) == [19.5]

    class StopAt29(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 29:
                trainer.should_stop = True

    assert _fit_recording(EpochIndexLoss(n_train=100, batch_size=1), max_epochs=3, callbacks=[StopAt29()]) == [89.5, 1019.5]

    class Short(IndexLoss):
        def train_dataloader(self):
            return (torch.zeros(1, 8) for _ in range(50))  # fewer batches than the limit below

    assert _fit_recording(Short(), max_epochs=1, limit_train_batches=100) == [39.5]


def test_the_step_bar_shows_the_last_batches_at_the_end(capsys):
    shown = _fit_recording(IndexLoss(n_train=1000, batch_size=1), max_steps=110, refresh_rate=50)
    assert shown[-1] == 99.5


class NoVersionModel(SeedModel):
    """Seed era: the bar's items come from an overridden get_progress_bar_dict (v_num dropped, one item added)."""

    def get_progress_bar_dict(self):
        items = super().get_progress_bar_dict()
        items.pop("v_num", None)
        items["lr"] = torch.tensor(self.lr)
        return items


def test_seed_era_get_progress_bar_dict_override_decides_the_bar_items(capsys):
    trainer = fit(NoVersionModel(n_train=64), max_epochs=1, logger=True)
    line = capsys.readouterr().out.splitlines()[-1]
    assert re.search(r"loss=\d\.\d+", line) and "lr=0.05" in line  # super() gave the loss; the tensor shows as a number
    assert "v_num" not in line
    # Without an override the module gives the bar's own items, as Lightning 0.9's default did.
    defaults = SeedModel.get_progress_bar_dict(trainer.lightning_module)
    assert set(defaults) == {"loss", "v_num"} and defaults["v_num"] == 0


class RunningLossModel(SeedModel):
    """The common 0.8/0.9 override (as in transformers' lightning_base): reads trainer.running_loss itself."""

    def get_progress_bar_dict(self):
        running = self.trainer.running_loss.mean()
        return {"loss": "{:.3f}".format(running.item() if running is not None else float("nan")), "lr": 0.01}


def test_a_seed_era_override_reading_trainer_running_loss_works(capsys):
    trainer = fit(RunningLossModel(n_train=64), max_epochs=1, logger=True)
    line = capsys.readouterr().out.splitlines()[-1]
    assert re.search(r"loss=\d\.\d{3}", line) and "lr=0.01" in line
    running = trainer.running_loss
    assert running.mean() is not None and running.last() is not None


def test_running_loss_is_empty_without_a_bar():
    trainer = fit(SeedModel(n_train=64), max_epochs=1, enable_progress_bar=False)
    assert trainer.running_loss.mean() is None and trainer.running_loss.last() is None


class TqdmDictModel(SeedModel):
    """Overrides the 0.7 name: ignored by the bar, as in 0.8/0.9, which call get_progress_bar_dict only."""

    def get_tqdm_dict(self):
        return {"custom": "yes"}


def test_seed_era_get_tqdm_dict_is_the_deprecated_alias(capsys):
    trainer = fit(TqdmDictModel(n_train=64), max_epochs=1, logger=True)
    line = capsys.readouterr().out.splitlines()[-1]
    assert "custom" not in line and "loss=" in line and "v_num=0" in line
    with pytest.warns(DeprecationWarning, match="renamed to `get_progress_bar_dict`"):
        assert set(SeedModel.get_tqdm_dict(trainer.lightning_module)) == {"loss", "v_num"}


@pytest.mark.parametrize("returned", ["raise", "list"])
def test_a_broken_bar_dict_override_warns_once_and_training_goes_on(capsys, returned):
    class Broken(SeedModel):
        def get_progress_bar_dict(self):
            if returned == "raise":
                return {"loss": self.trainer.avg_loss}  # a 0.7-era attribute that no longer exists
            return ["loss"]

    problem = "raised AttributeError" if returned == "raise" else "returned list, not a dict"
    with pytest.warns(UserWarning, match=rf"Broken.get_progress_bar_dict\(\) {problem}.*standard items") as caught:
        trainer = fit(Broken(n_train=64), max_epochs=2, logger=True)
    assert trainer.state.epoch == 2  # the fit went on
    assert sum("get_progress_bar_dict" in str(w.message) for w in caught) == 1
    assert "loss=" in capsys.readouterr().out.splitlines()[-1]


def test_progress_bar_callback_is_the_bar_or_none():
    trainer = fit(ModernModel(n_train=64), max_epochs=1, enable_progress_bar=False)
    assert trainer.progress_bar_callback is None
    bar = TQDMProgressBar(file=io.StringIO())
    assert fit(ModernModel(n_train=64), max_epochs=1, callbacks=[bar]).progress_bar_callback is bar
