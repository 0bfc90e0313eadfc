"""The plugin registry: a pluggy ``PluginManager`` that knows hookloop's plugin sources and call order.

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
b. then by source (tier): user callbacks (``Trainer(callbacks=[...])``), the callbacks the
   module's ``configure_callbacks()`` returned, plugins attached in code (``Trainer(plugins=[...])``),
   entry-point plugins (group ``engine.plugins``), the ``LightningModule``'s own hooks, built-in plugins;
c. then, inside a tier, the plugin registered last runs first (pluggy's rule). The trainer
   registers callbacks and code plugins in reverse, so they run in list order; entry points
   run in name order; built-ins run in the reverse of the list the distribution provides
   (``plugins/defaults.py``).

``wrapper=True`` (and old-style ``hookwrapper=True``) implementations wrap all of the above;
they are ordered by the same rules, the first one being the outermost.

pluggy itself keeps this order: the registry registers each plugin's *faces*
(:mod:`hookloop.engine.faces`) in the sequence that makes pluggy's lists come out so, using
pluggy's public API only. pluggy's callers (``registry.hook.<event>(...)``), its hook-call
monitoring (``add_hookcall_monitoring``, ``enable_tracing``), the fast dispatch
(``trainer.hooks.<event>``) and ``python -m engine plugins`` all follow it.

The query methods of ``PluginManager`` (``get_plugin``, ``get_name``, ``is_registered``,
``get_plugins``, ``list_name_plugin``, ``has_plugin``) speak of the registered plugins, not of
their faces.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import pluggy

from hookloop.engine import hookspecs
from hookloop.engine.dispatch import Dispatch
from hookloop.engine.entrypoints import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, entry_points, load_entrypoint_plugins
from hookloop.engine.errors import PluginError, closest, did_you_mean
from hookloop.engine.faces import Face, HookEntry, Implementation, for_pluggy, passed_arguments, split_faces
from hookloop.engine.markers import PROJECT_NAME
from hookloop.engine.plugin_checks import check_plugin, describe_plugin, explain_validation, is_callback, overrides

#: Plugin sources, from the one called last to the one called first (see the module docstring).
TIERS: Tuple[str, ...] = ("builtin", "module", "entrypoint", "code", "model_callback", "callback")
#: Tier -> rank in the call order (0 runs first): the reverse of :data:`TIERS`.
_CALL_RANK: Dict[str, int] = {tier: len(TIERS) - 1 - i for i, tier in enumerate(TIERS)}


@dataclass
class PluginRecord:
    """What the registry knows of one registered plugin: its name, object, tier, origin and events."""

    name: str
    plugin: Any
    tier: str
    origin: str
    hooks: List[str] = field(default_factory=list)
    seq: int = 0  # registration counter: breaks ties inside a tier (later runs first)
    faces: Tuple[Face, Optional[Face]] = field(default=None, repr=False)  # type: ignore[assignment]

    def call_key(self) -> Tuple[int, int, int]:
        """Lower runs first inside a tryfirst/plain/trylast group: (``__engine_order__``, tier, newest first)."""
        return (getattr(self.plugin, "__engine_order__", 0), _CALL_RANK[self.tier], -self.seq)


class PluginRegistry(pluggy.PluginManager):
    """A ``PluginManager`` for the ``engine`` project with tiers, typo checks and fast dispatch.

    ``registry.dispatch`` holds one ready-made caller per event (``None`` for events with no
    implementation); it is rebuilt whenever a plugin is added or removed, never per call.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self._records: Dict[str, PluginRecord] = {}
        self._order: List[str] = []  # names in registration order
        self._sequence: List[Face] = []  # faces as registered with pluggy, in that order
        self._batch_depth = 0
        self._seq = 0
        self._monitors = 0  # hook-call monitors added (then the dispatch goes through pluggy)
        self._added_specs: List[Any] = []  # catalogues brought by plugins (``__engine_hookspecs__``)
        self._spec_cache: Optional[List[str]] = None
        self._impl_cache: Dict[str, List[Implementation]] = {}
        self.add_hookspecs(hookspecs)
        self.dispatch = Dispatch(self)

    # ----------------------------------------------------------------------------------
    # pluggy's extension points
    # ----------------------------------------------------------------------------------

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Optional[Dict[str, Any]]:
        """A face's options for its hook ``name``; for any other object, :meth:`hook_options`."""
        if isinstance(plugin, Face):
            return plugin.opts(name)
        return self.hook_options(plugin, name)

    def hook_options(self, plugin: Any, name: str) -> Optional[Dict[str, Any]]:
        """pluggy's options if ``plugin.<name>`` implements a hook: ``@hookimpl``-marked attributes, and a
        ``Callback``'s methods named like events (defined by its class, or assigned on the instance)."""
        allowed = getattr(plugin, "__engine_hooks__", None)
        if allowed is not None and name not in allowed:
            return None
        try:
            opts = super().parse_hookimpl_opts(plugin, name)
        except Exception:  # an attribute that raises on access is no hook
            return None
        if opts is not None:
            return dict(opts)
        if is_callback(plugin) and name in self._spec_names() and overrides(plugin, name):
            return {}
        return None

    def add_hookspecs(self, module_or_class: Any) -> None:
        """Add events (a module or class of ``@hookspec`` functions) and rebuild the dispatch."""
        before = set(self._spec_names())
        super().add_hookspecs(module_or_class)
        self._spec_cache = None
        new_events = set(self._spec_names()) - before
        if hasattr(self, "dispatch"):
            # Implementations registered before their event existed are matched now: rebuild their faces.
            for name in list(self._order):
                record = self._records[name]
                if any(e.event in new_events for f in record.faces if f for e in f.entries.values()) or (
                        is_callback(record.plugin) and any(overrides(record.plugin, e) for e in new_events)):
                    self._replace_faces(record)
            self._refresh()

    def add_hookcall_monitoring(self, before: Callable[..., None], after: Callable[..., None]) -> Callable[[], None]:
        """pluggy's hook-call monitoring; while any is on, every event the loop fires goes through pluggy.

        The fast dispatch calls implementations directly, which monitors would not see; so it is rebuilt
        to call ``registry.hook.<event>(...)`` (and to fire events nobody implements, which monitors
        report too) until the returned function is called.
        """
        undo_pluggy = super().add_hookcall_monitoring(before, after)
        self._monitors += 1
        self._refresh()
        done = False

        def undo() -> None:
            nonlocal done
            if not done:
                done = True
                undo_pluggy()
                self._monitors -= 1
                self._refresh()

        return undo

    @property
    def monitored(self) -> bool:
        """True while a hook-call monitor (``add_hookcall_monitoring``/``enable_tracing``) is on."""
        return self._monitors > 0

    # ----------------------------------------------------------------------------------
    # registration
    # ----------------------------------------------------------------------------------

    def add(self, plugin: Any, name: str, tier: str, origin: str = "") -> Any:
        """Register ``plugin`` under ``name`` in ``tier`` (one of :data:`TIERS`), keeping the call order.

        A plugin with an ``__engine_hookspecs__`` attribute (a module or class of
        ``@hookspec`` functions) adds those events first, so other plugins may implement them.
        Raises :class:`PluginError` naming the plugin and method for a hook-name typo, an
        unknown argument, or a name already taken. A name blocked with ``set_blocked`` is
        not registered (``None`` is returned, as pluggy does).
        """
        if tier not in TIERS:
            raise ValueError(f"unknown plugin tier {tier!r}; expected one of {TIERS}")
        if self.is_blocked(name):
            return None
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
                f"Plugin {name!r} ({describe_plugin(plugin)}) has __engine_order__ = {order!r}; it must be an int "
                "(lower runs first among implementations with the same tryfirst/trylast marker)."
            )
        self._seq += 1
        record = PluginRecord(name, plugin, tier, origin or tier, [], self._seq)
        record.faces = self._faces_of(plugin, name)
        try:
            self._register_faces(record)
        except BaseException:
            self._unregister_faces(record)
            raise
        self._records[name] = record
        self._order.append(name)
        try:
            if not self._batch_depth:
                check_plugin(self, plugin, name)
        except PluginError:
            self._forget(name)
            self._refresh()
            raise
        self._refresh()
        return plugin

    def remove(self, name: str) -> Any:
        """Unregister the plugin called ``name`` and return it."""
        if name not in self._records:
            raise PluginError(f"No plugin named {name!r} is registered." + did_you_mean(name, self._records))
        plugin = self._forget(name)
        self._refresh()
        return plugin

    def register(self, plugin: Any, name: Optional[str] = None) -> Optional[str]:
        """pluggy's ``register``; records the plugin in the ``code`` tier and rebuilds the dispatch."""
        name = name or self.get_canonical_name(plugin)
        return name if self.add(plugin, name, "code", origin="code") is not None else None

    def unregister(self, plugin: Any = None, name: Optional[str] = None) -> Any:
        """pluggy's ``unregister``, by plugin or by name: returns the plugin (``None`` if it was not registered)."""
        if name is None:
            name = self.get_name(plugin)
        if name is None or name not in self._records:
            return None
        return self.remove(name)

    def batch(self) -> "_Batch":
        """Context manager: register/unregister many plugins, order them and rebuild the dispatch once at the end."""
        return _Batch(self)

    def load_entrypoint_plugins(self, disabled: Iterable[str] = ()) -> List[str]:
        """Load and register every ``engine.plugins`` entry point not in ``disabled`` (see :mod:`hookloop.engine.entrypoints`)."""
        return load_entrypoint_plugins(self, disabled)

    def _forget(self, name: str) -> Any:
        record = self._records.pop(name)
        self._order.remove(name)
        self._unregister_faces(record)
        return record.plugin

    # ----------------------------------------------------------------------------------
    # faces: what pluggy registers
    # ----------------------------------------------------------------------------------

    def _faces_of(self, plugin: Any, name: str) -> Tuple[Face, Optional[Face]]:
        """``plugin``'s implementations as pluggy is to see them, split into its main and trylast faces."""
        by_position = is_callback(plugin)
        entries = []
        for attribute in _hook_candidates(plugin):
            opts = self.hook_options(plugin, attribute)
            if opts is None:
                continue
            function = getattr(plugin, attribute)
            event = opts.get("specname") or attribute
            caller = getattr(self.hook, event, None)
            spec_args = caller.spec.argnames if caller is not None and caller.spec is not None else None
            names = passed_arguments(function, spec_args, by_position)
            called = for_pluggy(function, names)
            wrap = self.dispatch.wrap if hasattr(self, "dispatch") else None
            if wrap is not None:  # what pluggy calls is wrapped too (events with wrappers run through pluggy)
                called = wrap(event, Implementation(
                    event, plugin, name, function, names, bool(opts.get("wrapper")), bool(opts.get("hookwrapper")),
                    bool(opts.get("tryfirst")), bool(opts.get("trylast"))), called)
            entries.append(HookEntry(attribute, event, opts, called, function, names))
        return split_faces(name, plugin, entries)

    def wrap_implementations(self, wrap: Optional[Callable[[str, Any, Callable[..., Any]], Callable[..., Any]]]) -> None:
        """Set :attr:`Dispatch.wrap <hookloop.engine.dispatch.Dispatch.wrap>` (``None`` to remove it) and apply it
        everywhere: to the fast dispatch and to what pluggy calls (a profiler times every implementation so)."""
        self.dispatch.wrap = wrap
        for name in list(self._order):
            self._replace_faces(self._records[name])
        self._refresh()

    def _register_faces(self, record: PluginRecord) -> None:
        for face in record.faces:
            if face is None:
                continue
            try:
                super().register(face, name=face.face_name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(explain_validation(self, record.plugin, record.name, exc)) from exc
            self._sequence.append(face)

    def _unregister_faces(self, record: PluginRecord) -> None:
        for face in record.faces:
            if face is not None and face in self._sequence:
                super().unregister(plugin=face, name=face.face_name)
                self._sequence.remove(face)
            elif face is not None and super().get_plugin(face.face_name) is face:  # half-registered
                super().unregister(plugin=face, name=face.face_name)

    def _replace_faces(self, record: PluginRecord) -> None:
        self._unregister_faces(record)
        record.faces = self._faces_of(record.plugin, record.name)
        self._register_faces(record)

    # ----------------------------------------------------------------------------------
    # call order
    # ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Put pluggy's lists in the documented call order and rebuild the dispatch (deferred inside a batch)."""
        self._impl_cache = {}
        if self._batch_depth:
            return
        records = [self._records[n] for n in self._order]
        # pluggy calls plain/tryfirst implementations last-registered first and trylast ones first-registered
        # first: main faces go from the plugin called last to the one called first, trylast faces the other way.
        by_key = sorted(records, key=PluginRecord.call_key)
        desired = [r.faces[0] for r in reversed(by_key)] + [r.faces[1] for r in by_key if r.faces[1] is not None]
        keep = 0
        while keep < min(len(desired), len(self._sequence)) and desired[keep] is self._sequence[keep]:
            keep += 1
        for face in reversed(self._sequence[keep:]):
            super().unregister(plugin=face, name=face.face_name)
        for face in desired[keep:]:
            super().register(face, name=face.face_name)
        self._sequence = desired
        for record in records:
            record.hooks = sorted({e.event for f in record.faces if f for e in f.entries.values()},
                                  key=self._event_rank)
        self.dispatch.rebuild()

    def implementations(self, event: str) -> List[Implementation]:
        """``event``'s implementations in call order: wrappers first (outermost first), then the rest."""
        cached = self._impl_cache.get(event)
        if cached is not None:
            return cached
        caller = getattr(self.hook, event, None)
        found: List[Implementation] = []
        if caller is not None:
            impls = caller.get_hookimpls()  # pluggy's order: plain then wrappers, each called from the end
            wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
            plain = [i for i in impls if not (i.wrapper or i.hookwrapper)]
            for impl in list(reversed(wrappers)) + list(reversed(plain)):
                face = impl.plugin
                entry = next((e for e in face.entries.values() if e.for_pluggy is impl.function), None) \
                    if isinstance(face, Face) else None
                if entry is None:  # registered behind the registry's back
                    found.append(Implementation(event, face, impl.plugin_name, impl.function, tuple(impl.argnames),
                                                impl.wrapper, impl.hookwrapper, impl.tryfirst, impl.trylast))
                    continue
                found.append(Implementation(event, face.plugin, face.owner, entry.original, entry.argnames,
                                            impl.wrapper, impl.hookwrapper, impl.tryfirst, impl.trylast))
        self._impl_cache[event] = found
        return found

    def implementation(self, plugin: Any, event: str) -> Optional[Callable[..., Any]]:
        """The function the dispatch calls for ``plugin``'s implementation of ``event`` (``None`` if it has none).

        When that implementation is the event's only one and takes the event's arguments in order,
        ``trainer.hooks.<event>`` is this very object, so ``hooks.backward is registry.implementation(self,
        'backward')`` tells a plugin that nothing else takes part.
        """
        return next((i.function for i in self.implementations(event) if i.plugin is plugin), None)

    def call_order(self, hook_name: str) -> List[Tuple[str, str]]:
        """``(plugin name, marker)`` for each implementation of ``hook_name``, in call order.

        ``marker`` is ``"wrapper"``, ``"tryfirst"``, ``"trylast"`` or ``""``.
        """
        return [(impl.plugin_name, impl.marker) for impl in self.implementations(hook_name)]

    # ----------------------------------------------------------------------------------
    # pluggy's queries, in terms of the registered plugins
    # ----------------------------------------------------------------------------------

    def get_plugin(self, name: str) -> Any:
        """The plugin registered as ``name``, or ``None``."""
        record = self._records.get(name)
        return record.plugin if record is not None else None

    def get_name(self, plugin: Any) -> Optional[str]:
        """The name ``plugin`` is registered under, or ``None`` (a face: its name in pluggy)."""
        if isinstance(plugin, Face):  # pluggy asks this of the objects it holds
            return super().get_name(plugin)
        return next((r.name for r in self._records.values() if r.plugin is plugin), None)

    def has_plugin(self, name: str) -> bool:
        """True if a plugin is registered as ``name``."""
        return name in self._records

    def is_registered(self, plugin: Any) -> bool:
        """True if ``plugin`` is registered."""
        return self.get_name(plugin) is not None

    def get_plugins(self) -> Set[Any]:
        """Every registered plugin."""
        return {r.plugin for r in self._records.values()}

    def list_name_plugin(self) -> List[Tuple[str, Any]]:
        """``(name, plugin)`` of every registered plugin, in registration order."""
        return [(n, self._records[n].plugin) for n in self._order]

    def get_hookcallers(self, plugin: Any) -> Optional[List[Any]]:
        """The hook callers ``plugin`` (or one of its faces) implements, or ``None`` if it is not registered."""
        if isinstance(plugin, Face):
            return super().get_hookcallers(plugin)
        name = self.get_name(plugin)
        if name is None:
            return None
        callers = []
        for face in self._records[name].faces:
            if face is not None:
                callers += [c for c in super().get_hookcallers(face) or [] if c not in callers]
        return callers

    def get_canonical_name(self, plugin: Any) -> str:
        """The default name of a plugin: a module's name, else ``ClassName-<id>``."""
        if inspect.ismodule(plugin):
            return plugin.__name__
        return f"{type(plugin).__qualname__}-{id(plugin):x}"

    # ----------------------------------------------------------------------------------
    # introspection
    # ----------------------------------------------------------------------------------

    def records(self) -> List[PluginRecord]:
        """Every registered plugin, in registration order, with its origin and hooks."""
        return [self._records[n] for n in self._order]

    def record(self, name: str) -> PluginRecord:
        """The record of the plugin called ``name``."""
        return self._records[name]

    def subset_caller(self, event: str, keep: Callable[[PluginRecord], bool]) -> Any:
        """A caller of ``event`` (keyword arguments) that calls only the plugins whose record ``keep`` accepts,
        in their usual order, wrappers included: for an event that Lightning fires in parts (the module's
        ``on_load_checkpoint`` before the weights load, the callbacks' after). Built per call: not for a hot path."""
        removed = [face for record in self.records() if not keep(record) for face in record.faces if face is not None]
        return self.subset_hook_caller(event, removed)

    def names(self) -> List[str]:
        """Names of every registered plugin, in registration order."""
        return list(self._order)

    def events(self) -> List[str]:
        """Every event name known to this registry: the catalogue's in its order, then added ones."""
        known = set(self._spec_names())
        catalogue = [n for n in hookspecs.event_names() if n in known]
        return catalogue + sorted(known.difference(catalogue))

    def spec_names(self) -> List[str]:
        """Every declared event's name (the catalogue's and those added by plugins)."""
        return list(self._spec_names())

    def _spec_names(self) -> List[str]:
        # Cached: asked once per Callback attribute at registration; events change only in add_hookspecs.
        if self._spec_cache is None:
            self._spec_cache = [n for n, caller in vars(self.hook).items()
                                if getattr(caller, "spec", None) is not None]
        return self._spec_cache

    def _event_rank(self, event: str) -> Tuple[int, str]:
        names = self._spec_names()
        return (names.index(event), event) if event in names else (len(names), event)

    def culprit(self, exc: BaseException) -> Optional[Tuple[str, str]]:
        """``(plugin name, hook name)`` whose implementation raised ``exc``, from its traceback.

        Looks for the deepest traceback frame that belongs to a registered hook
        implementation; costs nothing until an exception happens.
        """
        codes: Dict[Any, List[Tuple[Any, str, str]]] = {}
        for record in self._records.values():
            for face in record.faces:
                for entry in (face.entries.values() if face is not None else ()):
                    function = entry.original
                    code = getattr(getattr(function, "__func__", function), "__code__", None)
                    if code is not None:
                        codes.setdefault(code, []).append((record.plugin, record.name, entry.event))
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

    def check_all(self) -> None:
        """Run the typo check on every registered plugin (after a batch of registrations)."""
        for name in list(self._order):
            check_plugin(self, self._records[name].plugin, name)


class _Batch:
    """Defers ordering, dispatch rebuilds and typo checks until the outermost batch ends."""

    def __init__(self, registry: PluginRegistry) -> None:
        self.registry = registry

    def __enter__(self) -> PluginRegistry:
        self.registry._batch_depth += 1
        return self.registry

    def __exit__(self, *exc_info: Any) -> None:
        self.registry._batch_depth -= 1
        if self.registry._batch_depth == 0 and exc_info[0] is None:
            self.registry._refresh()


def _hook_candidates(plugin: Any) -> List[str]:
    """Attribute names of ``plugin`` that may implement a hook (everything ``dir`` lists, minus dunders)."""
    return [name for name in dir(plugin) if not (name.startswith("__") and name.endswith("__"))]


__all__ = ["PluginRegistry", "PluginRecord", "Implementation", "ENTRY_POINT_GROUP", "DISABLE_AUTOLOAD_ENV",
           "TIERS", "closest", "entry_points"]
