"""The pluggy markers of the ``engine`` project.

``hookspec`` marks an event in :mod:`engine.hookspecs` (or in a plugin's own catalogue,
added with :meth:`engine.registry.PluginRegistry.add_hookspecs`); ``hookimpl`` marks a
plugin's implementation of one. ``Callback`` subclasses need no marker: their methods are
matched by name, as in Lightning. A ``Callback`` method may still carry ``@hookimpl(...)``
to ask for ``tryfirst``/``trylast`` or ``wrapper`` behaviour.
"""
import pluggy

PROJECT_NAME = "engine"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class _SkippedBatch:
    """Type of :data:`SKIPPED_BATCH` (one instance)."""

    def __repr__(self) -> str:
        return "<skipped batch>"


#: What a ``run_training_batch`` implementation returns for a batch whose step returned
#: ``None`` (``firstresult`` hooks read ``None`` as "not handled"). The loop hands
#: ``outputs=None`` to ``on_train_batch_end`` for such a batch.
SKIPPED_BATCH = _SkippedBatch()
