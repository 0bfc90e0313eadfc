"""Exact mid-epoch resume: random-number-generator states and skipping batches at the sampler level.

Everything here is stored in checkpoints, so it is built only of what
``torch.load(weights_only=True)`` reads back: tensors, numbers, strings, lists and dicts.
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict, Iterator, List, Optional

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

try:  # numpy is optional for torch; its generator is saved when it is installed
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with every torch wheel we test
    np = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------
# RNG states
# ---------------------------------------------------------------------------------------


def capture_rng() -> Dict[str, Any]:
    """The states of Python's, numpy's, torch's CPU and (if present) CUDA generators, as plain data."""
    version, internal, gauss = random.getstate()
    # 625 ints: through numpy when there is numpy (a third of torch.tensor's time on a tuple).
    words = torch.from_numpy(np.array(internal, dtype=np.int64)) if np is not None else torch.tensor(internal, dtype=torch.int64)
    state: Dict[str, Any] = {
        "python": {"version": int(version), "state": words, "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if np is not None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: Dict[str, Any]) -> None:
    """Put back generator states made by :func:`capture_rng` (missing parts are left alone)."""
    py = state.get("python")
    if py is not None:
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    npy = state.get("numpy")
    if npy is not None and np is not None:
        np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                             npy["has_gauss"], npy["cached_gaussian"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------
# skipping the batches an interrupted epoch already trained
# ---------------------------------------------------------------------------------------


class _SkippingIterator:
    """Iterates ``source`` after dropping its first ``skip`` items; the drop happens on :meth:`prime`.

    Priming is deferred so that the sampler draws its random seed at the same moment (after
    the DataLoader iterator drew its base seed) as in an uninterrupted epoch.
    """

    def __init__(self, source: Any, skip: int) -> None:
        self._source = source
        self._skip = skip
        self._iterator: Optional[Iterator[Any]] = None

    def prime(self) -> None:
        """Create the source iterator and drop the first ``skip`` index batches (no data is loaded)."""
        if self._iterator is None:
            iterator = iter(self._source)
            for _ in range(self._skip):
                if next(iterator, _END) is _END:
                    break
            self._iterator = iterator

    def __iter__(self) -> "_SkippingIterator":
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self.prime()
        return next(self._iterator)  # type: ignore[arg-type]


_END = object()


class SkipFirst(Sampler):
    """A sampler (or batch sampler) yielding what ``inner`` yields, minus the first ``skip`` items."""

    def __init__(self, inner: Any, skip: int) -> None:
        self.inner = inner
        self.skip = skip
        self.current: Optional[_SkippingIterator] = None

    def __iter__(self) -> _SkippingIterator:
        self.current = _SkippingIterator(self.inner, self.skip)
        return self.current

    def __len__(self) -> int:
        return max(len(self.inner) - self.skip, 0)


def resumed_iterator(loader: Any, skip: int, epoch_rng: Optional[Dict[str, Any]],
                     resume_rng: Optional[Dict[str, Any]]) -> Iterator[Any]:
    """An iterator over ``loader``'s epoch from batch ``skip`` on, as the interrupted run would have seen it.

    1. the generators are set back to their state at the start of the interrupted epoch, so
       the sampler draws the same permutation;
    2. the first ``skip`` batches are dropped at the sampler level, without loading them;
    3. the generators are set to their state at checkpoint time, so dropout and
       augmentation continue exactly.

    A ``DataLoader`` over a map-style dataset is rebuilt with a skipping sampler; any other
    iterable has its first ``skip`` batches read and dropped (the only way to skip them).
    """
    if epoch_rng is not None:
        restore_rng(epoch_rng)
    if isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset):
        skipper = SkipFirst(loader.batch_sampler if loader.batch_sampler is not None else loader.sampler, skip)
        iterator = iter(_rebuild(loader, skipper))
        if skipper.current is not None:
            skipper.current.prime()  # draws the sampler's seed now, as an unresumed epoch does
    else:
        iterator = iter(loader)
        for _ in range(skip):
            if next(iterator, _END) is _END:
                break
    if resume_rng is not None:
        restore_rng(resume_rng)
    return iterator


def _rebuild(loader: DataLoader, skipper: SkipFirst) -> DataLoader:
    """A DataLoader like ``loader`` whose index sampler is ``skipper``."""
    kwargs: Dict[str, Any] = dict(
        num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        multiprocessing_context=loader.multiprocessing_context,
    )
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    for name in ("pin_memory_device", "in_order"):
        if hasattr(loader, name):
            kwargs[name] = getattr(loader, name)
    if loader.batch_sampler is not None:
        return DataLoader(loader.dataset, batch_sampler=skipper, **kwargs)
    return DataLoader(loader.dataset, sampler=skipper, batch_size=None, **kwargs)


def to_safe(value: Any) -> Any:
    """``value`` if ``torch.load(weights_only=True)`` can read it back (a path as its string), else ``None``."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype, torch.device)):
        return value
    if isinstance(value, os.PathLike):  # e.g. a data_dir hyperparameter: stored as hparams.yaml writes it
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        items: List[Any] = [to_safe(v) for v in value]
        if any(i is None and v is not None for i, v in zip(items, value)):
            return None
        return type(value)(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sv = to_safe(v)
            if not isinstance(k, (str, int, float, bool)) or (sv is None and v is not None):
                return None
            out[k] = sv
        return out
    return None


def find_unsafe(value: Any, where: str) -> Optional[str]:
    """Where in ``value`` something sits that ``torch.load(weights_only=True)`` refuses, e.g. ``"x['a'][2]: set"``."""
    found = _unsafe_path(value)
    if found is None:
        return None
    *steps, culprit = reversed(found)
    return f"{where}{''.join(steps)}: {type(culprit).__module__}.{type(culprit).__qualname__}"


_SAFE_LEAVES = (bool, int, float, complex, str, bytes, torch.Tensor, torch.dtype, torch.device, torch.Size)


def _unsafe_path(value: Any) -> Optional[List[Any]]:
    """``[culprit, ...path steps innermost first]`` or ``None``; the path is built only for a culprit
    (a checkpoint is walked at every save, so nothing is formatted on the way)."""
    if value is None or isinstance(value, _SAFE_LEAVES):
        return None
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        for i, item in enumerate(value):
            found = _unsafe_path(item)
            if found is not None:
                found.append(f"[{i}]")
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unsafe_path(key)
            if found is not None:
                found.append(f" key {key!r}")
                return found
            found = _unsafe_path(item)
            if found is not None:
                found.append(f"[{key!r}]")
                return found
        return None
    return [value]
