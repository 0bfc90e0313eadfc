"""Telling an out-of-memory error from any other, and giving the memory back after one.

The markers are those of torch's allocators, as Lightning reads them (``is_oom_error``): torch's
``OutOfMemoryError`` (CUDA, and any device since torch 2.5), a ``RuntimeError`` saying
``out of memory`` (CUDA, MPS, XPU), the CPU allocator's ``can't allocate memory``, and the two cuDNN
and cuBLAS statuses a full device produces.
"""
from __future__ import annotations

import gc

import torch

#: Exception types torch raises when a device's memory is exhausted.
_OOM_TYPES = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
                   if isinstance(t, type))
#: Text in a ``RuntimeError`` that says an allocation failed.
_OOM_TEXT = ("out of memory", "DefaultCPUAllocator: can't allocate memory", "CUDNN_STATUS_NOT_SUPPORTED",
             "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` says a device (or the CPU allocator) ran out of memory."""
    if _OOM_TYPES and isinstance(exc, _OOM_TYPES):
        return True
    if not isinstance(exc, RuntimeError) or not exc.args or not isinstance(exc.args[0], str):
        return False
    return any(marker in exc.args[0] for marker in _OOM_TEXT)


def release_memory() -> None:
    """Collect garbage and hand CUDA's cached blocks back, so the next trial starts with free memory."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
