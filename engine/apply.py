"""Apply a function to every tensor inside nested batches (lists, dicts, dataclasses, ...)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Tuple, Union

import torch


def apply_to_tensors(data: Any, fn: Callable[[Any], Any], types: Union[type, Tuple[type, ...]] = torch.Tensor) -> Any:
    """Return ``data`` with ``fn`` applied to every tensor in it (every instance of ``types``, if given).

    Recurses into lists, tuples, namedtuples, mappings (keeping their type where it can be
    rebuilt) and dataclass instances; everything else is returned unchanged.
    """
    if isinstance(data, types):
        return fn(data)
    if isinstance(data, Mapping):
        items = {k: apply_to_tensors(v, fn, types) for k, v in data.items()}
        try:
            return type(data)(items)
        except TypeError:  # a mapping type that cannot be built from a dict
            return items
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(apply_to_tensors(v, fn, types) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(apply_to_tensors(v, fn, types) for v in data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        changes = {f.name: apply_to_tensors(getattr(data, f.name), fn, types)
                   for f in dataclasses.fields(data) if f.init}
        return dataclasses.replace(data, **changes)
    return data


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in ``batch`` (and any object with a ``.to(device)``, at any depth) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if not isinstance(batch, (Mapping, list, tuple)) and not dataclasses.is_dataclass(batch):
        return batch.to(device) if callable(getattr(batch, "to", None)) else batch
    if isinstance(batch, Mapping):
        items = {k: move_to_device(v, device) for k, v in batch.items()}
        try:
            return type(batch)(items)
        except TypeError:  # a mapping type that cannot be built from a dict
            return items
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    if isinstance(batch, type):
        return batch
    changes = {f.name: move_to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch) if f.init}
    return dataclasses.replace(batch, **changes)


def detach_all(data: Any) -> Any:
    """Return ``data`` with every tensor detached (for outputs kept until epoch end)."""
    return apply_to_tensors(data, lambda t: t.detach())
