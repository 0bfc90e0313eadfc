"""A module as the plugin: its ``@hookimpl`` functions are the implementations."""
from engine import hookimpl

from hookloop_testplugins import CALLS


@hookimpl
def on_fit_start(trainer, pl_module):
    """Record that the fit started."""
    CALLS.append(("tp_module", "on_fit_start"))


@hookimpl
def on_train_epoch_end(trainer):
    """Record each training epoch's end (taking a subset of the event's arguments)."""
    CALLS.append(("tp_module", "on_train_epoch_end"))
