"""The plugin registry: a pluggy ``PluginManager`` that knows hookloop's plugin sources.

Call order
----------
For every event, implementations run in this order (top first):

1. implementations marked ``@hookimpl(tryfirst=True)``, from any source;
2. user callbacks (``Trainer(callbacks=[...])``), in list order;
3. plugins attached in code (``Trainer(plugins=[...])``), in list order;
4. entry-point plugins (group ``engine.plugins``), in name order;
5. the ``LightningModule``'s own hooks;
6. built-in plugins (metrics, loggers, progress bar, ...);
7. implementations marked ``@hookimpl(trylast=True)`` — early stopping, then checkpointing,
   so that a checkpoint never lags an epoch behind.

Within a tier, pluggy's rule applies (later-registered first); the registry registers each
tier so that the list order above holds. ``wrapper=True`` implementations wrap all of them.
"""
from __future__ import annotations

import importlib.metadata
import inspect
import os
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pluggy

from engine import hookspecs
from engine.dispatch import Dispatch
from engine.errors import PluginError, closest, did_you_mean
from engine.markers import PROJECT_NAME

#: Entry-point group scanned for third-party plugins.
ENTRY_POINT_GROUP = "engine.plugins"
#: Environment variable that turns entry-point loading off (like pytest's).
DISABLE_AUTOLOAD_ENV = "ENGINE_DISABLE_PLUGIN_AUTOLOAD"

#: Tiers in registration order. Later tiers are called first (pluggy is LIFO).
TIERS: Tuple[str, ...] = ("builtin", "module", "entrypoint", "code", "callback")


@dataclass
class PluginRecord:
    """What the registry knows of one registered plugin: its name, object, tier and origin."""

    name: str
    plugin: Any
    tier: str
    origin: str
    hooks: List[str] = field(default_factory=list)


class PluginRegistry(pluggy.PluginManager):
    """A ``PluginManager`` for the ``engine`` project with tiers, typo checks and fast dispatch.

    ``registry.dispatch`` holds one ready-made caller per event (``None`` for events with no
    implementation); it is rebuilt whenever a plugin is added or removed, never per call.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._records: Dict[str, PluginRecord] = {}
        self._order: List[str] = []  # names in registration order
        self._batch_depth = 0
        self.dispatch = Dispatch(self)

    # ----------------------------------------------------------------------------------
    # pluggy customisation
    # ----------------------------------------------------------------------------------

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Optional[Dict[str, Any]]:
        """Hook implementations: ``@hookimpl``-marked attributes, and ``Callback`` methods by name."""
        allowed = getattr(plugin, "__engine_hooks__", None)
        if allowed is not None and name not in allowed:
            return None
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None:
            return opts
        if _is_callback(plugin) and name in self._spec_names() and _overrides(plugin, name):
            return {}
        return None

    def add_hookspecs(self, module_or_class: Any) -> None:
        """Add events (a module or class of ``@hookspec`` functions) and rebuild the dispatch."""
        super().add_hookspecs(module_or_class)
        if hasattr(self, "dispatch"):
            self.dispatch.rebuild()

    # ----------------------------------------------------------------------------------
    # registration
    # ----------------------------------------------------------------------------------

    def add(self, plugin: Any, name: str, tier: str, origin: str = "") -> Any:
        """Register ``plugin`` under ``name`` in ``tier`` (one of :data:`TIERS`), keeping the call order.

        Raises :class:`PluginError` naming the plugin and method for a hook-name typo, an
        unknown argument, or a name already taken.
        """
        if tier not in TIERS:
            raise ValueError(f"unknown plugin tier {tier!r}; expected one of {TIERS}")
        if name in self._records:
            raise PluginError(
                f"A plugin named {name!r} is already registered ({self._records[name].origin}). "
                "Give the new one another name."
            )
        # Plugins of later tiers must stay registered after this one: take them out, put them back.
        later = [n for n in self._order if TIERS.index(self._records[n].tier) > TIERS.index(tier)]
        with self.batch():
            for n in reversed(later):
                super().unregister(name=n)
            self._register_checked(plugin, name)
            for n in later:
                super().register(self._records[n].plugin, name=n)
        try:
            self.check_plugin(plugin, name)
        except PluginError:
            super().unregister(name=name)
            self.dispatch.rebuild()
            raise
        record = PluginRecord(name, plugin, tier, origin or tier, self._hooks_of(plugin))
        self._records[name] = record
        self._order = [n for n in self._order if n not in later] + [name] + later
        return plugin

    def remove(self, name: str) -> Any:
        """Unregister the plugin called ``name`` and return it."""
        record = self._records.pop(name, None)
        if record is None:
            raise PluginError(f"No plugin named {name!r} is registered." + did_you_mean(name, self._records))
        self._order.remove(name)
        super().unregister(name=name)
        self.dispatch.rebuild()
        return record.plugin

    def unregister(self, plugin: Any = None, name: Optional[str] = None) -> Any:
        """pluggy's ``unregister``, keeping the registry's records and dispatch in step."""
        if name is None:
            name = self.get_name(plugin)
        if name in self._records:
            return self.remove(name)
        result = super().unregister(plugin=plugin, name=name)
        self.dispatch.rebuild()
        return result

    def register(self, plugin: Any, name: Optional[str] = None) -> Optional[str]:
        """pluggy's ``register``; records the plugin in the ``code`` tier and rebuilds the dispatch."""
        if self._batch_depth:
            return super().register(plugin, name=name)
        name = name or _default_name(plugin)
        self.add(plugin, name, "code", origin="code")
        return name

    def batch(self) -> "_Batch":
        """Context manager: register/unregister many plugins, rebuild the dispatch once at the end."""
        return _Batch(self)

    def _register_checked(self, plugin: Any, name: str) -> None:
        try:
            super().register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(self._explain_validation(plugin, name, exc)) from exc

    def _explain_validation(self, plugin: Any, name: str, exc: Exception) -> str:
        message = f"Plugin {name!r} ({_describe(plugin)}) is invalid: {exc}"
        for hook_name in self._hooks_of_unregistered(plugin):
            caller = getattr(self.hook, hook_name, None)
            if caller is None or caller.spec is None:
                continue
            func = getattr(plugin, hook_name)
            argnames, _ = pluggy._hooks.varnames(func)  # pluggy's own argument parser
            for arg in argnames:
                if arg not in caller.spec.argnames:
                    message += (
                        f"\n  {hook_name}() takes {arg!r}, which the event does not pass; it passes "
                        f"{', '.join(caller.spec.argnames)}.{did_you_mean(arg, caller.spec.argnames)}"
                    )
        return message

    def _hooks_of_unregistered(self, plugin: Any) -> List[str]:
        names = []
        for attr in dir(plugin):
            try:
                if self.parse_hookimpl_opts(plugin, attr) is not None:
                    names.append(attr)
            except Exception:  # an attribute that raises on access is no hook
                continue
        return names

    # ----------------------------------------------------------------------------------
    # typo checks
    # ----------------------------------------------------------------------------------

    def check_plugin(self, plugin: Any, name: str) -> None:
        """Raise :class:`PluginError` for a hook-like method of ``plugin`` that matches no event.

        Checked: ``@hookimpl`` functions with no hookspec (deferred inside :meth:`batch`,
        since a plugin registered later may add the spec), and methods named ``on_*`` that
        match no event.
        """
        if self._batch_depth:
            return
        known = self._spec_names()
        for hook_name in self._hooks_of(plugin):
            if hook_name not in known and not self._impl_is_optional(plugin, hook_name):
                raise PluginError(
                    f"Plugin {name!r} ({_describe(plugin)}) implements `{hook_name}`, which is no event."
                    + did_you_mean(hook_name, known)
                    + " See engine/hookspecs.py or `python -m engine plugins` for the event names."
                )
        for attr in _public_methods(plugin):
            if attr.startswith("on_") and attr not in known and not _is_exempt(plugin, attr):
                raise PluginError(
                    f"{_kind(plugin)} {name!r} ({_describe(plugin)}) has a method `{attr}` that looks like "
                    f"a hook but matches no event." + did_you_mean(attr, known)
                    + " Rename it, or give it a name that does not start with `on_`."
                )

    def check_all(self) -> None:
        """Run :meth:`check_plugin` on every registered plugin (after a batch of registrations)."""
        for name in list(self._order):
            self.check_plugin(self._records[name].plugin, name)

    def _spec_names(self) -> List[str]:
        return [n for n, caller in vars(self.hook).items() if getattr(caller, "spec", None) is not None]

    def _hooks_of(self, plugin: Any) -> List[str]:
        return [impl_name for impl_name, caller in vars(self.hook).items()
                if any(impl.plugin is plugin for impl in caller.get_hookimpls())]

    def _impl_is_optional(self, plugin: Any, hook_name: str) -> bool:
        caller = getattr(self.hook, hook_name)
        return all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin)

    # ----------------------------------------------------------------------------------
    # entry points
    # ----------------------------------------------------------------------------------

    def load_entrypoint_plugins(self, disabled: Iterable[str] = ()) -> List[str]:
        """Load and register every ``engine.plugins`` entry point not in ``disabled``.

        Skipped entirely when ``ENGINE_DISABLE_PLUGIN_AUTOLOAD`` is set. A target may be a
        module, an object with hook implementations, or a ``Callback`` subclass (then
        instantiated with no arguments). Returns the names loaded.
        """
        if os.environ.get(DISABLE_AUTOLOAD_ENV):
            return []
        disabled = set(disabled)
        loaded = []
        for ep in sorted(entry_points(), key=lambda e: e.name):
            if ep.name in disabled or ep.name in self._records:
                continue
            dist = getattr(ep, "dist", None)
            where = f"entry point `{ep.name} = {ep.value}` of distribution " + (
                f"{dist.metadata['Name']} {dist.version}" if dist is not None else "(unknown)"
            )
            try:
                target = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"Could not load plugin from {where}: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall that distribution, disable it with disable_plugins=[{ep.name!r}], "
                    f"or set {DISABLE_AUTOLOAD_ENV}=1."
                ) from exc
            if inspect.isclass(target):
                target = target()
            self.add(target, ep.name, "entrypoint", origin=where)
            loaded.append(ep.name)
        return loaded

    # ----------------------------------------------------------------------------------
    # introspection
    # ----------------------------------------------------------------------------------

    def records(self) -> List[PluginRecord]:
        """Every registered plugin, in registration order, with its origin and hooks."""
        for record in self._records.values():
            record.hooks = self._hooks_of(record.plugin)
        return [self._records[n] for n in self._order]

    def call_order(self, hook_name: str) -> List[Tuple[str, str]]:
        """``(plugin name, marker)`` for each implementation of ``hook_name``, in call order.

        ``marker`` is ``"wrapper"``, ``"tryfirst"``, ``"trylast"`` or ``""``.
        """
        caller = getattr(self.hook, hook_name)
        impls = caller.get_hookimpls()
        wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
        plain = [i for i in impls if not (i.wrapper or i.hookwrapper)]
        result = []
        for impl in list(reversed(wrappers)) + list(reversed(plain)):
            marker = "wrapper" if (impl.wrapper or impl.hookwrapper) else (
                "tryfirst" if impl.tryfirst else "trylast" if impl.trylast else "")
            result.append((impl.plugin_name, marker))
        return result

    def events(self) -> List[str]:
        """Every event name known to this registry (built-in and added), in catalogue order."""
        return self._spec_names()

    def culprit(self, exc: BaseException) -> Optional[Tuple[str, str]]:
        """``(plugin name, hook name)`` whose implementation raised ``exc``, from its traceback.

        Looks for the deepest traceback frame that belongs to a registered hook
        implementation; costs nothing until an exception happens.
        """
        codes: Dict[Any, Tuple[str, str]] = {}
        for hook_name, caller in vars(self.hook).items():
            for impl in caller.get_hookimpls():
                code = getattr(getattr(impl.function, "__func__", impl.function), "__code__", None)
                if code is not None:
                    codes[code] = (impl.plugin_name, hook_name)
        found = None
        tb = exc.__traceback__
        while tb is not None:
            found = codes.get(tb.tb_frame.f_code, found)
            tb = tb.tb_next
        return found

    def names(self) -> List[str]:
        """Names of every registered plugin, in registration order."""
        return list(self._order)


class _Batch:
    """Defers dispatch rebuilds and spec checks until the outermost batch ends."""

    def __init__(self, registry: PluginRegistry) -> None:
        self.registry = registry

    def __enter__(self) -> PluginRegistry:
        self.registry._batch_depth += 1
        return self.registry

    def __exit__(self, *exc_info: Any) -> None:
        self.registry._batch_depth -= 1
        if self.registry._batch_depth == 0 and exc_info[0] is None:
            self.registry.dispatch.rebuild()


def entry_points() -> Sequence[importlib.metadata.EntryPoint]:
    """Every installed entry point in the ``engine.plugins`` group."""
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python < 3.10


def _is_callback(plugin: Any) -> bool:
    from engine.callback import Callback

    return isinstance(plugin, Callback)


def _overrides(plugin: Any, name: str) -> bool:
    """True if ``plugin``'s class defines ``name`` itself rather than inheriting ``Callback``'s no-op."""
    from engine.callback import Callback

    attr = getattr(type(plugin), name, None)
    return callable(attr) and attr is not getattr(Callback, name, None)


def _public_methods(plugin: Any) -> List[str]:
    if isinstance(plugin, types.ModuleType):
        return [n for n, v in vars(plugin).items() if inspect.isfunction(v) and v.__module__ == plugin.__name__]
    cls = plugin if inspect.isclass(plugin) else type(plugin)
    return [n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None))]


def _is_exempt(plugin: Any, attr: str) -> bool:
    """Methods a plugin declares as its own (``__engine_not_hooks__``) are not typo-checked."""
    return attr in getattr(plugin, "__engine_not_hooks__", ())


def _default_name(plugin: Any) -> str:
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return f"{type(plugin).__qualname__}-{id(plugin):x}"


def _describe(plugin: Any) -> str:
    if isinstance(plugin, types.ModuleType):
        return f"module {plugin.__name__}"
    cls = plugin if inspect.isclass(plugin) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def _kind(plugin: Any) -> str:
    return "Callback" if _is_callback(plugin) else "Plugin"


__all__ = ["PluginRegistry", "PluginRecord", "ENTRY_POINT_GROUP", "DISABLE_AUTOLOAD_ENV", "TIERS", "closest"]
