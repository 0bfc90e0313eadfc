"""Checks a plugin passes when it is registered: no hook-name typos, no argument an event does not pass.

A plugin or callback method that looks like a hook (``on_*``) but matches no event is an error with
a "did you mean", never silently ignored; so is an ``@hookimpl`` function with no event, and a
plain plugin's ``on_*`` function named like an event but not marked (it would never be called).
"""
from __future__ import annotations

import inspect
import types
from typing import TYPE_CHECKING, Any, List

from hookloop.engine.errors import PluginError, did_you_mean
from hookloop.engine.faces import signature_args

if TYPE_CHECKING:
    from hookloop.engine.registry import PluginRegistry


def is_callback(plugin: Any) -> bool:
    """True for an :class:`engine.Callback` instance (its methods are matched by name)."""
    from hookloop.engine.callback import Callback

    return isinstance(plugin, Callback)


def overrides(plugin: Any, name: str) -> bool:
    """True if callback ``plugin`` has its own ``name``: defined by its class (not ``Callback``'s no-op), or
    assigned on the instance (``cb.on_train_start = f``, as ``LambdaCallback`` does)."""
    from hookloop.engine.callback import Callback

    own = getattr(plugin, "__dict__", {}).get(name)
    if own is not None:
        return callable(own)
    attr = getattr(type(plugin), name, None)
    return callable(attr) and attr is not getattr(Callback, name, None)


def describe_plugin(plugin: Any) -> str:
    """``module x`` or ``package.module.Class`` of a plugin, for messages."""
    if isinstance(plugin, types.ModuleType):
        return f"module {plugin.__name__}"
    cls = plugin if inspect.isclass(plugin) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def _kind(plugin: Any) -> str:
    return "Callback" if is_callback(plugin) else "Plugin"


def _public_methods(plugin: Any) -> List[str]:
    if isinstance(plugin, types.ModuleType):
        return [n for n, v in vars(plugin).items() if inspect.isfunction(v) and v.__module__ == plugin.__name__]
    cls = plugin if inspect.isclass(plugin) else type(plugin)
    names = [n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None))]
    own = [n for n, v in getattr(plugin, "__dict__", {}).items() if not n.startswith("_") and callable(v)]
    return names + [n for n in own if n not in names]


def _is_exempt(plugin: Any, attr: str) -> bool:
    """Methods a plugin declares as its own (``__engine_not_hooks__``) are not typo-checked."""
    return attr in getattr(plugin, "__engine_not_hooks__", ())


def check_plugin(registry: "PluginRegistry", plugin: Any, name: str) -> None:
    """Raise :class:`PluginError` for a hook-like method of ``plugin`` (registered as ``name``) that matches no event.

    Checked: ``@hookimpl`` functions with no hookspec (after a batch of registrations, since a plugin
    registered later may add the spec), methods named ``on_*`` that match no event, and a plain
    plugin's unmarked ``on_*`` function named like an event.
    """
    known = registry.spec_names()
    record = registry.record(name)
    for face in record.faces:
        for entry in (face.entries.values() if face is not None else ()):
            if entry.event not in known and not entry.opts.get("optionalhook"):
                raise PluginError(
                    f"Plugin {name!r} ({describe_plugin(plugin)}) implements `{entry.event}`, which is no event."
                    + did_you_mean(entry.event, known)
                    + " See engine/hookspecs.py or `python -m engine plugins` for the event names."
                )
    for attr in _public_methods(plugin):
        if attr.startswith("on_") and attr not in known and not _is_exempt(plugin, attr):
            raise PluginError(
                f"{_kind(plugin)} {name!r} ({describe_plugin(plugin)}) has a method `{attr}` that looks like "
                f"a hook but matches no event." + did_you_mean(attr, known)
                + " Rename it, or give it a name that does not start with `on_`."
            )
        if (attr.startswith("on_") and attr in known and not is_callback(plugin)
                and not hasattr(plugin, "__engine_hooks__") and not _is_exempt(plugin, attr)
                and registry.hook_options(plugin, attr) is None):
            # A plain plugin's `on_*` function without @hookimpl would never be called.
            raise PluginError(
                f"Plugin {name!r} ({describe_plugin(plugin)}) has a method `{attr}` named like an event but "
                "not marked `@hookimpl`, so it would never be called. Decorate it with "
                "`@engine.hookimpl`, or make the plugin an `engine.Callback` subclass."
            )


def check_given(registry: "PluginRegistry", items: List[Any], flag: str) -> None:
    """``Trainer(callbacks=[...])``/``Trainer(plugins=[...])``: every item an instance (or a module) with a hook.

    A class given where an instance belongs, and an object that is no ``Callback`` and implements no
    event (nothing would ever call it), are errors naming the item and what to pass instead.
    """
    for index, item in enumerate(items):
        where = f"Trainer({flag}=[...]) item {index}"
        if inspect.isclass(item):
            raise PluginError(
                f"{where} is the class {item.__qualname__}, not an instance of it. "
                f"Pass an instance: {flag}=[{item.__name__}(...)].")
        if is_callback(item) or getattr(item, "__engine_hookspecs__", None) is not None:
            continue
        if any(attr.startswith("on_") for attr in _public_methods(item)):
            continue  # hook-like methods: the registration check says what is wrong with them
        if not any(registry.hook_options(item, attr) is not None for attr in dir(item)):
            kind = "module" if isinstance(item, types.ModuleType) else type(item).__qualname__
            raise PluginError(
                f"{where} ({kind} {item!r:.60}) is no engine.Callback and implements no event, so nothing would "
                f"ever call it. Pass a Callback subclass instance, or an object whose methods carry @engine.hookimpl "
                f"and are named like events (see `python -m engine plugins`).")


def explain_validation(registry: "PluginRegistry", plugin: Any, name: str, exc: Exception) -> str:
    """pluggy's validation error for ``plugin``, with each argument an event does not pass named."""
    message = f"Plugin {name!r} ({describe_plugin(plugin)}) is invalid: {exc}"
    for attr in dir(plugin):
        opts = registry.hook_options(plugin, attr)
        if opts is None:
            continue
        caller = getattr(registry.hook, opts.get("specname") or attr, None)
        if caller is None or caller.spec is None:
            continue
        required, _ = signature_args(getattr(plugin, attr))
        for arg in required:
            if arg not in caller.spec.argnames:
                message += (
                    f"\n  {attr}() takes {arg!r}, which the event does not pass; it passes "
                    f"{', '.join(caller.spec.argnames)}.{did_you_mean(arg, caller.spec.argnames)}"
                )
    return message
