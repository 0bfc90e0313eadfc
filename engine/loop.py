"""The loop core: walks epochs and batches and emits events. It knows no feature.

Everything a step does is asked of behaviour hooks (``run_training_batch``,
``transfer_batch_to_device``, ``evaluation_step``...) and everything around it is an event
(``on_train_batch_start``...). Events nobody implements are ``None`` in the dispatch and
skipped with one ``is not None`` test.
"""
from __future__ import annotations

import itertools
import math
import operator
import sys
import warnings
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

import torch

from hookloop.engine.combined_loader import CombinedLoader
from hookloop.engine.errors import FlagError, MisconfigurationException
from hookloop.engine.loop_views import eval_run_key
from hookloop.engine.markers import SKIPPED_BATCH

if TYPE_CHECKING:
    from hookloop.engine.trainer import Trainer

#: A ``CombinedLoader``'s item is ``(batch, batch_idx, dataloader_idx)``; training takes the batch (in C, per batch).
_first_item = operator.itemgetter(0)

# Event names per evaluation stage: start, epoch_start, batch_start, batch_end, epoch_end, end.
_EVAL_EVENTS = {
    stage: tuple(f"on_{prefix}_{suffix}" for suffix in
                 ("start", "epoch_start", "batch_start", "batch_end", "epoch_end", "end"))
    for stage, prefix in (("validate", "validation"), ("test", "test"), ("predict", "predict"))
}
# The module's behaviour hooks that set its mode per evaluation stage: (to eval, back to train).
# Predict has no way back (as in Lightning): the recorded modes are restored.
_MODE_EVENTS = {
    "validate": ("on_validation_model_eval", "on_validation_model_train"),
    "test": ("on_test_model_eval", "on_test_model_train"),
    "predict": ("on_predict_model_eval", None),
}


def num_batches(dataloader: Any, limit: Union[int, float], flag: str) -> Union[int, float]:
    """How many batches of ``dataloader`` one epoch runs, given a ``limit_*`` flag (int count or float fraction)."""
    try:
        length: Union[int, float] = len(dataloader)
    except TypeError:  # an iterable without a length
        length = math.inf
    check_limit(flag, limit)
    if isinstance(limit, int):
        return min(length, limit)
    if limit == 1.0:
        return length
    if length == math.inf:
        raise FlagError(
            flag, f"`{flag}={limit}` is a fraction, but the dataloader has no length; pass an int number of batches."
        )
    return int(length * limit) if length * limit >= 1 else (1 if limit > 0 else 0)


def check_limit(flag: str, limit: Any) -> None:
    """Raise :class:`FlagError` unless a ``limit_*``-style flag is an int count >= 0 or a float fraction in [0, 1]."""
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
        raise FlagError(flag, f"`{flag}` must be an int >= 0 or a float in [0, 1], got {limit!r}.")
    if isinstance(limit, float) and limit > 1.0:
        raise FlagError(flag, f"`{flag}={limit}` is a fraction above 1.0; use a float in [0, 1] or an int count.")


def check_val_check_interval(interval: Any) -> None:
    """Raise :class:`FlagError` unless ``val_check_interval`` is an int > 0 or a float in (0, 1]."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise FlagError("val_check_interval",
                        f"`val_check_interval` must be a float in (0, 1] or an int > 0, got {interval!r}.")
    if isinstance(interval, float) and interval > 1.0:
        raise FlagError("val_check_interval",
                        f"`val_check_interval={interval}` is a fraction above 1.0; pass an int batch count.")


class FitLoop:
    """Epochs of training batches with validation at the configured points."""

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    # ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Train until ``max_epochs``/``max_steps`` or ``should_stop`` (respecting ``min_*``)."""
        trainer = self.trainer
        state = trainer.state
        module = trainer.lightning_module
        hooks = trainer.hooks
        # Validation data is loaded when first needed (Lightning's order: the sanity check loads it
        # before the training data; limit_val_batches=0 never asks for it).
        self._val_loaded = False
        if is_zero_limit(trainer.limit_train_batches):
            # limit_train_batches=0 turns training off, as in Lightning: fit() sets up and tears down only.
            self._setup_dataloaders()
            warnings.warn("`limit_train_batches=0`: training is skipped.", UserWarning, stacklevel=2)
            return
        if not state.restored:
            self._sanity_check()
        self._setup_dataloaders()
        self._loaded_at_epoch = state.epoch
        _emit(hooks.on_pretrain_routine_end, trainer, module)
        _emit(hooks.on_train_start, trainer, module)
        while not self.done:
            self.run_epoch()
            # Recompute: a plugin may have changed the stopping flags during the epoch.
            state.epoch += 1
            state.start_batch = 0
            state.batch_idx = 0
        state.phase = "train_end"
        _emit(trainer.hooks.on_train_end, trainer, module)

    @property
    def done(self) -> bool:
        """True once training must stop before another epoch."""
        trainer = self.trainer
        state = trainer.state
        if trainer.max_steps is not None and trainer.max_steps >= 0 and state.global_step >= trainer.max_steps:
            return True
        if trainer.max_epochs is not None and trainer.max_epochs >= 0 and state.epoch >= trainer.max_epochs:
            return True
        return state.should_stop and self.stop_allowed

    @property
    def stop_allowed(self) -> bool:
        """``should_stop`` is honoured only once ``min_epochs`` and ``min_steps`` are met.

        As in Lightning, ``min_epochs`` counts *finished* epochs: that is ``state.epoch``
        both inside an epoch and right after one (the loop bumps it before asking ``done``).
        """
        trainer = self.trainer
        state = trainer.state
        if trainer.min_epochs and state.epoch < trainer.min_epochs:
            return False
        if trainer.min_steps and state.global_step < trainer.min_steps:
            return False
        return True

    # ----------------------------------------------------------------------------------
    def _setup_dataloaders(self, reload: bool = False) -> None:
        trainer = self.trainer
        if reload or trainer.train_dataloader is None:  # else loaded for this fit already (estimated_stepping_batches)
            setup_train_dataloader(trainer)
        if reload:
            self._val_loaded = False  # asked for again at the next validation
        self.val_check_batch = trainer.val_check_batch = self._val_check_batch()

    def _load_val_dataloaders(self) -> None:
        """Load the validation data once (until a reload): none when this fit does not validate."""
        if self._val_loaded:
            return
        trainer = self.trainer
        trainer.val_dataloaders = trainer.load_dataloaders("val") if trainer.has_validation else []
        trainer.num_val_batches = [num_batches(dl, trainer.limit_val_batches, "limit_val_batches")
                                   for dl in trainer.val_dataloaders]
        self._val_loaded = True

    def _val_check_batch(self) -> Union[int, float]:
        interval = self.trainer.val_check_interval
        total = self.trainer.num_training_batches
        check_val_check_interval(interval)
        if isinstance(interval, int):
            # As in Lightning: an int counts batches of this epoch, so it cannot exceed the epoch,
            # unless check_val_every_n_epoch=None makes it count batches across epochs.
            if interval > total and self.trainer.check_val_every_n_epoch is not None:
                raise FlagError("val_check_interval", 
                    f"`val_check_interval={interval}` is more than the {total} training batches of an epoch. "
                    "Lower it, set `limit_val_batches=0` to turn validation off, or pass "
                    "`check_val_every_n_epoch=None` to count batches across epochs."
                )
            return interval
        if total == math.inf:
            if interval == 1.0:
                return math.inf  # validate once the iterable is exhausted
            raise FlagError("val_check_interval",
                            "`val_check_interval` is a fraction but the training dataloader has no length; pass an int.")
        return max(1, int(total * interval))

    def _sanity_check(self) -> None:
        trainer = self.trainer
        steps = trainer.num_sanity_val_steps
        if not steps or not trainer.has_validation:
            return
        module = trainer.lightning_module
        state = trainer.state
        state.sanity_checking = True
        _emit(trainer.hooks.on_sanity_check_start, trainer, module)
        self._load_val_dataloaders()  # after on_sanity_check_start, as in Lightning
        limits = [n if steps < 0 else min(n, steps) for n in trainer.num_val_batches]
        trainer.num_sanity_val_batches = limits
        if any(limits):
            run_evaluation(trainer, "validate", trainer.val_dataloaders, limits)
        _emit(trainer.hooks.on_sanity_check_end, trainer, module)
        state.sanity_checking = False
        # Sanity metrics are not results: forget them.
        state.callback_metrics.clear()
        state.logged_metrics.clear()
        state.progress_bar_metrics.clear()

    # ----------------------------------------------------------------------------------
    def run_epoch(self) -> None:
        """One training epoch: the batch loop, validation when due, then the epoch-end events."""
        trainer = self.trainer
        state = trainer.state
        module = trainer.lightning_module
        hooks = trainer.hooks
        state.skip_rest_of_epoch = False
        state.epoch_ending = False
        every = trainer.reload_dataloaders_every_n_epochs
        if every and state.epoch != self._loaded_at_epoch and state.epoch % every == 0:
            self._setup_dataloaders(reload=True)  # ask the module/datamodule for fresh loaders
            self._loaded_at_epoch = state.epoch
        state.phase = "train_epoch_start"
        if not state.start_batch:  # an epoch resumed mid-way started in the run that was interrupted (Lightning's rule)
            _emit(hooks.on_epoch_start, trainer, module)
            _emit(hooks.on_train_epoch_start, trainer, module)
        state.phase = "train_batch"

        loader = trainer.train_dataloader
        total = trainer.num_training_batches
        start = state.start_batch
        batches = iter(hooks.iterate_dataloader(trainer, module, loader, "train", start))
        if type(loader) is CombinedLoader:  # it yields (batch, batch_idx, dataloader_idx): train on the batch
            batches = map(_first_item, batches)
        # The epoch's batch count is kept by islice rather than tested per batch.
        epoch = batches if total == math.inf else itertools.islice(batches, max(0, total - start))
        device = trainer.root_device
        validate_now = self._validation_due_this_epoch()
        val_every = self.val_check_batch
        # With check_val_every_n_epoch=None an int interval counts batches across epochs.
        offset = state.epoch * total if trainer.check_val_every_n_epoch is None and total != math.inf else 0
        # An int either way: comparing two ints is what CPython specialises, an int and math.inf is not.
        max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps >= 0 else sys.maxsize
        batch_idx = start - 1
        validated_at = -1
        for batch_idx, batch in enumerate(epoch, start):
            state.batch_idx = batch_idx
            # No re-read of ``trainer.hooks`` per batch: the Dispatch is rebuilt in place when a
            # plugin registers mid-run, so ``hooks`` is always current. The events around the step
            # are tested one by one only when their group has a listener (see EVENT_GROUPS).
            if hooks.any_before_training_step:
                # Lightning 2.x's order: the batch reaches its device first, then the batch-start events
                # see it there (the seed-era event first at the start, last at the end).
                if hooks.transfer_batch_to_device is not None:
                    batch = hooks.transfer_batch_to_device(trainer, module, batch, device, 0)
                if hooks.on_batch_start is not None:
                    hooks.on_batch_start(trainer, module)
                if hooks.on_train_batch_start is not None:
                    hooks.on_train_batch_start(trainer, module, batch, batch_idx, 0)
                if state.skip_rest_of_epoch:
                    break
            elif state.skip_rest_of_epoch:  # set after an earlier step (nothing listens before this one)
                break
            # Read, then called: a method-style call on an instance attribute is not specialised.
            run_batch = hooks.run_training_batch
            state.batch = batch  # self.log infers the batch size of epoch means from it
            outputs = run_batch(trainer, module, batch, batch_idx)
            if outputs is SKIPPED_BATCH:  # the step returned None: nothing to report
                outputs = None
            state.last_outputs = outputs
            if hooks.any_after_training_step:
                if hooks.on_train_batch_end is not None:
                    hooks.on_train_batch_end(trainer, module, outputs, batch, batch_idx, 0)
                if hooks.on_batch_end is not None:
                    hooks.on_batch_end(trainer, module)
            # Lightning validates every `val_every` batches, and at once when asked to stop.
            if validate_now and ((offset + batch_idx + 1) % val_every == 0 or (state.should_stop and self.stop_allowed)):
                stopping = state.should_stop and self.stop_allowed
                state.epoch_ending = stopping or batch_idx + 1 >= total or state.global_step >= max_steps
                self._validate()
                validated_at = batch_idx
            if (state.should_stop and self.stop_allowed) or state.global_step >= max_steps:
                break
        else:
            if epoch is not batches:
                # Ask once more, as a plain loop over the whole loader would: the iterator ends (a
                # generator runs its code after the last yield, a DataLoader's workers see the end).
                # A batch beyond the epoch's count (a limit, a wrong __len__) is dropped.
                next(batches, None)
        if batch_idx < start == 0 and not state.skip_rest_of_epoch:
            raise MisconfigurationException(
                f"The training dataloader ({type(loader).__name__}) yielded no batch in epoch {state.epoch}. "
                "Check that its dataset is not empty (an iterable dataset that yields nothing?)."
            )
        state.start_batch = 0
        state.epoch_ending = True
        state.batch = None  # epoch-end hooks log with no batch (and the last one may be freed)
        # An epoch of unknown length validates once its iterable is exhausted (as in Lightning).
        if validate_now and val_every == math.inf and validated_at != batch_idx and batch_idx >= start:
            self._validate()
        # Once per epoch, what trainer.fit_loop's progress counters derive from.
        state.epoch_batches = batch_idx + 1
        state.trained_batches += state.epoch_batches
        state.phase = "train_epoch_end"
        _emit(trainer.hooks.on_train_epoch_end, trainer, module)
        _emit(trainer.hooks.on_epoch_end, trainer, module)

    def _validation_due_this_epoch(self) -> bool:
        trainer = self.trainer
        if not trainer.has_validation:
            return False
        every = trainer.check_val_every_n_epoch
        if every is None:  # validation is paced by val_check_interval alone
            return True
        return bool(every) and (trainer.state.epoch + 1) % every == 0

    def _validate(self) -> None:
        trainer = self.trainer
        self._load_val_dataloaders()
        if not any(trainer.num_val_batches):
            return
        # Lightning asks the module before every validation of a fit (its default clears the gradients).
        _emit(trainer.hooks.on_validation_model_zero_grad, trainer, trainer.lightning_module)
        run_evaluation(trainer, "validate", trainer.val_dataloaders, trainer.num_val_batches)
        trainer.state.phase = "train_batch"


def run_evaluation(
    trainer: "Trainer", stage: str, dataloaders: Sequence[Any], limits: Sequence[Union[int, float]]
) -> List[Any]:
    """Run ``stage`` (``validate``/``test``/``predict``) over ``dataloaders``; return predict outputs.

    The module's ``on_<stage>_model_eval`` puts it in eval mode (``module.eval()`` when nothing
    implements it), under ``torch.no_grad()``. Afterwards ``on_<stage>_model_train`` is asked
    when implemented; otherwise, and on error, every submodule gets its own previous mode back
    (a frozen, eval-mode backbone stays in eval, as in Lightning 2.x). The grad mode is restored.
    """
    module = trainer.lightning_module
    state = trainer.state
    start_ev, epoch_start_ev, batch_start_ev, batch_end_ev, epoch_end_ev, end_ev = _EVAL_EVENTS[stage]
    to_eval_ev, to_train_ev = _MODE_EVENTS[stage]
    performance_check = stage != "predict"  # 0.9's on_pre/post_performance_check wrap validation and test runs
    if performance_check:
        _emit(trainer.hooks.on_pre_performance_check, trainer, module)
    modes = [(m, m.training) for m in module.modules()]
    previous_phase = state.phase
    state.phase = f"{stage}_start"  # the run's start hooks are epoch-level (what self.log may do there)
    state.num_dataloaders = len(dataloaders)
    state.eval_batch_idx, state.eval_batches_before = -1, 0
    keep_predictions = stage == "predict" and state.return_predictions
    predictions: List[Any] = []
    if stage == "predict":
        state.predictions = predictions  # trainer.predict_loop.predictions, filled as batches run
    modes_set_back = False
    try:
        to_eval = getattr(trainer.hooks, to_eval_ev)
        if to_eval is not None:
            to_eval(trainer, module)
        else:
            module.eval()
        with torch.no_grad():
            _emit(getattr(trainer.hooks, start_ev), trainer, module)
            _emit(getattr(trainer.hooks, epoch_start_ev), trainer, module)
            state.phase = stage
            device = trainer.root_device
            # The Dispatch is rebuilt in place when a plugin registers mid-run: ``hooks`` stays current.
            hooks = trainer.hooks
            for dataloader_idx, (loader, limit) in enumerate(zip(dataloaders, limits)):
                state.dataloader_idx = dataloader_idx if len(dataloaders) > 1 else None
                state.eval_batches_before += state.eval_batch_idx + 1
                state.eval_batch_idx = -1
                outputs_of_loader: List[Any] = []
                if keep_predictions:
                    predictions.append(outputs_of_loader)
                batches = hooks.iterate_dataloader(trainer, module, loader, stage, 0)
                for batch_idx, batch in enumerate(batches):
                    if batch_idx >= limit:
                        break
                    state.eval_batch_idx = batch_idx  # what the loops' progress counters derive from
                    # Lightning 2.x's order: to the device first, then the batch-start event.
                    if hooks.transfer_batch_to_device is not None:
                        batch = hooks.transfer_batch_to_device(trainer, module, batch, device, dataloader_idx)
                    on_start = getattr(hooks, batch_start_ev)
                    if on_start is not None:
                        on_start(trainer, module, batch, batch_idx, dataloader_idx)
                    state.batch = batch
                    output = hooks.evaluation_step(trainer, module, batch, batch_idx, dataloader_idx, stage)
                    on_end = getattr(hooks, batch_end_ev)
                    if on_end is not None:
                        on_end(trainer, module, output, batch, batch_idx, dataloader_idx)
                    if keep_predictions:
                        outputs_of_loader.append(output)
            state.dataloader_idx = None
            state.batch = None
            state.phase = f"{stage}_epoch_end"
            _emit(getattr(trainer.hooks, epoch_end_ev), trainer, module)
            _emit(getattr(trainer.hooks, end_ev), trainer, module)
            if not state.sanity_checking:
                _count_eval_run(state, stage)
        to_train = getattr(trainer.hooks, to_train_ev) if to_train_ev is not None else None
        if to_train is not None:
            to_train(trainer, module)
            modes_set_back = True
    finally:
        if not modes_set_back:
            for submodule, training in modes:
                submodule.training = training
        state.phase = previous_phase
        state.dataloader_idx = None
    if performance_check:
        _emit(trainer.hooks.on_post_performance_check, trainer, module)
    return predictions


def setup_train_dataloader(trainer: "Trainer") -> None:
    """Load the training data of this ``fit`` into ``trainer.train_dataloader`` and count ``num_training_batches``.

    Several loaders (a dict or list of them) become one ``CombinedLoader`` (see ``Trainer.load_dataloaders``).
    """
    train = trainer.load_dataloaders("train")
    if not train:
        raise MisconfigurationException(
            f"No training data: {type(trainer.lightning_module).__name__} has no `train_dataloader()` "
            "and none was passed to `fit(model, train_dataloaders=...)` or through a datamodule."
        )
    trainer.train_dataloader = train[0]
    trainer.num_training_batches = num_batches(train[0], trainer.limit_train_batches, "limit_train_batches")
    if trainer.num_training_batches == 0 and not is_zero_limit(trainer.limit_train_batches):
        raise MisconfigurationException(
            "The training dataloader yields no batch (its length is 0, or limit_train_batches is 0). "
            "Check the dataset and the batch size (drop_last=True with fewer samples than one batch?)."
        )


def _count_eval_run(state: Any, stage: str) -> None:
    """Once per evaluation run: its batches, for the evaluation loops' progress counters."""
    ran = state.eval_batches_before + state.eval_batch_idx + 1
    key = eval_run_key(state, stage)
    total = state.eval_runs.get(key, (0, 0))[1]
    state.eval_runs[key] = [ran, total + ran]


def is_zero_limit(limit: Union[int, float]) -> bool:
    """True for a ``limit_*_batches`` of 0 (int or float): that loop runs no batch."""
    return not isinstance(limit, bool) and limit == 0


def _emit(event: Optional[Any], trainer: "Trainer", module: Any) -> None:
    """Fire an argument-less event (``trainer, pl_module``) if anyone listens."""
    if event is not None:
        event(trainer, module)
