"""The pluggy markers of the ``engine`` project.

``hookspec`` marks an event in :mod:`engine.hookspecs` (or in a plugin's own catalogue,
added with :meth:`engine.registry.PluginRegistry.add_hookspecs`); ``hookimpl`` marks a
plugin's implementation of one. ``Callback`` subclasses need no marker: their methods are
matched by name, as in Lightning. A ``Callback`` method may still carry ``@hookimpl(...)``
to ask for ``tryfirst``/``trylast`` or ``wrapper`` behaviour.
"""
from typing import Any, Callable, Optional, TypeVar

import pluggy

PROJECT_NAME = "engine"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

_F = TypeVar("_F", bound=Callable[..., Any])

#: Attribute :func:`user_hook` sets on an event's spec function:
#: ``{"callback": bool, "module": bool, "module_default": Optional[callable]}``.
USER_HOOK_ATTRIBUTE = "engine_user_hook"


def user_hook(*, callback: bool = True, module: bool = True,
              module_default: Optional[Callable[[Any], None]] = None) -> Callable[[_F], _F]:
    """Mark an event of the catalogue as a hook users override by name (Lightning's hooks).

    ``callback``: ``engine.Callback`` has a no-op method of this name and the event's arguments.
    ``module``: ``engine.LightningModule`` has a no-op method of this name taking the arguments after
    ``trainer, pl_module``; when a module overrides it, the module's adapter forwards the event to it.
    ``module_default``: for a module behaviour hook (``on_validation_model_eval``), what
    ``LightningModule``'s method does instead of nothing, ``module_default(module)``; the loop does
    the same itself when no module overrides the hook, so the default is never forwarded.
    Everything else derives from this mark (see :mod:`hookloop.engine.catalogue`).
    """
    def mark(function: _F) -> _F:
        setattr(function, USER_HOOK_ATTRIBUTE, {"callback": callback, "module": module,
                                                "module_default": module_default})
        return function

    return mark


class _SkippedBatch:
    """Type of :data:`SKIPPED_BATCH` (one instance)."""

    def __repr__(self) -> str:
        return "<skipped batch>"


#: What a ``run_training_batch`` implementation returns for a batch whose step returned
#: ``None`` (``firstresult`` hooks read ``None`` as "not handled"). The loop hands
#: ``outputs=None`` to ``on_train_batch_end`` for such a batch.
SKIPPED_BATCH = _SkippedBatch()
