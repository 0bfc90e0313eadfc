"""Hyperparameters: ``save_hyperparameters()`` and ``hparams``, for the module and the datamodule alike.

Lightning's ``HyperparametersMixin``. The values live in the instance's ``__dict__`` (created on
first use, so a subclass that skips ``super().__init__()`` still works) and travel with it when
it is pickled (``ddp_spawn``).
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, Optional, Sequence


class AttributeDict(dict):
    """A dict whose keys are also attributes (``self.hparams.lr``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(f"hparams has no {key!r}; it has {sorted(self)}") from exc

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


class HyperparametersMixin:
    """``save_hyperparameters()``, ``hparams``, ``hparams_initial`` (mixed into ``LightningModule`` and
    ``LightningDataModule``)."""

    def _hparams_store(self) -> AttributeDict:
        store = self.__dict__.get("_hparams")
        if store is None:
            store = self.__dict__["_hparams"] = AttributeDict()
        return store

    def _initial_store(self) -> Dict[str, Any]:
        return self.__dict__.setdefault("_hparams_initial", {})

    @property
    def hparams(self) -> AttributeDict:
        """Hyperparameters saved by :meth:`save_hyperparameters` (or assigned)."""
        return self._hparams_store()

    @hparams.setter
    def hparams(self, value: Any) -> None:
        # Seed era: ``self.hparams = hparams`` in ``__init__(self, hparams)``. Remembered so that
        # ``load_from_checkpoint`` can rebuild the same kind of object for that argument.
        self.__dict__["_hparams_assigned"] = "dict" if isinstance(value, dict) else "Namespace"
        if not isinstance(value, dict):
            value = vars(value)  # an argparse.Namespace, as in the seed era
        self.__dict__["_hparams"] = AttributeDict(value)
        self.__dict__["_hparams_initial"] = copy.deepcopy(dict(value))

    @property
    def hparams_assigned(self) -> Optional[str]:
        """Seed era: ``"dict"`` or ``"Namespace"`` once ``self.hparams = ...`` was assigned (0.8 checkpoints
        record it, to rebuild that argument as such), else ``None``."""
        return self.__dict__.get("_hparams_assigned")

    @property
    def hparams_initial(self) -> AttributeDict:
        """The hyperparameters as they were first saved."""
        return AttributeDict(copy.deepcopy(self._initial_store()))

    def save_hyperparameters(self, *args: Any, ignore: Optional[Sequence[str]] = None, frame: Any = None) -> None:
        """Store the caller's ``__init__`` arguments (or the named ones) in ``self.hparams``.

        Call it from ``__init__``. With no arguments every init argument is saved; with
        names, only those; with a dict or ``Namespace``, its contents. ``ignore`` drops names.
        """
        ignore = set(ignore or ())
        if len(args) == 1 and not isinstance(args[0], str):
            source = args[0]
            values = dict(source) if isinstance(source, dict) else dict(vars(source))
        else:
            frame = frame or inspect.currentframe().f_back
            init_args = _init_args(frame)
            values = {k: init_args[k] for k in args} if args else init_args
        values = {k: v for k, v in values.items() if k not in ignore}
        self._hparams_store().update(values)
        self._initial_store().update(copy.deepcopy(values))


def _init_args(frame: Any) -> Dict[str, Any]:
    """The named arguments of the ``__init__`` running in ``frame`` (and of its callers' ``__init__``s)."""
    values: Dict[str, Any] = {}
    while frame is not None and frame.f_code.co_name == "__init__":
        info = inspect.getargvalues(frame)
        local = info.locals
        for name in info.args[1:]:
            values.setdefault(name, local[name])
        if info.keywords and isinstance(local.get(info.keywords), dict):
            for k, v in local[info.keywords].items():
                values.setdefault(k, v)
        frame = frame.f_back
    return values
