"""A list that reports its in-place changes: ``trainer.optimizers`` and ``trainer.lr_scheduler_configs``.

Lightning's callbacks change these lists in place as often as they reassign them
(``trainer.optimizers.append(...)``, ``trainer.lr_scheduler_configs.clear()``). The optimization
plugin builds its step variant once per change rather than looking at the lists every batch, so
an in-place change has to be reported like an assignment. Reading the list costs what a plain
list's reading costs: only the changing methods are overridden.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Tuple


class ReportingList(list):
    """A ``list`` that calls ``on_change()`` after each in-place change (append, ``[i] = x``, ``clear``, ...).

    Copies and pickles of it are plain lists: the callback (a trainer's) does not travel with them.

    Args:
        items: the initial items.
        on_change: called with no arguments after every change.
    """

    __slots__ = ("_on_change",)

    def __init__(self, items: Iterable[Any], on_change: Callable[[], None]) -> None:
        super().__init__(items)
        self._on_change = on_change

    def __reduce_ex__(self, protocol: Any) -> Tuple[Any, ...]:
        return list, (list(self),)

    def __copy__(self) -> list:
        return list(self)


def _reporting(name: str) -> Callable[..., Any]:
    """``list.<name>`` followed by the list's ``on_change()``."""
    method = getattr(list, name)

    def changed(self: ReportingList, *args: Any) -> Any:
        result = method(self, *args)
        self._on_change()
        return result

    changed.__name__ = name
    changed.__doc__ = f"``list.{name}``, then report the change."
    return changed


for _name in ("append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
              "__setitem__", "__delitem__", "__iadd__", "__imul__"):
    setattr(ReportingList, _name, _reporting(_name))
del _name
