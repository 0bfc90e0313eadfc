"""Built-in ``progress_bar``: tqdm bars for training, validation, test and predict (rank zero only).

In a terminal: one training bar per epoch (or one bar over optimizer steps when
``max_steps`` drives training) showing the running-mean ``loss``, ``v_num`` and every
progress-bar metric; a validation bar that disappears when done. When stdout is not a
terminal (CI logs, files) no bar is drawn: one plain line per epoch (and every quarter of
very long epochs) carries the same information.

Per batch this costs a counter and, when a loss is returned, appending a detached tensor
to a short window (read from ``trainer.state.last_outputs`` at ``on_batch_end``, so no
``{'loss': loss.detach()}`` is built for the bar); values become floats only when the bar is
refreshed. The bar itself moves only when that can show: without a terminal when the next
line is due, in a terminal about every ``MOVE_INTERVAL`` (whole multiples of ``refresh_rate``
batches; tqdm redraws at most every 0.1 s anyway).
"""
from __future__ import annotations

import collections
import math
import sys
import time
import warnings
from typing import Any, Deque, Dict, Mapping, Optional, TextIO

import torch

from hookloop.engine.callback import Callback
from hookloop.plugins.rank_zero import is_rank_zero

#: Batches in the running mean of ``loss`` shown on the bar.
LOSS_WINDOW = 20
#: In a terminal, recompute the bar's metrics at most this often (seconds); the count moves every refresh.
POSTFIX_INTERVAL = 0.25
#: In a terminal, move the bar about this often (seconds), in whole multiples of ``refresh_rate`` batches:
#: tqdm redraws at most every 0.1 s, so moving it more often only costs time per batch.
MOVE_INTERVAL = 0.05
#: Without a terminal, epochs of at least this many batches also print at every quarter.
LONG_EPOCH = 1000

_EVAL_DESC = {"validate": "Validation", "test": "Testing", "predict": "Predicting"}


class TQDMProgressBar(Callback):
    """tqdm progress bars (``Trainer(enable_progress_bar=False)`` or ``progress_bar_refresh_rate=0``: none).

    Args:
        refresh_rate: Move the bars every this many batches (seed-era ``progress_bar_refresh_rate``).
        process_position: Offset of the bars, for several trainers in one terminal.
        file: Where to draw (default: ``sys.stdout`` at the start of each run).

    Pass an instance in ``Trainer(callbacks=[...])`` to replace the built-in one.
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, file: Optional[TextIO] = None) -> None:
        if not isinstance(refresh_rate, int) or refresh_rate < 1:
            raise ValueError(f"TQDMProgressBar(refresh_rate={refresh_rate!r}): use an int >= 1 "
                             "(turn the bar off with Trainer(enable_progress_bar=False)).")
        self.refresh_rate = refresh_rate
        self.process_position = process_position
        self._file_arg = file
        self._file: Optional[TextIO] = None
        self._active = False
        self._tty = False
        self._steps_mode = False
        self._main: Any = None  # tqdm bar, or _LineBar without a terminal
        self._eval: Any = None
        self._losses: Deque[torch.Tensor] = collections.deque(maxlen=LOSS_WINDOW)
        self._seen = 0  # batches since the main bar last moved
        #: Batches between moves of the main bar: ``refresh_rate`` in a terminal; without one, as many
        #: as are left until the next plain line is due (nothing to do per batch in between).
        self._move_every: float = math.inf
        self._eval_seen = 0
        self._postfix_at = 0.0
        self._moved_at = 0.0  # when the main bar last moved (terminal only)
        self._warned_module_dict = False

    # ---- metrics ------------------------------------------------------------------------------
    def get_metrics(self, trainer: Any, pl_module: Any) -> Dict[str, Any]:
        """What the bar shows: running-mean ``loss``, ``v_num``, then every progress-bar metric.

        Override to change it. Called only when the bar refreshes. A module that overrides the
        seed-era ``get_progress_bar_dict()`` decides the first part itself, as in Lightning 0.8/0.9
        (it may read ``trainer.running_loss.mean()``); ``prog_bar`` metrics follow either way.
        """
        module_items = self._module_bar_dict(pl_module)
        items = self.standard_metrics(trainer) if module_items is None else dict(module_items)
        for key, value in trainer.progress_bar_metrics.items():
            items[key] = value
        return {key: _plain(value) for key, value in items.items()}

    def _module_bar_dict(self, pl_module: Any) -> Optional[Dict[str, Any]]:
        """The module's own ``get_progress_bar_dict()``, if its class overrides it.

        A cosmetic hook must not end a run: if it raises or returns no dict, the bar warns once
        and shows its standard items.
        """
        if pl_module is None:
            return None
        from hookloop.engine.module import LightningModule

        if getattr(type(pl_module), "get_progress_bar_dict", None) is LightningModule.get_progress_bar_dict:
            return None
        where = f"{type(pl_module).__name__}.get_progress_bar_dict()"
        try:
            items = pl_module.get_progress_bar_dict()
        except Exception as exc:  # noqa: BLE001 - reported, and the bar goes on with its own items
            problem = f"raised {type(exc).__name__}: {exc}"
        else:
            if isinstance(items, Mapping):
                return dict(items)
            problem = f"returned {type(items).__name__}, not a dict"
        if not self._warned_module_dict:
            self._warned_module_dict = True
            warnings.warn(f"{where} {problem}. The progress bar shows its standard items (loss, v_num) instead; "
                          "fix the override, or remove it.")
        return None

    @property
    def running_loss(self) -> "RunningLoss":
        """The losses of the last ``LOSS_WINDOW`` training batches (what ``trainer.running_loss`` gives)."""
        return RunningLoss(self._losses)

    def standard_metrics(self, trainer: Any) -> Dict[str, Any]:
        """The bar's own items: running-mean ``loss`` over the last batches and the logger's ``v_num``.

        What ``LightningModule.get_progress_bar_dict()`` returns unless a module overrides it.
        """
        items: Dict[str, Any] = {}
        if self._losses:
            items["loss"] = float(torch.stack(list(self._losses)).float().mean())
        logger = getattr(trainer, "logger", None)
        version = getattr(logger, "version", None) if logger is not None else None
        if version is not None and version != "":
            items["v_num"] = version
        return items

    def _postfix(self, trainer: Any) -> str:
        metrics = self.get_metrics(trainer, trainer.lightning_module)
        return ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())

    # ---- run ----------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Decide once per run whether (rank zero) and how (terminal or plain lines) to draw."""
        self._active = is_rank_zero(trainer)
        self._file = self._file_arg if self._file_arg is not None else sys.stdout
        isatty = getattr(self._file, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._losses.clear()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """With ``max_steps`` and no ``max_epochs``, one bar runs over all optimizer steps."""
        self._steps_mode = trainer.max_steps is not None and trainer.max_steps > 0 and trainer.max_epochs < 0
        if self._active and self._steps_mode:
            self._main = self._bar("Training", trainer.max_steps, trainer.global_step, leave=True, quarters=True)
            self._move_every = self._next_move()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """A fresh bar for the epoch."""
        if not self._active or self._steps_mode:
            return
        total = trainer.num_training_batches
        self._main = self._bar(f"Epoch {trainer.current_epoch}", None if total == math.inf else int(total),
                               trainer.state.start_batch, leave=True)
        self._seen = 0
        self._move_every = self._next_move()

    def on_batch_end(self, trainer: Any, pl_module: Any) -> None:
        """Count the batch and keep its loss (detached) for the running mean; move the bar when due.

        Listening here rather than on ``on_train_batch_end`` (which gets the same batch) spares every
        batch Lightning's ``{'loss': loss.detach()}`` when nothing else wants it: the loss is read from
        ``trainer.state.last_outputs``.
        """
        outputs = trainer.state.last_outputs
        loss = outputs if type(outputs) is torch.Tensor else _loss_of(outputs)
        if loss is not None:
            # Already detached when a listener on ``on_train_batch_end`` had it built: no second copy.
            self._losses.append(loss.detach() if loss.requires_grad else loss)
        self._seen += 1
        if self._seen >= self._move_every:
            self._advance(trainer)

    def _next_move(self, moved: int = 0) -> float:
        """Batches until the main bar must move again (see ``_move_every``), after it moved by ``moved``."""
        if self._main is None:
            return math.inf
        rate = self.refresh_rate
        if self._tty:
            # As many batches as take about MOVE_INTERVAL at the pace of the last ``moved`` ones, at most
            # twice as many as last time (one fast stretch, a prefetched first batch, must not make the
            # bar wait long once batches slow down; as with tqdm's own ``miniters``, a sudden slowdown
            # shows at the next move).
            now = time.monotonic()
            elapsed, self._moved_at = now - self._moved_at, now
            if moved <= 0 or elapsed <= 0:
                return rate
            batches = min(int(MOVE_INTERVAL * moved / elapsed), 2 * moved)
            return max(rate, batches - batches % rate)
        if self._steps_mode:
            # The step bar's lines are due at optimizer steps, and a batch may take several (manual
            # optimization) or part of one (accumulation): look at every ``refresh_rate`` batches.
            return rate
        return max(rate, self._main.until_due())

    def _advance(self, trainer: Any) -> None:
        bar = self._main
        moved = self._seen
        if self._steps_mode:
            bar.update(trainer.global_step - bar.n)
        else:
            bar.update(moved)
        self._seen = 0
        if self._tty:
            now = time.monotonic()
            if now - self._postfix_at >= POSTFIX_INTERVAL:
                self._postfix_at = now
                bar.set_postfix_str(self._postfix(trainer), refresh=False)
        elif bar.due():
            bar.set_postfix_str(self._postfix(trainer), refresh=False)
            bar.print_line()
        self._move_every = self._next_move(moved)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Show the epoch's final values (epoch metrics included) and close the epoch's bar."""
        if self._main is None:
            return
        if self._seen:
            self._advance(trainer)
        if self._steps_mode:  # the step bar goes on; its plain lines come every quarter
            self._main.set_postfix_str(self._postfix(trainer), refresh=self._tty)
            return
        self._main.set_postfix_str(self._postfix(trainer), refresh=False)
        self._close_main()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the step bar."""
        self._close_main()

    def _close_main(self) -> None:
        if self._main is not None:
            self._main.close()
            self._main = None
        self._move_every = math.inf

    # ---- evaluation -----------------------------------------------------------------------------
    def _eval_start(self, trainer: Any, stage: str) -> None:
        if not self._active:
            return
        inside_fit = trainer.state.fn == "fit"
        desc = "Sanity Checking" if trainer.sanity_checking else _EVAL_DESC[stage]
        total = _eval_total(trainer, stage)
        if inside_fit and not self._tty:
            return  # validation inside fit: its metrics show on the epoch's line
        # Validation inside fit leaves no trail; a standalone validate/test/predict keeps its bar.
        self._eval = self._bar(desc, total, 0, leave=not inside_fit)
        self._eval_seen = 0

    def _eval_batch_end(self) -> None:
        if self._eval is None:
            return
        self._eval_seen += 1
        if self._eval_seen >= self.refresh_rate:
            self._eval.update(self._eval_seen)
            self._eval_seen = 0

    def _eval_end(self, trainer: Any) -> None:
        if self._eval is not None:
            if self._eval_seen:
                self._eval.update(self._eval_seen)
                self._eval_seen = 0
            if trainer.state.fn != "fit":
                self._eval.set_postfix_str(self._postfix(trainer), refresh=False)
            self._eval.close()
            self._eval = None
        if self._main is not None and self._tty and not trainer.sanity_checking:
            self._main.set_postfix_str(self._postfix(trainer), refresh=True)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the validation (or sanity-check) bar."""
        self._eval_start(trainer, "validate")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the validation bar."""
        self._eval_batch_end()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the validation bar; the training bar shows the new validation metrics."""
        self._eval_end(trainer)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the test bar."""
        self._eval_start(trainer, "test")

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the test bar."""
        self._eval_batch_end()

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the test bar with the test metrics."""
        self._eval_end(trainer)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Open the predict bar."""
        self._eval_start(trainer, "predict")

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Move the predict bar."""
        self._eval_batch_end()

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the predict bar."""
        self._eval_end(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Close open bars, the training bar counting every finished batch, so the error prints on a clean line."""
        if self._main is not None and self._seen:  # the bar moves only now and then: catch up first
            self._main.update(trainer.global_step - self._main.n if self._steps_mode else self._seen)
            self._seen = 0
        for bar in (self._eval, self._main):
            if bar is not None:
                bar.close()
        self._eval = self._main = None
        self._move_every = math.inf

    def __getstate__(self) -> Dict[str, Any]:
        # Streams and live bars stay in this process (spawned workers pickle the callbacks).
        state = dict(self.__dict__)
        state.update(_file=None, _main=None, _eval=None, _move_every=math.inf, _seen=0)
        return state

    # ---- bars ---------------------------------------------------------------------------------
    def _bar(self, desc: str, total: Optional[int], initial: int, leave: bool, quarters: bool = False) -> Any:
        if not self._tty:
            return _LineBar(self._file, desc, total, initial, quarters)
        from tqdm import tqdm  # imported when a bar is first drawn

        return tqdm(desc=desc, total=total, initial=initial, leave=leave, file=self._file,
                    position=2 * self.process_position + (0 if leave else 1), dynamic_ncols=True,
                    smoothing=0, unit="it")


class _LineBar:
    """The bar without a terminal: prints a tqdm-formatted line when :meth:`due` says so, never redraws."""

    def __init__(self, file: TextIO, desc: str, total: Optional[int], initial: int, quarters: bool) -> None:
        self.file, self.desc, self.total, self.n = file, desc, total, initial
        self.postfix = ""
        self.start = time.monotonic()
        # One line at the end; long epochs (and the bar over all steps) also at every quarter.
        self.every = math.ceil(total / 4) if total and (quarters or total >= LONG_EPOCH) else None
        self.printed_at = initial
        self.closed_printed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more."""
        self.n += n

    def due(self) -> bool:
        """True when a line should be printed now (the last one is :meth:`close`'s, with the final metrics)."""
        return bool(self.every) and self.n - self.printed_at >= self.every and self.n != self.total

    def until_due(self) -> float:
        """How many more counts until :meth:`due` (``inf`` when only the final line is printed)."""
        return self.every - (self.n - self.printed_at) if self.every else math.inf

    def set_postfix_str(self, postfix: str, refresh: bool = True) -> None:
        """The metrics part of the line."""
        self.postfix = postfix

    def print_line(self) -> None:
        """Print the current state as one line."""
        from tqdm import tqdm

        line = tqdm.format_meter(self.n, self.total, time.monotonic() - self.start, prefix=self.desc,
                                 postfix=self.postfix or None, ascii=True, ncols=None, unit="it")
        print(line, file=self.file, flush=True)
        self.printed_at = self.n

    def close(self) -> None:
        """Print the final line."""
        if not self.closed_printed:
            self.print_line()
            self.closed_printed = True


def _loss_of(outputs: Any) -> Optional[torch.Tensor]:
    if isinstance(outputs, dict):  # the common case first: ``{'loss': ...}`` from the optimization plugin
        loss = outputs.get("loss")
        if loss is None:
            loss = outputs.get("minimize")  # 0.9's TrainResult(minimize=loss)
        return loss if isinstance(loss, torch.Tensor) else None
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, (list, tuple)):  # one output per optimizer
        for item in outputs:
            loss = _loss_of(item)
            if loss is not None:
                return loss
    return None


def _eval_total(trainer: Any, stage: str) -> Optional[int]:
    kind = {"validate": "val", "test": "test", "predict": "predict"}[stage]
    limits = list(getattr(trainer, f"num_{kind}_batches", None) or [])
    if trainer.sanity_checking:
        steps = trainer.num_sanity_val_steps
        limits = [n if steps < 0 else min(n, steps) for n in limits]
    total = sum(limits)
    return None if not limits or total == math.inf else int(total)


class RunningLoss:
    """Seed era's ``trainer.running_loss``: the losses of the last training batches, as the bar keeps them."""

    def __init__(self, window: Deque[torch.Tensor]) -> None:
        self._window = window

    def mean(self) -> Optional[torch.Tensor]:
        """The mean of the window's losses, or ``None`` before the first loss."""
        return torch.stack(list(self._window)).float().mean() if self._window else None

    def last(self) -> Optional[torch.Tensor]:
        """The latest loss, or ``None`` before the first one."""
        return self._window[-1] if self._window else None


def _plain(value: Any) -> Any:
    """A one-element tensor as a float (what the bar prints); anything else as it is."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


#: Seed-era name.
ProgressBar = TQDMProgressBar

__all__ = ["TQDMProgressBar", "ProgressBar", "RunningLoss"]
