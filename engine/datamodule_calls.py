"""Which of a datamodule's ``prepare_data``/``setup``/``teardown`` have run, and which ran by hand.

Lightning 0.9 (to 1.5) kept this record: ``dm.has_prepared_data``, ``dm.has_setup_fit``,
``dm.has_setup_test``... And its trainer did not repeat a call the user had already made, the pattern
its datamodule docs teach for a model built from the data's sizes::

    dm.prepare_data(); dm.setup('fit')
    model = Model(num_classes=dm.num_classes)
    trainer.fit(model, dm)              # prepare_data and setup('fit') are not called again

Here the record has two parts. Every call is noted (the ``has_*`` flags read it). A call made by hand,
outside a trainer, is also noted as *pending*; the next run that would make the same call takes the
pending note instead and skips the call, once. A run calls again what it called itself, as Lightning 2.x
does, so a second ``fit`` sets up again. ``setup()`` with no stage counts for every stage, as in 0.9.

:func:`track_calls` wraps the three methods a ``LightningDataModule`` subclass defines (from
``__init_subclass__``); :func:`call_data_hook` is how the trainer's plugin calls them.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Set, Tuple

#: The stages a ``setup``/``teardown`` with no stage stands for.
STAGES = ("fit", "validate", "test", "predict")
#: The datamodule methods whose calls are recorded.
TRACKED = ("prepare_data", "setup", "teardown")

Call = Tuple[str, Optional[str]]

_CALLS = "_hookloop_data_hook_calls"        # every call: {(name, stage)}
_PENDING = "_hookloop_data_hook_by_hand"    # calls made by hand that no run has taken yet
_BY_TRAINER = "_hookloop_calling_data_hook"  # set while the trainer makes the call


def _record(obj: Any, name: str, args: tuple, kwargs: dict) -> None:
    state = obj.__dict__
    if name == "prepare_data":
        calls: Set[Call] = {(name, None)}
    else:
        stage = args[0] if args else kwargs.get("stage")
        calls = {(name, s) for s in STAGES} if stage is None else {(name, stage)}
    state.setdefault(_CALLS, set()).update(calls)
    if not state.get(_BY_TRAINER) and name != "teardown":  # a run always tears down what it set up
        state.setdefault(_PENDING, set()).update(calls)


def track_calls(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (a datamodule's ``prepare_data``/``setup``/``teardown``), noting each call before it runs."""
    if getattr(method, "__hookloop_tracked__", False):
        return method

    @functools.wraps(method)
    def tracked(self: Any, *args: Any, **kwargs: Any) -> Any:
        _record(self, name, args, kwargs)
        return method(self, *args, **kwargs)

    tracked.__hookloop_tracked__ = True  # type: ignore[attr-defined]
    return tracked


def wrap_subclass(cls: type) -> None:
    """Wrap the tracked methods that ``cls`` itself defines (plain functions only)."""
    for name in TRACKED:
        method = cls.__dict__.get(name)
        if inspect.isfunction(method):
            setattr(cls, name, track_calls(name, method))


def has_called(obj: Any, name: str, stage: Optional[str] = None) -> bool:
    """Whether ``obj.<name>(stage)`` has run (by hand or by a trainer)."""
    return (name, stage) in obj.__dict__.get(_CALLS, ())


def call_data_hook(obj: Any, name: str, stage: Optional[str] = None) -> None:
    """Call ``obj.<name>(stage)`` for a run, unless the user made that call by hand since: then take that
    call's place (see the module docstring)."""
    pending = obj.__dict__.get(_PENDING)
    if pending and (name, stage) in pending:
        pending.discard((name, stage))
        return
    obj.__dict__[_BY_TRAINER] = True
    try:
        method = getattr(obj, name)
        method() if name == "prepare_data" else method(stage)
    finally:
        obj.__dict__[_BY_TRAINER] = False
