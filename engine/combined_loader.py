"""``CombinedLoader``: several iterables as one, in Lightning 2.x's modes.

``fit`` given a dict (or list) of training loaders trains on a ``CombinedLoader`` of them in
``max_size_cycle`` mode: each batch is a dict (list) holding one batch of every loader, the
shorter loaders starting over until the longest is done. Validation, test and predict run several
loaders one after the other (``sequential``), each with its own ``dataloader_idx``.

Iterating a ``CombinedLoader`` yields ``(batch, batch_idx, dataloader_idx)`` triplets, as in
Lightning 2.x; the training loop trains on the ``batch``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from hookloop.engine.errors import MisconfigurationException

#: The modes and how each combines the loaders' lengths.
_LENGTHS: Dict[str, Callable[[List[float]], float]] = {
    "min_size": min, "max_size_cycle": max, "max_size": max, "sequential": sum,
}
#: Modes the training loop accepts (a training batch holds one batch of every loader).
TRAIN_MODES = ("min_size", "max_size_cycle", "max_size")

_EXHAUSTED = object()


class CombinedLoader:
    """Combine ``iterables`` (a dict, list or tuple of them, or one) under ``mode``.

    * ``min_size``: until the shortest is done.
    * ``max_size_cycle``: until the longest is done, the others starting over when exhausted.
    * ``max_size``: until the longest is done, the exhausted ones giving ``None``.
    * ``sequential``: each iterable in turn; ``dataloader_idx`` says which.

    Args:
        iterables: the iterables, in a dict, list or tuple (the batch has the same shape).
        mode: one of the four above (default ``'min_size'``, as in Lightning).
    """

    def __init__(self, iterables: Any, mode: str = "min_size") -> None:
        if mode not in _LENGTHS:
            raise ValueError(f"CombinedLoader(mode={mode!r}) is unknown; choose one of {list(_LENGTHS)}.")
        self.mode = mode
        self._iterables = iterables
        self._keys: Optional[List[Any]] = list(iterables) if isinstance(iterables, Mapping) else None
        if self._keys is not None:
            self._flattened = [iterables[k] for k in self._keys]
        elif isinstance(iterables, (list, tuple)):
            self._flattened = list(iterables)
        else:
            self._flattened = [iterables]

    def __repr__(self) -> str:
        return f"CombinedLoader({self._iterables!r}, mode={self.mode!r})"

    @property
    def iterables(self) -> Any:
        """The iterables as given (the dict, list or tuple)."""
        return self._iterables

    @property
    def flattened(self) -> List[Any]:
        """The iterables as a flat list (a dict's in key order)."""
        return list(self._flattened)

    @flattened.setter
    def flattened(self, flattened: List[Any]) -> None:
        """Replace the iterables (e.g. with their distributed versions), keeping the shape."""
        if len(flattened) != len(self._flattened):
            raise ValueError(f"CombinedLoader.flattened: {len(flattened)} iterables given for "
                             f"{len(self._flattened)}.")
        self._flattened = list(flattened)
        self._iterables = self._shaped(self._flattened)

    @property
    def sampler(self) -> Any:
        """Each iterable's ``sampler`` (``None`` where it has none), in the iterables' shape."""
        return self._shaped([getattr(it, "sampler", None) for it in self._flattened])

    @property
    def batch_sampler(self) -> Any:
        """Each iterable's ``batch_sampler`` (``None`` where it has none), in the iterables' shape."""
        return self._shaped([getattr(it, "batch_sampler", None) for it in self._flattened])

    def __len__(self) -> int:
        """Batches of one pass in this mode (an error when an iterable has no length)."""
        lengths = []
        for iterable in self._flattened:
            try:
                lengths.append(len(iterable))
            except TypeError:
                raise TypeError(f"CombinedLoader: {type(iterable).__name__} has no length.") from None
        return int(_LENGTHS[self.mode](lengths)) if lengths else 0

    def __iter__(self) -> Iterator[Tuple[Any, int, int]]:
        if self.mode == "sequential":
            return self._sequential()
        return self._together()

    def _together(self) -> Iterator[Tuple[Any, int, int]]:
        """``min_size`` / ``max_size_cycle`` / ``max_size``: one item of every iterable per batch."""
        iterators = [iter(it) for it in self._flattened]
        exhausted = [False] * len(iterators)
        batch_idx = 0
        while iterators:
            items = []
            for i, iterator in enumerate(iterators):
                item = next(iterator, _EXHAUSTED)
                if item is _EXHAUSTED:
                    exhausted[i] = True
                    if self.mode == "min_size" or all(exhausted):
                        return  # the shortest (min_size) or the last of them (max_size*) is done
                    if self.mode == "max_size_cycle":
                        iterators[i] = iter(self._flattened[i])  # a shorter one starts over
                        item = next(iterators[i], None)
                    else:
                        item = None
                items.append(item)
            yield self._shaped(items), batch_idx, 0
            batch_idx += 1

    def _sequential(self) -> Iterator[Tuple[Any, int, int]]:
        for dataloader_idx, iterable in enumerate(self._flattened):
            for batch_idx, batch in enumerate(iterable):
                yield batch, batch_idx, dataloader_idx

    def _shaped(self, values: List[Any]) -> Any:
        """``values`` (one per iterable) in the shape of the iterables given."""
        if self._keys is not None:
            try:
                return type(self._iterables)(zip(self._keys, values))
            except TypeError:  # a mapping type that cannot be built from pairs
                return dict(zip(self._keys, values))
        if isinstance(self._iterables, (list, tuple)):
            return type(self._iterables)(values) if type(self._iterables) in (list, tuple) else list(values)
        return values[0]


def combine_train_loaders(loaders: Any) -> Optional[CombinedLoader]:
    """The ``CombinedLoader`` ``fit`` trains on when it was given several loaders, else ``None``.

    A dict, or a list/tuple of more than one loader, becomes ``CombinedLoader(loaders, 'max_size_cycle')``
    (Lightning 2.x's default for training); a ``CombinedLoader`` is used in its own mode, which must be
    one a training batch can be made of.
    """
    if isinstance(loaders, CombinedLoader):
        if loaders.mode not in TRAIN_MODES:
            raise MisconfigurationException(
                f"fit() cannot train on CombinedLoader(mode={loaders.mode!r}): a training batch holds one batch of "
                f"every loader; use one of {list(TRAIN_MODES)}.")
        return loaders
    if isinstance(loaders, Mapping) or (isinstance(loaders, (list, tuple)) and len(loaders) > 1):
        return CombinedLoader(loaders, "max_size_cycle")
    return None


def evaluation_loaders(loaders: Any) -> List[Any]:
    """The loaders an evaluation runs one after the other: a list/tuple's, a dict's values, a sequential
    ``CombinedLoader``'s (Lightning evaluates only in that mode), or the one loader."""
    if isinstance(loaders, CombinedLoader):
        if loaders.mode != "sequential":
            raise MisconfigurationException(
                f"Validation, test and predict run their loaders one after the other: pass "
                f"CombinedLoader(..., mode='sequential') (or a list or dict), not mode={loaders.mode!r}.")
        return loaders.flattened
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    return [loaders]


__all__ = ["CombinedLoader"]
