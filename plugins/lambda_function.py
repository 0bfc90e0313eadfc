"""``LambdaCallback``: a callback made of functions given as keyword arguments, one per hook."""
from __future__ import annotations

from typing import Any, Callable

from hookloop.engine import Callback
from hookloop.engine.catalogue import callback_hooks
from hookloop.engine.errors import MisconfigurationException, did_you_mean


class LambdaCallback(Callback):
    """Call the given functions at their hooks: ``LambdaCallback(on_train_start=lambda trainer, pl_module: ...)``.

    Each keyword names a callback hook (any event ``engine.Callback`` has, Lightning's 2.x names
    included) and is called with that hook's arguments, by position. Only the hooks given are
    registered; ``None`` leaves a hook out, as in Lightning.
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        known = callback_hooks()
        for name, function in hooks.items():
            if name not in known:
                raise MisconfigurationException(
                    f"LambdaCallback({name}=...): {name!r} is no callback hook." + did_you_mean(name, known)
                    + " The hooks are the methods of engine.Callback (see engine/hookspecs.py).")
            if function is not None and not callable(function):
                raise MisconfigurationException(
                    f"LambdaCallback({name}={function!r}): pass a function (or None to leave the hook out).")
        for name, function in hooks.items():
            if function is not None:
                # Assigned on the instance: the registry calls it like an overridden method.
                setattr(self, name, function)


__all__ = ["LambdaCallback"]
