"""Built-in ``model_summary``: a table of the module's layers and parameter counts at fit start.

``Trainer(weights_summary='top')`` (seed-era; the default) lists the module's direct
children, ``'full'`` every sub-module; ``weights_summary=None`` or
``enable_model_summary=False`` (2.x) turns it off. Printed on global rank zero only.
"""
from __future__ import annotations

import sys
from typing import Any, List, Optional, Tuple

from torch import nn

from hookloop.engine.callback import Callback
from hookloop.engine.errors import FlagError
from hookloop.plugins.rank_zero import is_rank_zero

#: ``weights_summary`` value -> ``max_depth``.
MODES = {"top": 1, "full": -1}


def max_depth_for(mode: Optional[str]) -> int:
    """``max_depth`` for a seed-era ``weights_summary`` value (``'top'``, ``'full'``)."""
    if mode not in MODES:
        raise FlagError(
            "weights_summary", f"weights_summary={mode!r} is not supported; use one of {sorted(MODES)} or None (no summary)."
        )
    return MODES[mode]


def layer_rows(module: nn.Module, max_depth: int = 1) -> List[Tuple[str, str, int]]:
    """``(name, type, parameter count)`` for each sub-module down to ``max_depth`` (-1: all)."""
    rows = []
    for name, sub in module.named_modules():
        if not name:
            continue
        depth = name.count(".") + 1
        if max_depth >= 0 and depth > max_depth:
            continue
        rows.append((name, type(sub).__name__, sum(p.numel() for p in sub.parameters())))
    return rows


def summarize(module: nn.Module, max_depth: int = 1) -> str:
    """The summary table: layers, then trainable, non-trainable and total parameter counts."""
    rows = layer_rows(module, max_depth)
    header = ("", "Name", "Type", "Params")
    table = [header] + [(str(i), name, kind, _count(n)) for i, (name, kind, n) in enumerate(rows)]
    widths = [max(len(r[c]) for r in table) for c in range(4)]

    def line(row: Tuple[str, ...]) -> str:
        return " | ".join(cell.ljust(w) if c else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))

    rule = "-" * len(line(header))
    out = [line(header), rule] + [line(r) for r in table[1:]] + [rule] if rows else []
    params = list(module.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    size_mb = sum(p.numel() * p.element_size() for p in params) / 1e6
    out += [
        f"{_count(trainable):<10}Trainable params",
        f"{_count(total - trainable):<10}Non-trainable params",
        f"{_count(total):<10}Total params",
        f"{size_mb:<10.3f}Total estimated model params size (MB)",
    ]
    return "\n".join(out)


def _count(n: int) -> str:
    """``1234`` -> ``1.2 K``, as in Lightning's summary."""
    for unit, scale in ((" B", 1e9), (" M", 1e6), (" K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


class ModelSummary(Callback):
    """Print :func:`summarize` of the module at fit start (rank zero only).

    Args:
        max_depth: How deep to list sub-modules (1: direct children; -1: all; 0: totals only).
    """

    def __init__(self, max_depth: int = 1) -> None:
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Print the table once the model is set up."""
        if is_rank_zero(trainer):
            print(summarize(pl_module, self.max_depth), file=sys.stdout, flush=True)


__all__ = ["ModelSummary", "summarize", "layer_rows", "max_depth_for"]
