"""Entry-point plugins for hookloop's test suite (each kind of target the engine accepts)."""

#: Every hook call the plugins of this package saw, as ``(plugin, event)``, in call order.
CALLS = []
