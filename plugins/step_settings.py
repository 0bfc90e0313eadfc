"""How a fit's optimizer steps are configured: gradient accumulation, clipping and NaN checks, validated once.

* ``accumulate_grad_batches``: an ``int >= 1``, or a schedule ``{epoch: k}`` (from each key's epoch
  on, ``k``; epochs before the first key accumulate 1). A group of ``k`` batches steps the
  optimizer once, on losses divided by ``k``; an epoch's last, incomplete group steps too
  (:func:`steps_optimizer`). :func:`accumulating` tells other plugins (metrics, checkpoints)
  whether the current batch only accumulates.
* ``gradient_clip_val`` and ``gradient_clip_algorithm`` (``'norm'``, the default, or ``'value'``):
  clip inside each step, after ``on_before_optimizer_step``. A module overriding
  ``configure_gradient_clipping`` clips itself (called with the flags' values).
* ``terminate_on_nan`` and ``detect_anomaly``: check every loss; ``detect_anomaly`` also turns on
  ``torch.autograd.set_detect_anomaly`` for the fit.
* ``truncated_bptt_steps`` (seed era; 1.x: the module's attribute): split each batch in time, one step
  per split (:mod:`~hookloop.plugins.tbptt_step`).

Under manual optimization the module steps itself: accumulation and clipping flags are then an
error that says what to do instead. :meth:`StepSettings.of` does all the checking; a bad value
raises a ``MisconfigurationException`` naming the flag before anything trains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from hookloop.engine.errors import FlagError, MisconfigurationException
from hookloop.engine.module import LightningModule, is_overridden
from hookloop.engine.seed_flags import check_truncated_bptt_steps

__all__ = ["StepSettings", "steps_optimizer", "accumulating", "accumulation_for_epoch", "check_accumulation"]


def steps_optimizer(batch_idx: int, k: int, total: float) -> bool:
    """Whether batch ``batch_idx`` steps the optimizer when gradients accumulate over ``k`` batches:
    a group of ``k`` is complete, or it is the epoch's last batch (of ``total``; an incomplete group)."""
    return k == 1 or (batch_idx + 1) % k == 0 or batch_idx + 1 == total


def accumulating(trainer: Any, pl_module: Any) -> bool:
    """Lightning's ``_should_accumulate``: the current training batch (``trainer.state.batch_idx``)
    added to the gradients without stepping the optimizer (automatic optimization only)."""
    schedule = trainer.accumulate_grad_batches
    if schedule == 1 or schedule is None or not pl_module.automatic_optimization:
        return False
    k = accumulation_for_epoch(schedule, trainer.current_epoch)
    return not steps_optimizer(trainer.state.batch_idx, k, trainer.num_training_batches)


def accumulation_for_epoch(schedule: Any, epoch: int) -> int:
    """``accumulate_grad_batches`` for ``epoch``: an int, or the value of the last ``{epoch: k}`` key <= epoch."""
    if isinstance(schedule, dict):
        keys = [e for e in schedule if e <= epoch]
        return schedule[max(keys)] if keys else 1
    return schedule


def check_accumulation(schedule: Any) -> None:
    """Raise a ``MisconfigurationException`` unless ``schedule`` is an int >= 1 or a non-empty ``{epoch: k}``."""
    def bad(k: Any) -> bool:
        return not isinstance(k, int) or isinstance(k, bool) or k < 1

    if isinstance(schedule, dict):
        if not schedule or any(bad(k) or not isinstance(e, int) or isinstance(e, bool) or e < 0
                               for e, k in schedule.items()):
            raise FlagError(
                "accumulate_grad_batches",
                f"accumulate_grad_batches={schedule!r}: a schedule maps epochs (int >= 0) to batch counts (int >= 1), "
                "e.g. {0: 1, 4: 2, 8: 4}."
            )
    elif bad(schedule):
        raise FlagError(
            "accumulate_grad_batches",
            f"accumulate_grad_batches must be an int >= 1 or a dict {{epoch: k}}, got {schedule!r}.")


@dataclass(frozen=True)
class StepSettings:
    """A fit's step flags, checked: what :meth:`of` read from the trainer and the module."""

    #: ``accumulate_grad_batches``: an int >= 1 or ``{epoch: k}`` (``None`` read as 1).
    accumulate: Any
    #: Clips one optimizer's gradients (``clip(optimizer)``), or ``None`` when nothing clips.
    clip: Optional[Callable[[Any], None]]
    #: Check every loss for NaN/inf (``terminate_on_nan`` or ``detect_anomaly``).
    check_finite: bool
    #: ``detect_anomaly``: autograd's anomaly mode is on during the fit.
    anomaly: bool
    #: ``truncated_bptt_steps``: the time split size of truncated back-propagation, or ``None``.
    tbptt: Optional[int] = None

    @classmethod
    def of(cls, trainer: Any, pl_module: LightningModule) -> "StepSettings":
        """Read and check the trainer's flags for ``pl_module`` (accumulation first, then clipping)."""
        schedule = trainer.accumulate_grad_batches if trainer.accumulate_grad_batches is not None else 1
        check_accumulation(schedule)
        value = trainer.gradient_clip_val
        algorithm = trainer.gradient_clip_algorithm or "norm"
        if algorithm not in ("norm", "value"):
            raise FlagError(
                "gradient_clip_algorithm", f"gradient_clip_algorithm={algorithm!r} is unknown; use 'norm' or 'value'.")
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise FlagError("gradient_clip_val", f"gradient_clip_val must be a number >= 0, got {value!r}.")
        check_finite = bool(trainer.terminate_on_nan or trainer.detect_anomaly)
        anomaly = bool(trainer.detect_anomaly)
        # The seed's Trainer flag, or 1.x's module attribute of the same name.
        tbptt = trainer.truncated_bptt_steps
        if tbptt is None:
            tbptt = getattr(pl_module, "truncated_bptt_steps", None) or None  # 1.x: 0 is off
            check_truncated_bptt_steps(tbptt, type(pl_module).__name__)
        if not pl_module.automatic_optimization:
            if tbptt is not None:
                raise MisconfigurationException(
                    "truncated_bptt_steps is not supported with manual optimization (automatic_optimization=False): "
                    "split the sequence in training_step and step after each piece yourself, or remove the flag.")
            if schedule != 1:
                raise MisconfigurationException(
                    "accumulate_grad_batches is not supported with manual optimization "
                    "(automatic_optimization=False): accumulate in training_step yourself, or remove the flag.")
            if value:
                raise MisconfigurationException(
                    "gradient_clip_val is not supported with manual optimization (automatic_optimization=False): "
                    "call self.clip_gradients(optimizer, gradient_clip_val=..., gradient_clip_algorithm=...) "
                    "in training_step before opt.step(), or remove the flag.")
            return cls(schedule, None, check_finite, anomaly)
        return cls(schedule, _clipper(pl_module, value, algorithm), check_finite, anomaly, tbptt)


def _clipper(pl_module: LightningModule, value: Optional[float], algorithm: str) -> Optional[Callable[[Any], None]]:
    """What clips an optimizer's gradients: the module's ``configure_gradient_clipping`` if it overrides it."""
    if is_overridden("configure_gradient_clipping", pl_module):
        return lambda opt: pl_module.configure_gradient_clipping(opt, value, algorithm)
    if value:
        return lambda opt: pl_module.clip_gradients(opt, value, algorithm)
    return None
