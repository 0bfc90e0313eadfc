"""The plugin registry: a pluggy ``PluginManager`` that knows hookloop's plugin sources.

Call order
----------
For every event, implementations run in this order (top first). The order is computed from
the rules below, not from when a plugin happened to be registered, so it is deterministic:

1. implementations marked ``@hookimpl(tryfirst=True)``;
2. unmarked implementations;
3. implementations marked ``@hookimpl(trylast=True)``.

Inside each of these three groups:

a. a lower ``__engine_order__`` runs first (a class or module attribute, an int, default
   ``0``; e.g. ``ModelCheckpoint`` sets ``100`` so that it saves after early stopping and
   any other ``trylast`` implementation has updated the state);
b. then by source (tier): user callbacks (``Trainer(callbacks=[...])``), plugins attached in
   code (``Trainer(plugins=[...])``), entry-point plugins (group ``engine.plugins``), the
   ``LightningModule``'s own hooks, built-in plugins;
c. then, inside a tier, the plugin registered last runs first (pluggy's rule). The trainer
   registers callbacks and code plugins in reverse, so they run in list order; entry points
   run in name order; built-ins run in the reverse of :func:`plugins.defaults.default_plugins`.

``wrapper=True`` (and old-style ``hookwrapper=True``) implementations wrap all of the above;
they are ordered by the same rules, the first one being the outermost.
pluggy's own callers (``registry.hook.<event>(...)``) and the fast dispatch
(``trainer.hooks.<event>``) use this same order. ``python -m engine plugins`` prints it.
"""
from __future__ import annotations

import importlib.metadata
import inspect
import os
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import pluggy

from hookloop.engine import hookspecs
from hookloop.engine.dispatch import Dispatch
from hookloop.engine.errors import PluginError, closest, did_you_mean
from hookloop.engine.markers import PROJECT_NAME

#: Entry-point group scanned for third-party plugins.
ENTRY_POINT_GROUP = "engine.plugins"
#: Environment variable that turns entry-point loading off (like pytest's).
DISABLE_AUTOLOAD_ENV = "ENGINE_DISABLE_PLUGIN_AUTOLOAD"

#: Plugin sources, from the one called last to the one called first (see the module docstring).
TIERS: Tuple[str, ...] = ("builtin", "module", "entrypoint", "code", "callback")
#: Tier -> rank in the call order (0 runs first): the reverse of :data:`TIERS`.
_CALL_RANK: Dict[str, int] = {tier: len(TIERS) - 1 - i for i, tier in enumerate(TIERS)}


@dataclass
class PluginRecord:
    """What the registry knows of one registered plugin: its name, object, tier and origin."""

    name: str
    plugin: Any
    tier: str
    origin: str
    hooks: List[str] = field(default_factory=list)
    seq: int = 0  # registration counter: breaks ties inside a tier (later runs first)


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
        self._seq = 0
        self._added_specs: List[Any] = []  # catalogues brought by plugins (``__engine_hookspecs__``)
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
        before = set(self._spec_names()) if hasattr(self, "dispatch") else set()
        super().add_hookspecs(module_or_class)
        self.__dict__.pop("_spec_cache", None)
        if hasattr(self, "dispatch"):
            self._rematch_callbacks(set(self._spec_names()) - before)
            # pluggy attaches already-registered implementations of the new events: order them.
            self._refresh()

    def _rematch_callbacks(self, new_events: Set[str]) -> None:
        """Register again the callbacks whose methods are named like ``new_events``.

        A ``Callback``'s methods are matched by name at registration; one registered before a
        plugin added the event it implements would otherwise miss it.
        """
        for name in list(self._order):
            plugin = self._records[name].plugin
            if _is_callback(plugin) and any(_overrides(plugin, event) for event in new_events):
                super().unregister(name=name)
                self._register_checked(plugin, name)

    # ----------------------------------------------------------------------------------
    # registration
    # ----------------------------------------------------------------------------------

    def add(self, plugin: Any, name: str, tier: str, origin: str = "") -> Any:
        """Register ``plugin`` under ``name`` in ``tier`` (one of :data:`TIERS`), keeping the call order.

        A plugin with an ``__engine_hookspecs__`` attribute (a module or class of
        ``@hookspec`` functions) adds those events first, so other plugins may implement them.
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
        specs = getattr(plugin, "__engine_hookspecs__", None)
        if specs is not None and specs not in self._added_specs:
            # The plugin brings its own events: add them first so its implementers validate.
            self._added_specs.append(specs)
            self.add_hookspecs(specs)
        order = getattr(plugin, "__engine_order__", 0)
        if isinstance(order, bool) or not isinstance(order, int):
            raise PluginError(
                f"Plugin {name!r} ({_describe(plugin)}) has __engine_order__ = {order!r}; it must be an int "
                "(lower runs first among implementations with the same tryfirst/trylast marker)."
            )
        self._seq += 1
        record = PluginRecord(name, plugin, tier, origin or tier, [], self._seq)
        # The record exists before pluggy sees the plugin, so the ordering key can find its tier.
        self._records[name] = record
        try:
            self._register_checked(plugin, name)
        except BaseException:
            del self._records[name]
            raise
        try:
            self.check_plugin(plugin, name)
        except PluginError:
            del self._records[name]
            super().unregister(name=name)
            self._refresh()
            raise
        record.hooks = self._hooks_of(plugin)
        self._order.append(name)
        self._refresh()
        return plugin

    def remove(self, name: str) -> Any:
        """Unregister the plugin called ``name`` and return it."""
        record = self._records.pop(name, None)
        if record is None:
            raise PluginError(f"No plugin named {name!r} is registered." + did_you_mean(name, self._records))
        self._order.remove(name)
        super().unregister(name=name)
        self._refresh()
        return record.plugin

    def unregister(self, plugin: Any = None, name: Optional[str] = None) -> Any:
        """pluggy's ``unregister``, keeping the registry's records and dispatch in step."""
        if name is None:
            name = self.get_name(plugin)
        if name in self._records:
            return self.remove(name)
        result = super().unregister(plugin=plugin, name=name)
        self._refresh()
        return result

    def register(self, plugin: Any, name: Optional[str] = None) -> Optional[str]:
        """pluggy's ``register``; records the plugin in the ``code`` tier and rebuilds the dispatch."""
        name = name or _default_name(plugin)
        self.add(plugin, name, "code", origin="code")
        return name

    def batch(self) -> "_Batch":
        """Context manager: register/unregister many plugins, rebuild the dispatch once at the end."""
        return _Batch(self)

    # ----------------------------------------------------------------------------------
    # call order
    # ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Re-sort every event's implementations and rebuild the dispatch (skipped inside a batch)."""
        self.__dict__["_hooks_stale"] = True
        if self._batch_depth:
            return
        self._reorder()
        self.dispatch.rebuild()

    def _reorder(self) -> None:
        """Put each event's implementations in the documented call order (module docstring).

        pluggy keeps ``HookCaller._hookimpls`` as non-wrappers then wrappers, each part in
        reverse call order; we write that list so pluggy's callers and ours agree. Runs on
        registration changes only, never per call.
        """
        for caller in vars(self.hook).values():
            impls = getattr(caller, "_hookimpls", None)
            if not impls or len(impls) < 2:
                continue
            plain = sorted((i for i in impls if not (i.wrapper or i.hookwrapper)), key=self._call_key)
            wrappers = sorted((i for i in impls if i.wrapper or i.hookwrapper), key=self._call_key)
            impls[:] = plain[::-1] + wrappers[::-1]

    def _call_key(self, impl: Any) -> Tuple[int, int, int, int]:
        """Sort key of one implementation: (tryfirst/plain/trylast, ``__engine_order__``, tier, -seq)."""
        group = 0 if impl.tryfirst else 2 if impl.trylast else 1
        order = getattr(impl.plugin, "__engine_order__", 0)
        record = self._records.get(impl.plugin_name)
        if record is None:  # registered behind the registry's back: treat as the newest code plugin
            return (group, order, _CALL_RANK["code"], -(self._seq + 1))
        return (group, order, _CALL_RANK[record.tier], -record.seq)

    def _verify_hook(self, hook: Any, hookimpl: Any) -> None:
        """pluggy's check of an implementation against its event, after aligning ``Callback`` methods by position."""
        if hook.spec is not None and _is_callback(hookimpl.plugin):
            _align_by_position(hookimpl, hook.spec.argnames)
        super()._verify_hook(hook, hookimpl)

    def _register_checked(self, plugin: Any, name: str) -> None:
        try:
            super().register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(self._explain_validation(plugin, name, exc)) from exc
        self._pass_defaulted_arguments(plugin)

    def _pass_defaulted_arguments(self, plugin: Any) -> None:
        """Pass event arguments that an implementation declares with a default, e.g. ``dataloader_idx=0``.

        pluggy passes only arguments without defaults. Lightning callbacks commonly write
        ``on_validation_batch_end(..., batch_idx, dataloader_idx=0)`` and expect the real
        index, so the leading defaulted parameters that the event provides become regular
        (positional) arguments of the implementation.
        """
        for caller in vars(self.hook).values():
            spec = getattr(caller, "spec", None)
            if spec is None:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin or not impl.kwargnames:
                    continue
                extra = []
                for kwarg in impl.kwargnames:
                    if kwarg not in spec.argnames:
                        break  # keep positions aligned with the signature
                    extra.append(kwarg)
                if extra:
                    impl.argnames = tuple(impl.argnames) + tuple(extra)
                    impl.kwargnames = tuple(k for k in impl.kwargnames if k not in extra)

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
            if (attr.startswith("on_") and attr in known and not _is_callback(plugin)
                    and not hasattr(plugin, "__engine_hooks__") and not _is_exempt(plugin, attr)
                    and self.parse_hookimpl_opts(plugin, attr) is None):
                # A plain plugin's `on_*` function without @hookimpl would never be called.
                raise PluginError(
                    f"Plugin {name!r} ({_describe(plugin)}) has a method `{attr}` named like an event but "
                    "not marked `@hookimpl`, so it would never be called. Decorate it with "
                    "`@engine.hookimpl`, or make the plugin an `engine.Callback` subclass."
                )

    def check_all(self) -> None:
        """Run :meth:`check_plugin` on every registered plugin (after a batch of registrations)."""
        for name in list(self._order):
            self.check_plugin(self._records[name].plugin, name)

    def _spec_names(self) -> List[str]:
        # Cached: asked once per Callback attribute at registration; events change only in add_hookspecs.
        cached = self.__dict__.get("_spec_cache")
        if cached is None:
            cached = [n for n, caller in vars(self.hook).items() if getattr(caller, "spec", None) is not None]
            self.__dict__["_spec_cache"] = cached
        return cached

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
        found: List[Tuple[str, Any, str]] = []
        for ep in sorted(entry_points(), key=lambda e: e.name):
            if ep.name in disabled:
                continue
            dist = getattr(ep, "dist", None)
            dist_name = f"{dist.metadata['Name']} {dist.version}" if dist is not None else "(unknown distribution)"
            where = f"entry point `{ep.name} = {ep.value}` of distribution {dist_name}"
            if ep.name in self._records:
                raise PluginError(
                    f"The {where} is named like the already registered plugin {ep.name!r} "
                    f"({self._records[ep.name].origin}). Rename the entry point, or pass "
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
            self.add(target, name, "entrypoint", origin=origin)
        return [name for name, _, _ in found]

    # ----------------------------------------------------------------------------------
    # introspection
    # ----------------------------------------------------------------------------------

    def records(self) -> List[PluginRecord]:
        """Every registered plugin, in registration order, with its origin and hooks."""
        if self.__dict__.get("_hooks_stale", True):
            # Recomputed after registration changes only: checkpoints ask for this every save.
            for record in self._records.values():
                record.hooks = self._hooks_of(record.plugin)
            self.__dict__["_hooks_stale"] = False
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
        """Every event name known to this registry: the catalogue's in its order, then added ones."""
        known = set(self._spec_names())
        catalogue = [n for n in hookspecs.event_names() if n in known]
        return catalogue + sorted(known.difference(catalogue))

    def culprit(self, exc: BaseException) -> Optional[Tuple[str, str]]:
        """``(plugin name, hook name)`` whose implementation raised ``exc``, from its traceback.

        Looks for the deepest traceback frame that belongs to a registered hook
        implementation; costs nothing until an exception happens.
        """
        codes: Dict[Any, List[Tuple[Any, str, str]]] = {}
        for hook_name, caller in vars(self.hook).items():
            for impl in caller.get_hookimpls():
                code = getattr(getattr(impl.function, "__func__", impl.function), "__code__", None)
                if code is not None:
                    codes.setdefault(code, []).append((impl.plugin, impl.plugin_name, hook_name))
        found = None
        tb = exc.__traceback__
        while tb is not None:
            candidates = codes.get(tb.tb_frame.f_code)
            if candidates:
                # Two instances of one class share the code: the frame's `self` tells them apart.
                owner = tb.tb_frame.f_locals.get("self")
                plugin, name, hook = next((c for c in candidates if c[0] is owner), candidates[0])
                found = (name, hook)
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
            self.registry._refresh()


def entry_points() -> Sequence[importlib.metadata.EntryPoint]:
    """Every installed entry point in the ``engine.plugins`` group."""
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python < 3.10


def _align_by_position(impl: Any, spec_args: Sequence[str]) -> None:
    """Let a ``Callback`` method name its parameters freely, as Lightning's positional calls allow.

    Lightning calls ``on_train_start(trainer, pl_module)`` positionally, so callbacks written for
    it often say ``(self, trainer, model)``. pluggy matches by name; when a method's required
    parameters are not all event arguments, they take the event's names by position (the
    dispatch and pluggy both pass arguments positionally). More required parameters than the
    event has is left to pluggy's error.
    """
    required = tuple(impl.argnames)
    if set(required) <= set(spec_args) or len(required) > len(spec_args):
        return
    impl.argnames = tuple(spec_args[:len(required)])


def _is_callback(plugin: Any) -> bool:
    from hookloop.engine.callback import Callback

    return isinstance(plugin, Callback)


def _overrides(plugin: Any, name: str) -> bool:
    """True if ``plugin``'s class defines ``name`` itself rather than inheriting ``Callback``'s no-op."""
    from hookloop.engine.callback import Callback

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
