"""Where a tuned value lives: the model, ``model.hparams``, the datamodule or its ``hparams``.

Lightning's lookup (``lightning_hasattr``/``lightning_setattr``): a value is read from the last
holder in that order and written to every holder, so ``self.lr`` and ``self.hparams.lr`` both get
the learning rate found.
"""
from __future__ import annotations

from argparse import Namespace
from typing import Any, List, Tuple


def holders(model: Any, name: str, datamodule: Any = None) -> List[Tuple[str, Any]]:
    """``(label, holder)`` for each holder of ``name``, in order: ``('model.lr', model)``, ``('model.hparams.lr', ...)``."""
    found: List[Tuple[str, Any]] = []
    for owner, label in ((model, "model"), (datamodule, "datamodule")):
        if owner is None:
            continue
        if hasattr(owner, name):
            found.append((f"{label}.{name}", owner))
        params = getattr(owner, "hparams", None)
        if isinstance(params, (dict, Namespace)) and name in (params if isinstance(params, dict) else vars(params)):
            found.append((f"{label}.hparams.{name}", params))
    return found


def get_value(model: Any, name: str, datamodule: Any = None) -> Any:
    """The value of ``name`` in its last holder (``None`` when nothing holds it)."""
    found = holders(model, name, datamodule)
    if not found:
        return None
    holder = found[-1][1]
    return holder[name] if isinstance(holder, dict) else getattr(holder, name)


def set_value(model: Any, name: str, value: Any, datamodule: Any = None) -> str:
    """Write ``value`` to every holder of ``name``; return where it went (``'model.lr and model.hparams.lr'``)."""
    found = holders(model, name, datamodule)
    for _, holder in found:
        if isinstance(holder, dict):
            holder[name] = value
        else:
            setattr(holder, name, value)
    return " and ".join(label for label, _ in found)


def searched(datamodule: Any = None) -> str:
    """The places :func:`holders` looks in, for messages."""
    return "the model, model.hparams" + (", the datamodule and its hparams" if datamodule is not None else "")
