"""An object with ``@hookimpl`` methods, and a ``Callback`` subclass (instantiated by the engine)."""
from engine import Callback, hookimpl

from hookloop_testplugins import CALLS


class _ObjectPlugin:
    """A plain object whose marked methods implement events."""

    @hookimpl
    def on_train_epoch_end(self, trainer, pl_module):
        """Record each training epoch's end."""
        CALLS.append(("tp_object", "on_train_epoch_end"))


OBJECT_PLUGIN = _ObjectPlugin()


class EpochCounter(Callback):
    """A Lightning-style callback: methods named like events, no decorator."""

    def __init__(self):
        self.epochs = 0

    def on_train_epoch_end(self, trainer, pl_module):
        """Count epochs and record the call."""
        self.epochs += 1
        CALLS.append(("tp_callback", "on_train_epoch_end"))
