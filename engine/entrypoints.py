"""Third-party plugins from installed distributions: the ``engine.plugins`` entry-point group."""
from __future__ import annotations

import importlib.metadata
import inspect
import os
from typing import TYPE_CHECKING, Any, Iterable, List, Sequence, Tuple

from hookloop.engine.errors import PluginError

if TYPE_CHECKING:
    from hookloop.engine.registry import PluginRegistry

#: Entry-point group scanned for third-party plugins.
ENTRY_POINT_GROUP = "engine.plugins"
#: Environment variable that turns entry-point loading off (like pytest's).
DISABLE_AUTOLOAD_ENV = "ENGINE_DISABLE_PLUGIN_AUTOLOAD"


def entry_points() -> Sequence[importlib.metadata.EntryPoint]:
    """Every installed entry point in the ``engine.plugins`` group."""
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python < 3.10


def load_entrypoint_plugins(registry: "PluginRegistry", disabled: Iterable[str] = ()) -> List[str]:
    """Load and register (tier ``entrypoint``) every ``engine.plugins`` entry point not in ``disabled``.

    Skipped entirely when ``ENGINE_DISABLE_PLUGIN_AUTOLOAD`` is set. A target may be a
    module, an object with hook implementations, or a ``Callback`` subclass (then
    instantiated with no arguments). Returns the names loaded.
    """
    if os.environ.get(DISABLE_AUTOLOAD_ENV):
        return []
    disabled = set(disabled)
    found: List[Tuple[str, Any, str]] = []
    for ep in sorted(entry_points(), key=lambda e: e.name):
        if ep.name in disabled:
            continue
        dist = getattr(ep, "dist", None)
        dist_name = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "(unknown distribution)"
        where = f"entry point `{ep.name} = {ep.value}` of distribution {dist_name}"
        if registry.has_plugin(ep.name):
            raise PluginError(
                f"The {where} is named like the already registered plugin {ep.name!r} "
                f"({registry.record(ep.name).origin}). Rename the entry point, or pass "
                f"disable_plugins=[{ep.name!r}] to drop both."
            )
        try:
            target = ep.load()
            if inspect.isclass(target):  # e.g. a Callback subclass: one instance per Trainer
                target = target()
        except Exception as exc:
            raise PluginError(
                f"Could not load plugin from {where}: {type(exc).__name__}: {exc}. "
                f"Fix or uninstall that distribution, disable it with disable_plugins=[{ep.name!r}], "
                f"or set {DISABLE_AUTOLOAD_ENV}=1."
            ) from exc
        found.append((ep.name, target, f"entry point of {dist_name} (`{ep.name} = {ep.value}`)"))
    # Inside a tier the last registered runs first: register in reverse so they run in name order.
    for name, target, origin in reversed(found):
        registry.add(target, name, "entrypoint", origin=origin)
    return [name for name, _, _ in found]
