"""``EarlyStopping``: stop training when a monitored metric stops improving."""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Optional

import torch

from hookloop.engine import Callback, hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.checkpoint import resolve_mode


class EarlyStopping(Callback):
    """Stop ``fit`` once ``monitor`` has not improved by ``min_delta`` for ``patience`` checks.

    A check happens after every validation run when the run validates, else at the end of
    every training epoch (``check_on_train_epoch_end`` forces one or the other). It runs
    after the module's own epoch-end hooks and before checkpointing, so a checkpoint holds
    the up-to-date state (``wait_count``, ``best_score``), which is restored on resume.

    Args:
        monitor: Metric in ``trainer.callback_metrics``. Not given: ``'val_loss'``, or, as in 0.9, the
            Results API's ``early_stop_on`` when a module returns one (``val_early_stop_on`` of an
            ``EvalResult`` first, else a ``TrainResult``'s ``early_stop_on``).
        min_delta: Smallest change that counts as an improvement.
        patience: Checks without improvement before stopping.
        verbose: Print why training stops.
        mode: ``'min'`` or ``'max'``. The default, ``'auto'`` (0.8/0.9's), picks ``'max'`` for an accuracy or
            F-measure (``val_acc``, ``val_accuracy``, ``f1``...; never a name with ``loss`` or ``err``), else ``'min'``.
        strict: A missing metric is an error listing the metrics that exist (else a warning).
        check_finite: Stop when the metric becomes NaN or infinite.
        stopping_threshold: Stop as soon as the metric is at least this good.
        divergence_threshold: Stop as soon as the metric is worse than this.
        check_on_train_epoch_end: Check at training epoch end (True) or after validation (False);
            default: after validation when the run validates.
    """

    def __init__(
        self,
        monitor: Optional[str] = None,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "auto",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: Optional[float] = None,
        divergence_threshold: Optional[float] = None,
        check_on_train_epoch_end: Optional[bool] = None,
    ) -> None:
        #: Not given: 'val_loss', or what a Results API module names (see :meth:`_follow_results_api`).
        self._auto_monitor = monitor is None
        monitor = "val_loss" if monitor is None else monitor
        mode = resolve_mode(mode, monitor, "EarlyStopping")
        if patience < 0:
            raise MisconfigurationException(f"EarlyStopping(patience={patience}) must be >= 0.")
        self.monitor = monitor
        self._key_monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.check_on_train_epoch_end = check_on_train_epoch_end
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(math.inf if mode == "min" else -math.inf)
        self.stopping_reason: Optional[str] = None
        self._on_train_end = True
        self.__engine_hooks__ = {"setup", "on_train_epoch_end", "on_validation_end"}

    @property
    def state_key(self) -> str:
        """Key of this callback's state; differs between differently configured instances."""
        return self._generate_state_key(monitor=self._key_monitor, mode=self.mode)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Decide where to check: after validation when the run validates, else at training epoch end."""
        if self.check_on_train_epoch_end is not None:
            self._on_train_end = self.check_on_train_epoch_end
        else:
            self._on_train_end = not trainer.has_validation

    @hookimpl(trylast=True)
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Check after a validation run (not the sanity check) when checking on validation."""
        if not self._on_train_end and not trainer.state.sanity_checking and trainer.state.fn == "fit":
            self._check(trainer)

    @hookimpl(trylast=True)
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Check at the end of a training epoch (after the module's epoch-end hooks logged)."""
        if self._on_train_end:
            self._check(trainer)

    # ---- the decision ------------------------------------------------------------------

    def _check(self, trainer: Any) -> None:
        if trainer.fast_dev_run:
            return
        metrics = trainer.callback_metrics
        if self._auto_monitor:
            self._follow_results_api(metrics)
        if self.monitor not in metrics:
            message = (f"Early stopping conditioned on metric {self.monitor!r}, which is not available. "
                       f"Log it (self.log({self.monitor!r}, ...)) or monitor one of the available metrics: "
                       f"{', '.join(sorted(metrics)) or '(none)'}.")
            if self.strict:
                raise RuntimeError(message)
            warnings.warn(message + " (strict=False: not stopping.)")
            return
        current = torch.as_tensor(metrics[self.monitor]).detach().float().cpu().reshape(())
        stop, reason = self._evaluate(current)
        if stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason = reason
            if self.verbose and trainer.is_global_zero:
                print(f"[EarlyStopping] {reason}")

    def _follow_results_api(self, metrics: Dict[str, Any]) -> None:
        """0.9: stop on the Results API's ``early_stop_on`` when a module returns one, a validation's first."""
        for name in ("val_early_stop_on", "early_stop_on"):
            if name in metrics:
                self.monitor = name
                return

    def _better(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(a < b) if self.mode == "min" else bool(a > b)

    def _evaluate(self, current: torch.Tensor) -> "tuple[bool, Optional[str]]":
        name = self.monitor
        if self.check_finite and not torch.isfinite(current):
            return True, f"{name} = {current.item()} is not finite. Previous best: {self.best_score.item():.4f}."
        if self.stopping_threshold is not None and self._better(current, torch.tensor(self.stopping_threshold)):
            return True, f"Stopping threshold reached: {name} = {current.item():.4f} is better than {self.stopping_threshold}."
        if self.divergence_threshold is not None and self._better(torch.tensor(self.divergence_threshold), current):
            return True, f"Divergence threshold reached: {name} = {current.item():.4f} is worse than {self.divergence_threshold}."
        delta = -self.min_delta if self.mode == "min" else self.min_delta
        if self._better(current - delta, self.best_score.to(current.dtype)):
            self.best_score = current
            self.wait_count = 0
            return False, None
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, (f"{name} did not improve in the last {self.wait_count} checks. "
                          f"Best score: {self.best_score.item():.4f}.")
        return False, None

    # ---- state -------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Patience bookkeeping (plain data)."""
        return {"wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch,
                "best_score": self.best_score, "patience": self.patience}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the bookkeeping of :meth:`state_dict`."""
        self.wait_count = int(state_dict["wait_count"])
        self.stopped_epoch = int(state_dict["stopped_epoch"])
        self.best_score = torch.as_tensor(state_dict["best_score"])
        self.patience = int(state_dict.get("patience", self.patience))
