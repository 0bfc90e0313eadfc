"""Trainer flags of 0.8/0.9 that have no 2.x counterpart in hookloop: renamed, ignored, or refused.

Renamed ones (``*_percent_check``, ``overfit_pct``) become their 0.8 successors; flags that only
tuned what hookloop does another way (``log_save_interval``, ``amp_level``...) are accepted with a
warning saying so; flags whose feature hookloop lacks, and that would change what is trained
(``tpu_cores``), are refused naming the feature — a run must
never silently train something else than asked. ``log_gpu_memory``'s value is checked here; the
``gpu_memory`` plugin does its work.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict

from hookloop.engine.errors import FlagError

#: 0.8's renamed flags: old name -> the name that replaced it.
RENAMED = {
    "train_percent_check": "limit_train_batches",
    "val_percent_check": "limit_val_batches",
    "test_percent_check": "limit_test_batches",
    "overfit_pct": "overfit_batches",
}

#: Accepted, not used: why, and what to do instead.
IGNORED = {
    "log_save_interval": "loggers write at every epoch end and every flush_secs",
    "amp_level": "it configures NVIDIA apex; 16-bit precision runs on torch.autocast",
    "auto_select_gpus": "the GPUs are those of gpus=/devices=",
}

#: Refused when set: the feature, and what to do instead.
REFUSED = {
    "tpu_cores": "TPUs are not supported; use accelerator='gpu' or 'cpu'",
}


def resolve_seed_flags(flags: Dict[str, Any], given: Dict[str, Any]) -> Dict[str, Any]:
    """The 2.x flags ``given`` (name -> value) updated from the 0.8/0.9 ``flags`` that were set.

    Renamed flags replace their successors (with a ``DeprecationWarning``), ignored ones warn,
    refused ones raise a :class:`FlagError` naming the flag.
    """
    resolved = dict(given)
    for name, value in flags.items():
        if not _is_set(name, value):
            continue
        if name in REFUSED:
            raise FlagError(name, f"Trainer({name}={value!r}): {REFUSED[name]}.")
        if name in IGNORED:
            warnings.warn(f"Trainer({name}={value!r}) has no effect in hookloop: {IGNORED[name]}.")
        elif name in RENAMED:
            warnings.warn(f"Trainer({name}=...) is the 0.7 name of {RENAMED[name]}=...; it is used as that.",
                          DeprecationWarning)
            resolved[RENAMED[name]] = value
        elif name == "log_gpu_memory" and value not in ("all", "min_max"):
            raise FlagError("log_gpu_memory", f"Trainer(log_gpu_memory={value!r}): use 'all' (every GPU) or 'min_max'.")
        elif name == "amp_backend" and value != "native":
            raise FlagError(
                "amp_backend", f"Trainer(amp_backend={value!r}): only 'native' (torch.autocast) mixed precision is supported.")
    return resolved


def uses_seed_only_flags(flags: Dict[str, Any]) -> bool:
    """Whether any of the 0.7 flag names that 0.8 renamed (``train_percent_check``...) is set in ``flags``:
    those names mark a seed-era script (see ``LoopState.seed_era``)."""
    return any(_is_set(name, flags.get(name)) for name in RENAMED)


def _is_set(name: str, value: Any) -> bool:
    """Whether a seed flag was given a value other than its do-nothing default."""
    if name == "amp_backend":
        return value != "native"
    return value is not None and value is not False


def check_truncated_bptt_steps(value: Any, where: str = "Trainer") -> None:
    """Raise a :class:`FlagError` unless ``value`` (``truncated_bptt_steps`` of ``where``) is ``None`` or an int >= 1."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise FlagError("truncated_bptt_steps",
                        f"{where}(truncated_bptt_steps={value!r}): truncated_bptt_steps must be an int >= 1 "
                        "(the time steps of each split of a batch), or None.")


def check_track_grad_norm(value: Any) -> None:
    """Raise a :class:`FlagError` unless ``track_grad_norm`` is a number (``<= 0``: off, the default ``-1``) or ``'inf'``."""
    if value is not None and (isinstance(value, bool) or not (isinstance(value, (int, float)) or value == "inf")):
        raise FlagError("track_grad_norm",
                        f"Trainer(track_grad_norm={value!r}): track_grad_norm can be an int, a float or 'inf' "
                        "(infinity norm); -1 turns it off.")
