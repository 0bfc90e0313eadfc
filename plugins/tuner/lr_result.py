"""What a learning-rate sweep found: the curve, a suggestion, and its plot."""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional

import torch


class LRFinderResult:
    """The result of ``Tuner.lr_find`` (Lightning's ``_LRFinder``): ``results['lr']`` and ``results['loss']``.

    One point per optimizer step of the sweep: the learning rate used, and the training loss smoothed
    by an exponential moving average (``beta=0.98``, bias-corrected), as Lightning records it.

    Attributes:
        mode: ``'exponential'`` or ``'linear'``: how the rate grew from ``lr_min`` to ``lr_max``.
        lr_min: The first rate of the sweep.
        lr_max: The last rate of the sweep (reached unless the loss diverged first).
        num_training: The steps the sweep was given.
        results: ``{'lr': [...], 'loss': [...]}``.
    """

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int,
                 results: Optional[Dict[str, List[float]]] = None) -> None:
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.results: Dict[str, List[float]] = results if results is not None else {"lr": [], "loss": []}
        self._optimal_idx: Optional[int] = None

    def __repr__(self) -> str:
        return (f"LRFinderResult(mode={self.mode!r}, lr_min={self.lr_min}, lr_max={self.lr_max}, "
                f"points={len(self.results['lr'])})")

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> Optional[float]:
        """The rate where the loss falls fastest: the steepest descent of the curve as plotted.

        The slope is taken against ``log10(lr)`` for an exponential sweep (the plot's log axis) and
        against ``lr`` for a linear one, over the points left after dropping ``skip_begin`` at the start
        (too early to tell) and ``skip_end`` at the end (where the loss may blow up), and any non-finite
        loss. ``None``, with a warning, when fewer than two points remain.
        """
        for name, value in (("skip_begin", skip_begin), ("skip_end", skip_end)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"suggestion({name}={value!r}): pass an int >= 0.")
        lrs, losses = self.results["lr"], self.results["loss"]
        kept = [i for i in range(skip_begin, len(losses) - skip_end) if math.isfinite(losses[i])]
        if len(kept) < 2:
            self._optimal_idx = None
            warnings.warn(
                f"No learning rate can be suggested: the sweep recorded {len(losses)} points, and {len(kept)} finite "
                f"one(s) remain after skipping {skip_begin} at the start and {skip_end} at the end; at least 2 are "
                "needed. Raise num_training, lower the skips, or give the sweep more training batches.")
            return None
        x = [math.log10(lrs[i]) if self.mode == "exponential" else lrs[i] for i in kept]
        y = torch.tensor([losses[i] for i in kept], dtype=torch.float64)
        slopes = torch.gradient(y, spacing=(torch.tensor(x, dtype=torch.float64),))[0]
        self._optimal_idx = kept[int(torch.argmin(slopes))]
        return lrs[self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """Draw the loss against the learning rate (log axis for an exponential sweep); return the figure.

        ``suggest=True`` marks :meth:`suggestion` with a red dot; ``show=True`` calls ``plt.show()``;
        ``ax`` draws into an existing matplotlib ``Axes``. Needs matplotlib (``pip install matplotlib``).
        """
        plt = _pyplot()
        lrs, losses = self.results["lr"], self.results["loss"]
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest and self.suggestion() is not None and self._optimal_idx is not None:
            ax.plot(lrs[self._optimal_idx], losses[self._optimal_idx], markersize=10, marker="o", color="red")
        if show:
            plt.show()
        return fig


def _pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use: matplotlib is optional."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ModuleNotFoundError(
            "LRFinderResult.plot() draws with matplotlib, which is not installed. Install it: pip install matplotlib",
            name="matplotlib") from exc
    return plt
