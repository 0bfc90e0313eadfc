"""``ModelCheckpoint``: saves the best ``save_top_k`` checkpoints by a monitored metric, and ``last.ckpt``.

Saves happen after everything else of a training epoch's end (``trylast``, after early
stopping), so a checkpoint never lags one epoch behind, and after every validation in the
middle of an epoch (``val_check_interval``). Per-step saving
(``every_n_train_steps``) is the only thing that registers a per-batch hook.
"""
from __future__ import annotations

import glob
import math
import os
import re
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch

from hookloop.engine import Callback, hookimpl
from hookloop.engine.errors import MisconfigurationException


def resolve_mode(mode: str, monitor: Optional[str], owner: str) -> str:
    """``mode`` checked; ``'auto'`` (0.8/0.9's default) becomes ``'max'`` for an accuracy or F-measure, else ``'min'``.

    0.8 tested ``'acc' in name``; here the name's words are read (split at ``_ / . -``), so that
    ``val_acc``, ``val_accuracy`` and ``fmeasure_dev`` are maximised but ``val_loss_accum`` or
    ``accuracy_error`` are not: a word with ``loss`` or ``err`` always means smaller is better.
    """
    if mode == "auto":
        words = [w for w in re.split(r"[_/.\-]+", (monitor or "").lower()) if w]
        if any("loss" in w or "err" in w for w in words):
            return "min"
        better_up = any(w.endswith(("acc", "accuracy")) or w in ("top1", "top5")
                        or w.startswith(("acc@", "accuracy", "fmeasure", "f1")) for w in words)
        return "max" if better_up else "min"
    if mode not in ("min", "max"):
        raise MisconfigurationException(f"{owner}(mode={mode!r}): mode must be 'min' or 'max' (or seed-era 'auto').")
    return mode


class ModelCheckpoint(Callback):
    """Save checkpoints during ``fit``.

    Args:
        dirpath: Directory of the files (default: ``<logger version dir>/checkpoints`` with a logger,
            else ``<default_root_dir>/checkpoints``).
        filename: Template of the file name without ``.ckpt``, e.g. ``'{epoch}-{val_loss:.2f}'``; each
            ``{name}`` becomes ``name=value`` (``auto_insert_metric_name``). Default ``'{epoch}-{step}'``.
        monitor: Metric (in ``trainer.callback_metrics``) ranking the checkpoints; ``None`` keeps the latest.
        verbose: Print a line for each save.
        save_last: Also write ``last.ckpt`` at every save (what ``fit(ckpt_path='last')`` resumes from).
        save_top_k: Files kept: the best k (``-1``: all, ``0``: none besides ``last.ckpt``).
        save_weights_only: Save only the weights (such files load with ``load_from_checkpoint`` but cannot resume).
        mode: ``'min'`` or ``'max'``: whether a smaller or a larger monitored value is better. The default,
            ``'auto'`` (0.8/0.9's), picks ``'max'`` for an accuracy or F-measure (``val_acc``, ``val_accuracy``,
            ``f1``...; never a name with ``loss`` or ``err``), else ``'min'``.
        auto_insert_metric_name: Write ``epoch=3`` rather than ``3`` for ``{epoch}``.
        every_n_train_steps: Also save every N optimizer steps (mid-epoch, resumable exactly).
        every_n_epochs: Save every N epochs (default 1; 0 turns epoch saving off). Default 0 when
            ``every_n_train_steps`` is set; setting both is an error, as in Lightning.
        filepath: Seed-era: directory or ``dir/filename`` template in one. With it (or ``period``/``prefix``)
            and no ``monitor``, ``val_loss`` is monitored, as in 0.8/0.9.
        period: Seed-era name of ``every_n_epochs``.
        prefix: Seed-era: prefix of every file name.
    """

    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    #: Among ``trylast`` implementations, run after early stopping and the rest (see engine/registry.py).
    __engine_order__ = 100

    def __init__(
        self,
        dirpath: Optional[str] = None,
        filename: Optional[str] = None,
        monitor: Optional[str] = None,
        verbose: bool = False,
        save_last: Optional[bool] = None,
        save_top_k: int = 1,
        save_weights_only: bool = False,
        mode: str = "auto",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: Optional[int] = None,
        every_n_epochs: Optional[int] = None,
        filepath: Optional[str] = None,
        period: Optional[int] = None,
        prefix: str = "",
    ) -> None:
        mode = resolve_mode(mode, monitor, "ModelCheckpoint")
        if not isinstance(save_top_k, int) or save_top_k < -1:
            raise MisconfigurationException(f"ModelCheckpoint(save_top_k={save_top_k!r}) must be an int >= -1.")
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise MisconfigurationException(f"every_n_train_steps={every_n_train_steps} must be >= 0.")
        if filepath is None and dirpath is not None and "{" in os.fspath(dirpath):
            filepath, dirpath = dirpath, None  # seed-era positional `filepath` template
        # Seed era (filepath/period/prefix): 0.8/0.9 monitored val_loss unless told otherwise; as the default
        # checkpoint does, it falls back to 'loss' without validation and to the latest file if never logged.
        auto_monitor = monitor is None and (filepath is not None or period is not None or bool(prefix))
        if monitor is None and not auto_monitor and save_top_k not in (-1, 0, 1):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None): ranking {save_top_k} checkpoints needs a "
                "monitor; pass monitor='val_loss' (or another logged metric), or save_top_k=-1 to keep all.")
        if filepath is not None:  # seed-era: one argument for the directory and the template
            filepath = os.fspath(filepath)
            if os.path.isdir(filepath) or filepath.endswith(os.sep):
                dirpath = dirpath or filepath
            else:
                dirpath = dirpath or os.path.dirname(filepath) or None
                filename = filename or os.path.basename(filepath)
        if every_n_epochs is None:
            every_n_epochs = period
        if every_n_train_steps and every_n_epochs:
            raise MisconfigurationException(
                f"ModelCheckpoint(every_n_train_steps={every_n_train_steps}, every_n_epochs={every_n_epochs}): save "
                "either every N steps or every N epochs, not both (as in Lightning). Use two ModelCheckpoints to do both.")
        if every_n_epochs is None:
            every_n_epochs = 0 if every_n_train_steps else 1
        self.dirpath = os.fspath(dirpath) if dirpath is not None else None
        self.filename = filename[:-len(self.FILE_EXTENSION)] if filename and filename.endswith(self.FILE_EXTENSION) else filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self.every_n_train_steps = every_n_train_steps or 0
        self.every_n_epochs = every_n_epochs
        self.prefix = prefix
        #: path -> its monitored value, a tensor as in 0.9 (and 2.x); the step for ``monitor=None``.
        self.best_k_models: Dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.kth_value: Optional[torch.Tensor] = None
        self.best_model_path = ""
        self.best_model_score: Optional[torch.Tensor] = None
        self.current_score: Optional[torch.Tensor] = None
        self.last_model_path = ""
        self._auto_monitor = auto_monitor
        #: The default checkpoint (:meth:`default`): 2.x's (no monitor) unless the run is seed-era.
        self._follows_era = False
        self._key_monitor: Optional[str] = None
        self._deferred = False
        #: Whether a validation of this fit has finished (before one has, a missing monitor is only warned about).
        self._validated = False
        self._warned_missing = False
        #: The monitored value (the tensor object) the last ranking read: an epoch end that finds the same
        #: one (no validation since, with check_val_every_n_epoch > 1) has nothing new to rank.
        self._ranked_value: Any = None
        self._last_written_step = -1
        self._last_saved_step = -1
        self._written: Tuple[Tuple[int, int], List[str]] = ((-1, -1), [])
        # Only the hooks this configuration needs are registered: per-batch ones only for per-step saving.
        hooks = {"setup", "on_train_epoch_end", "on_validation_end"}
        if self.every_n_train_steps:
            hooks.add("on_train_batch_end")
        self.__engine_hooks__ = hooks

    @classmethod
    def default(cls) -> "ModelCheckpoint":
        """The checkpoint a Trainer makes by default, in the era of the run: Lightning 2.x's keeps the latest file
        (no monitor); after an API only 0.8/0.9 had (``trainer.state.seed_era``, known by the first save) 0.9's
        ranks by ``val_loss`` if the run validates, else by the training ``loss``."""
        checkpoint = cls()
        checkpoint._auto_monitor = True
        checkpoint._follows_era = True
        return checkpoint

    @property
    def state_key(self) -> str:
        """Key of this callback's state; differs between differently configured instances."""
        # The default checkpoint keeps the key of the monitor it started with, even after falling back to
        # keeping the latest file, so that a resumed run finds its state.
        monitor = self._key_monitor if self._auto_monitor else self.monitor
        return self._generate_state_key(monitor=monitor, mode=self.mode, every_n_train_steps=self.every_n_train_steps,
                                        every_n_epochs=self.every_n_epochs)

    # ---- hooks -------------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Resolve the directory (and the seed-era default monitor) for this run."""
        if stage != "fit":
            return
        self._resolve_dirpath(trainer)
        if self._auto_monitor:
            self.monitor = self._key_monitor = "val_loss" if trainer.has_validation else "loss"
        self._deferred = False
        self._validated = False

    @hookimpl(trylast=True)
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Every ``every_n_train_steps`` steps: save (at an epoch's last batch, after the epoch's end instead)."""
        step = trainer.state.global_step
        if step % self.every_n_train_steps or step == self._last_saved_step or not self._may_save(trainer):
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            self._deferred = True  # the epoch-end hooks (schedulers, early stopping) run first
            return
        self._save(trainer)

    @hookimpl(trylast=True)
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """A validation in the middle of an epoch (``val_check_interval``) saves, so that a better model
        found there is kept (Lightning saves there too); a step checkpoint taken just before a
        validation is rewritten after it (resuming skips that validation). A validation at an
        epoch's end leaves the save to ``on_train_epoch_end``, after the epoch-end hooks."""
        state = trainer.state
        if state.sanity_checking or state.fn != "fit":
            return
        self._validated = True
        (step, batch_idx), paths = self._written
        if step == state.global_step and batch_idx == state.batch_idx:
            self._rewrite(trainer, paths)
            return
        due = bool(self.every_n_epochs) and (state.epoch + 1) % self.every_n_epochs == 0
        # A stop asked for in this validation (EarlyStopping) ends the epoch: its save waits for the epoch's end.
        ending = state.epoch_ending or state.should_stop
        # As in Lightning, nothing is saved before the first optimizer step.
        if due and not ending and 0 < state.global_step != self._last_saved_step and self._may_save(trainer):
            self._save(trainer)

    @hookimpl(trylast=True)
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Save at the end of every ``every_n_epochs``-th epoch (and a step save deferred to here);
        with ``save_last``, ``last.ckpt`` is brought up to date at every epoch end, as in Lightning."""
        if not self._may_save(trainer):
            return
        state = trainer.state
        due = bool(self.every_n_epochs) and (state.epoch + 1) % self.every_n_epochs == 0
        (step, _), paths = self._written
        if (self._deferred or due) and step == state.global_step == self._last_saved_step and paths:
            # Saved at this step by a validation that turned out to be the epoch's last (the data ran out,
            # a stop): rewritten now, so that they resume after the epoch-end hooks, not ranked twice.
            self._deferred = False
            self._rewrite(trainer, paths)
            return
        stale = (due and not self._deferred and self.monitor is not None and self._ranked_value is not None
                 and trainer.callback_metrics.get(self.monitor) is self._ranked_value)
        if (self._deferred or due) and not stale:
            self._deferred = False
            self._save(trainer)
        elif self.save_last and self._last_written_step != trainer.state.global_step:
            # Also when the monitored value is the one already ranked (no validation this epoch): a file
            # named after it would hold other weights than the ones it scored, as Lightning avoids too.
            self._save_last(trainer, self._metrics(trainer))

    # ---- saving ------------------------------------------------------------------------

    def _may_save(self, trainer: Any) -> bool:
        return not trainer.fast_dev_run and not trainer.state.sanity_checking

    def _save(self, trainer: Any) -> None:
        state = trainer.state
        metrics = self._metrics(trainer)
        written = self._save_top_k(trainer, metrics)
        if self.save_last:
            written.append(self._save_last(trainer, metrics))
        self._last_saved_step = state.global_step
        self._written = ((state.global_step, state.batch_idx), written)

    def _metrics(self, trainer: Any) -> Dict[str, Any]:
        metrics = dict(trainer.callback_metrics)
        metrics["epoch"] = trainer.state.epoch
        metrics["step"] = trainer.state.global_step
        return metrics

    def _save_top_k(self, trainer: Any, metrics: Dict[str, Any]) -> List[str]:
        if self.save_top_k == 0:
            return []
        if self._follows_era and not trainer.state.seed_era:
            self.monitor = None  # Lightning 2.x's default checkpoint ranks nothing: it keeps the latest file
        elif self._auto_monitor:
            self._follow_results_api(metrics)
        if self.monitor is None:
            older = list(self.best_k_models) if self.save_top_k == 1 else []
            path = self._new_path(trainer, metrics, replacing=older[0] if older else None)
            self._commit(trainer, path, float(metrics["step"]), [p for p in older if p != path])
            self.best_model_path = self.kth_best_model_path = path
            return [path]
        if self.monitor not in metrics:
            if not self._validated and trainer.has_validation:
                # The metric may come from a validation that has not run yet (check_val_every_n_epoch,
                # every_n_train_steps): say so once and skip this save, as Lightning does.
                if not self._auto_monitor and not self._warned_missing:
                    self._warned_missing = True
                    warnings.warn(self._missing_monitor_message(trainer) + " Skipping this checkpoint until it is "
                                  "logged (no validation has run yet).")
                return []
            if self._auto_monitor:
                # The default checkpoint's guess was wrong (validation logs no 'val_loss'): keep the latest.
                warnings.warn(f"The default ModelCheckpoint monitors {self.monitor!r}, which was not logged; it keeps "
                              "the latest checkpoint instead. Pass ModelCheckpoint(monitor=...) to rank by a metric.")
                self.monitor = None
                return self._save_top_k(trainer, metrics)
            raise MisconfigurationException(self._missing_monitor_message(trainer))
        self._ranked_value = metrics[self.monitor]
        current = self._score(metrics[self.monitor])
        self.current_score = torch.tensor(current)
        if not self._better_than_kth(current):
            if self.verbose:
                print(f"Epoch {metrics['epoch']}, step {metrics['step']}: {self.monitor} was not in the top {self.save_top_k}")
            return []
        full = self.save_top_k != -1 and len(self.best_k_models) >= self.save_top_k
        worst = self._worst() if full else None
        path = self._new_path(trainer, metrics, replacing=worst)
        self._commit(trainer, path, current, [worst] if worst is not None else [])
        if self.verbose:
            print(f"Epoch {metrics['epoch']}, step {metrics['step']}: {self.monitor} reached {current:.5f}; saved {path}")
        return [path]

    def _follow_results_api(self, metrics: Dict[str, Any]) -> None:
        """0.9: a default (or seed-era, monitor-less) checkpoint ranks by the Results API's ``checkpoint_on``
        when a module returns one, a validation's (``val_checkpoint_on``) first."""
        for name in ("val_checkpoint_on", "checkpoint_on"):
            if name in metrics:
                self.monitor = name
                return

    def _missing_monitor_message(self, trainer: Any) -> str:
        return (f"ModelCheckpoint(monitor={self.monitor!r}) could not find {self.monitor!r} in the logged metrics. "
                f"Log it with self.log({self.monitor!r}, ...), or monitor one of: "
                f"{', '.join(sorted(trainer.callback_metrics)) or '(none yet)'}.")

    def _commit(self, trainer: Any, path: str, score: float, replaced: List[str]) -> None:
        """Rank ``path`` in place of ``replaced``, write it, then delete the replaced files.

        The ranking is updated first so that the checkpoint holds itself in its own ranking
        (a resumed run keeps managing it); if the write fails, the ranking is put back and
        nothing is deleted.
        """
        saved = (dict(self.best_k_models), self.best_model_path, self.best_model_score,
                 self.kth_best_model_path, self.kth_value)
        for old in replaced:
            self.best_k_models.pop(old, None)
        self.best_k_models[path] = torch.tensor(score)
        if self.monitor is not None:
            self._update_best()
        try:
            self._write(trainer, path, self.save_weights_only)
        except BaseException:
            (self.best_k_models, self.best_model_path, self.best_model_score,
             self.kth_best_model_path, self.kth_value) = saved
            raise
        for old in replaced:
            if old != path:
                self._drop(trainer, old)

    def _save_last(self, trainer: Any, metrics: Dict[str, Any]) -> str:
        # Another run's last.ckpt in this directory is kept: this run's becomes last-v1.ckpt (as in Lightning 2.x).
        path = self._versioned(trainer, os.path.join(self._resolve_dirpath(trainer), self.prefix + self.CHECKPOINT_NAME_LAST),
                               keep=self.last_model_path)
        # ``last.ckpt`` is always a full, resumable checkpoint.
        previous, self.last_model_path = self.last_model_path, path
        try:
            self._write(trainer, path, False)
        except BaseException:
            self.last_model_path = previous
            raise
        self._last_written_step = trainer.state.global_step
        return path

    def _rewrite(self, trainer: Any, paths: List[str]) -> None:
        """Write the files of the last save again, at the loop's current position (same names, same ranking)."""
        for path in paths:
            self._write(trainer, path, self.save_weights_only if path != self.last_model_path else False)

    def _write(self, trainer: Any, path: str, weights_only: bool) -> None:
        trainer.save_checkpoint(path, weights_only)

    def _drop(self, trainer: Any, path: str) -> None:
        self.best_k_models.pop(path, None)
        if path == self.last_model_path or not trainer.is_global_zero or not os.path.isfile(path):
            return
        resumed_from = getattr(trainer, "ckpt_path", None)
        if resumed_from is not None and os.path.isfile(resumed_from) and os.path.samefile(path, resumed_from):
            return  # the file this run resumed from is the user's: it is never deleted (as in Lightning)
        trainer.strategy.remove_checkpoint(path)  # as Lightning's does: a plugin may store files elsewhere

    def _score(self, value: Any) -> float:
        score = float(value)
        if math.isnan(score):  # a NaN ranks worst
            score = math.inf if self.mode == "min" else -math.inf
        return score

    def _better_than_kth(self, current: float) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        kth = self.best_k_models[self._worst()]
        return bool(current < kth) if self.mode == "min" else bool(current > kth)

    def _worst(self) -> str:
        pick = max if self.mode == "min" else min
        return pick(self.best_k_models, key=self.best_k_models.__getitem__)

    def _update_best(self) -> None:
        pick = min if self.mode == "min" else max
        self.best_model_path = pick(self.best_k_models, key=self.best_k_models.__getitem__)
        self.best_model_score = self.best_k_models[self.best_model_path].clone()
        self.kth_best_model_path = self._worst()
        self.kth_value = self.best_k_models[self.kth_best_model_path]

    # ---- names -------------------------------------------------------------------------

    def format_checkpoint_name(self, metrics: Dict[str, Any], filename: Optional[str] = None) -> str:
        """The file name (with ``.ckpt``) the template gives for ``metrics`` (missing metrics format as 0)."""
        template = filename if filename is not None else (self.filename or "{epoch}-{step}")
        field = re.compile(r"\{([^{}:!]+)([:!][^{}]*)?\}")
        names = [m.group(1) for m in field.finditer(template)]
        if self.auto_insert_metric_name:
            template = field.sub(lambda m: f"{m.group(1)}={{{m.group(1)}{m.group(2) or ''}}}", template)
        values = {}
        for name in names:
            value = metrics.get(name, 0)
            if isinstance(value, torch.Tensor):
                value = value.item()
            values[name] = value
        try:
            text = template.format_map(values)
        except (ValueError, KeyError, IndexError) as exc:
            raise MisconfigurationException(f"ModelCheckpoint filename template {template!r} cannot be formatted: {exc}") from exc
        return self.prefix + text + self.FILE_EXTENSION

    def _new_path(self, trainer: Any, metrics: Dict[str, Any], replacing: Optional[str] = None) -> str:
        """The file for a new top-k checkpoint: the template's name, with a version suffix (``-v1``, ``-v2``...)
        while a file of that name exists, unless it is ``replacing``, the file this save evicts (as in Lightning
        2.x). So a name that comes back (``filename='{epoch}'`` with two validations an epoch, another run's file)
        never overwrites a file that is kept."""
        base = self.format_checkpoint_name(metrics)[:-len(self.FILE_EXTENSION)]
        return self._versioned(trainer, os.path.join(self.dirpath or "", base), keep=replacing)

    def _versioned(self, trainer: Any, stem: str, keep: Optional[str]) -> str:
        """``stem.ckpt``, or ``stem-vN.ckpt`` for the first N whose file does not exist or is ``keep`` (the file
        that may be overwritten). Existence is rank zero's answer, where files are written, so every rank
        names the file alike."""
        path, version = stem + self.FILE_EXTENSION, 0
        while path != keep and path != self.last_model_path and self._file_exists(trainer, path):
            version += 1
            path = f"{stem}-v{version}{self.FILE_EXTENSION}"
        return path

    @staticmethod
    def _file_exists(trainer: Any, path: str) -> bool:
        exists = os.path.exists(path)
        return bool(trainer.strategy.broadcast(exists)) if trainer.world_size > 1 else exists

    def _resolve_dirpath(self, trainer: Any) -> str:
        if self.dirpath is None:
            explicit = getattr(trainer, "weights_save_path_flag", None)  # seed era: Trainer(weights_save_path=...)
            root = explicit or (trainer.log_dir if trainer.loggers else trainer.default_root_dir)
            self.dirpath = os.path.join(root, "checkpoints")
        return self.dirpath

    def last_candidates(self) -> List[str]:
        """Files ``fit(ckpt_path='last')`` considers from this callback (the newest existing one wins)."""
        paths = list(self.best_k_models)
        if self.last_model_path:
            paths.append(self.last_model_path)
        if self.dirpath is not None:
            paths.append(os.path.join(self.dirpath, self.prefix + self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION))
            paths += glob.glob(os.path.join(glob.escape(self.dirpath),
                                            f"{glob.escape(self.prefix + self.CHECKPOINT_NAME_LAST)}-v*{self.FILE_EXTENSION}"))
        return paths

    # ---- state -------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """What is ranked and where (plain data)."""
        return {
            "monitor": self.monitor, "dirpath": self.dirpath,
            "best_k_models": {path: float(score) for path, score in self.best_k_models.items()},
            "best_model_path": self.best_model_path, "kth_best_model_path": self.kth_best_model_path,
            "best_model_score": None if self.best_model_score is None else float(self.best_model_score),
            "last_model_path": self.last_model_path, "last_saved_step": self._last_saved_step,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the ranking; files of another directory are not ranked against this run's."""
        if state_dict.get("dirpath") == self.dirpath or self.dirpath is None:
            self.best_k_models = {path: torch.tensor(float(score))
                                  for path, score in state_dict.get("best_k_models", {}).items()}
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "")
            self.last_model_path = state_dict.get("last_model_path", "")
            if self.best_k_models and self.monitor is not None:
                self._update_best()
        self.best_model_path = state_dict.get("best_model_path", self.best_model_path)
        score = state_dict.get("best_model_score")
        self.best_model_score = None if score is None else torch.tensor(score)
        self._last_saved_step = state_dict.get("last_saved_step", -1)
