"""0.9's ``Trainer(auto_lr_find=...)`` and ``Trainer(auto_scale_batch_size=...)``: built-in finders run by ``fit``.

As in 0.9, where ``fit`` began by scaling the batch size and then finding the learning rate:
``auto_scale_batch_size=True`` (``'power'``) or ``'binsearch'`` registers the built-in
``batch_size_finder``, and ``auto_lr_find=True`` (``lr`` or ``learning_rate``) or an attribute
name registers ``lr_finder``; both search at the start of every ``fit`` (not of ``test``), the
batch size first. Remove one with ``disable_plugins=['lr_finder']``.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException, did_you_mean
from hookloop.plugins.tuner.batch_size import MODES
from hookloop.plugins.tuner.callbacks import BatchSizeFinder, LearningRateFinder


class SeedLearningRateFinder(LearningRateFinder):
    """``Trainer(auto_lr_find=...)``: a :class:`LearningRateFinder` named after the flag in its messages."""

    def __init__(self, flag: Any) -> None:
        self._flag = flag
        super().__init__(attr_name=flag if isinstance(flag, str) else "")

    def _culprit(self) -> str:
        return f"Trainer(auto_lr_find={self._flag!r})"


class SeedBatchSizeFinder(BatchSizeFinder):
    """``Trainer(auto_scale_batch_size=...)``: a :class:`BatchSizeFinder` for ``fit`` only, as in 0.9."""

    def __init__(self, flag: Any) -> None:
        self._flag = flag
        super().__init__(mode="power" if flag is True else flag)

    def _culprit(self) -> str:
        return f"Trainer(auto_scale_batch_size={self._flag!r})"

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Only ``fit`` scales (0.9 did not at ``test``)."""
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


def tuning_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``[('lr_finder', ...), ('batch_size_finder', ...)]`` for the flags set (the later one searches first)."""
    found: List[Tuple[str, Any]] = []
    lr_flag = getattr(trainer, "auto_lr_find", False)
    if lr_flag is not False and lr_flag is not None:
        if lr_flag is not True and (not isinstance(lr_flag, str) or not lr_flag):
            raise MisconfigurationException(
                f"Trainer(auto_lr_find={lr_flag!r}): pass True (the learning rate is model.lr or "
                "model.learning_rate) or the name of the attribute holding it.")
        found.append(("lr_finder", SeedLearningRateFinder(lr_flag)))
    size_flag = getattr(trainer, "auto_scale_batch_size", False)
    if size_flag is not False and size_flag is not None:
        if size_flag is not True and size_flag not in MODES:
            raise MisconfigurationException(
                f"Trainer(auto_scale_batch_size={size_flag!r}): pass True (the 'power' search), 'power' or "
                "'binsearch'." + did_you_mean(str(size_flag), MODES))
        found.append(("batch_size_finder", SeedBatchSizeFinder(size_flag)))
    return found
