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
