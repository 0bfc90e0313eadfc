"""The batch-size search: the largest batch size whose steps do not run out of memory.

Each trial (see :mod:`plugins.tuner.trial`) sets the batch-size attribute (``batch_arg_name``, in the
model, its ``hparams`` or the datamodule), lets the dataloader be built from it again and runs
``steps_per_trial`` steps. An out-of-memory error (:func:`plugins.tuner.memory.is_out_of_memory`) means
"does not fit"; any other error ends the search. ``'power'`` doubles the size from ``init_val`` until a
trial fails and keeps the last size that fitted; ``'binsearch'`` then bisects between the largest size
that fitted and the smallest that failed. A size that fails before any fitted is halved. A batch never
grows past the dataset's length. The model's weights and the generators are then as they were, and the
attribute holds the size found.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple

from hookloop.engine.errors import MisconfigurationException, did_you_mean
from hookloop.plugins.tuner.attributes import get_value, holders, searched, set_value
from hookloop.plugins.tuner.memory import is_out_of_memory, release_memory
from hookloop.engine.dataloader_kinds import STAGE_LOADERS
from hookloop.plugins.tuner.trial import check_single_process, preserved, run_trial, trial_trainer

#: Search strategies.
MODES = ("power", "binsearch")


def check_batch_size_args(culprit: str, mode: str, steps_per_trial: int, init_val: int, max_trials: int,
                          batch_arg_name: str) -> str:
    """Raise a :class:`MisconfigurationException` naming ``culprit`` for a bad argument; return the mode, lower-cased."""
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in MODES:
        raise MisconfigurationException(
            f"{culprit}(mode={mode!r}): the search is 'power' or 'binsearch'." + did_you_mean(str(mode), MODES))
    for name, value in (("steps_per_trial", steps_per_trial), ("init_val", init_val), ("max_trials", max_trials)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MisconfigurationException(f"{culprit}({name}={value!r}): pass an int >= 1.")
    if not isinstance(batch_arg_name, str) or not batch_arg_name:
        raise MisconfigurationException(f"{culprit}(batch_arg_name={batch_arg_name!r}): name the batch-size attribute.")
    return mode


def scale_batch_size(trainer: Any, model: Any, stage: str, loaders: Dict[str, Any], datamodule: Any, *,
                     mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                     batch_arg_name: str = "batch_size", culprit: str = "scale_batch_size") -> Optional[int]:
    """Find the largest batch size for ``stage`` (``'fit'``, ``'validate'``, ``'test'``, ``'predict'``) and set it.

    Returns the size, or ``None`` (with a warning) under ``fast_dev_run``. ``loaders`` are the
    dataloaders passed to that stage, which must be ``None``: a batch size can only change where
    the model or datamodule builds its dataloaders. At most ``max_trials`` sizes are tried.
    """
    mode = check_batch_size_args(culprit, mode, steps_per_trial, init_val, max_trials, batch_arg_name)
    if trainer.fast_dev_run:
        warnings.warn(f"{culprit}: the batch-size search is skipped, since fast_dev_run is on.")
        return None
    check_single_process(trainer, culprit)
    kind = STAGE_LOADERS[stage]
    if loaders.get(kind) is not None:
        raise MisconfigurationException(
            f"{culprit} cannot resize the {kind} dataloader passed to {stage}() directly. Build it in "
            f"{kind}_dataloader() of the model or a datamodule, from "
            f"`self.{batch_arg_name}`, and pass no dataloader.")
    if not holders(model, batch_arg_name, datamodule):
        raise MisconfigurationException(
            f"{culprit} changes the batch size through `{batch_arg_name}`, but {type(model).__name__} has none "
            f"(looked in {searched(datamodule)}). Store the batch size there and build the dataloader from it, "
            "or name the attribute with batch_arg_name='...'.")
    original = get_value(model, batch_arg_name, datamodule)
    search = _Search(mode)
    found: Optional[int] = None
    try:
        with preserved(model, trainer.default_root_dir, "scale_batch_size"):
            size = init_val
            for _ in range(max_trials):
                set_value(model, batch_arg_name, size, datamodule)
                fits, length = _trial(trainer, model, stage, loaders, datamodule, steps_per_trial)
                following = search.next_size(size, fits, length)
                if following is None:
                    break
                size = following
        found = search.largest_fit
    finally:
        set_value(model, batch_arg_name, found if found is not None else original, datamodule)
    if found is None:
        raise MisconfigurationException(
            f"{culprit}: every batch size tried ran out of memory, down to {search.smallest_failure} (from "
            f"init_val={init_val}, at most max_trials={max_trials} sizes). The model alone may not fit the device. "
            f"`{batch_arg_name}` is back at {original!r}.")
    if trainer.is_global_zero:
        failed = f"; {search.smallest_failure} ran out of memory" if search.smallest_failure else ""
        print(f"{culprit}: batch size set to {found}{failed}.")
    return found


def _trial(trainer: Any, model: Any, stage: str, loaders: Dict[str, Any], datamodule: Any,
           steps: int) -> Tuple[bool, Optional[int]]:
    """Run ``steps`` steps at the current batch size: ``(fits, dataset length or None)``."""
    kind = STAGE_LOADERS[stage]
    if stage == "fit":
        trial = trial_trainer(trainer, max_steps=steps, limit_train_batches=1.0, limit_val_batches=0)
    else:
        trial = trial_trainer(trainer, **{f"limit_{kind}_batches": steps})
    try:
        run_trial(trial, model, stage, loaders, datamodule)
        fits = True
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        fits = False  # the exception (and the frames holding its tensors) goes at the end of this block
    length = _dataset_length(trial.train_dataloader if stage == "fit" else trial.load_dataloaders(kind))
    del trial
    release_memory()
    return fits, length


def _dataset_length(loaders: Any) -> Optional[int]:
    """The largest dataset length among ``loaders`` (``None`` if none is known: no loader, iterable datasets)."""
    found: List[int] = []
    for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
        try:
            found.append(len(loader.dataset))
        except (AttributeError, TypeError):
            continue
    return max(found) if found else None


class _Search:
    """Which size to try next, from what fitted and what failed."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.largest_fit: Optional[int] = None
        self.smallest_failure: Optional[int] = None

    def next_size(self, size: int, fits: bool, length: Optional[int]) -> Optional[int]:
        """The size to try after ``size`` fitted (or not); ``None`` when the search is over."""
        if fits:
            self.largest_fit = size
            if length is not None and size >= length:
                return None  # a larger batch would hold no more samples
            if self.smallest_failure is None:
                return size * 2 if length is None else min(size * 2, length)
            if self.mode == "power":
                return None
            middle = (size + self.smallest_failure) // 2
            return middle if middle > size else None
        self.smallest_failure = size
        if self.largest_fit is None:
            return size // 2 or None  # nothing fitted yet: halve (down to 1)
        if self.mode == "power":
            return None
        middle = (self.largest_fit + size) // 2
        return middle if middle > self.largest_fit else None
