"""Fast event dispatch, prepared once per registry change instead of per call.

pluggy's ``hook.name(**kwargs)`` copies the implementation list and builds an argument list
per implementation on every call (about 1 µs with no implementation at all). The training
loop fires a dozen events per batch, so it calls through a :class:`Dispatch` instead:

* an event with no implementation is ``None`` — the loop tests ``is not None`` and skips it;
* an event with a single implementation taking the spec's arguments is that function itself;
* several implementations become one small closure over a tuple of functions;
* anything with ``wrapper=True``/``hookwrapper=True`` implementations goes through pluggy's
  own caller (``registry.hook.<event>(**kwargs)``), so its semantics are pluggy's exactly;
* while a pluggy hook-call monitor is on (``registry.add_hookcall_monitoring``, ``enable_tracing``),
  every event goes through pluggy's caller, so the monitor sees every call, events nobody
  implements included.

The implementations and their order are the registry's (:meth:`PluginRegistry.implementations`,
the same as pluggy's lists). Callers pass the spec's arguments positionally, in the spec's order.

``Dispatch.wrap`` (default ``None``) lets a tool such as the profiler wrap every
implementation and every event when the dispatch is built; unset, it costs nothing.

The training loop tests the events around each training step in two groups
(:data:`EVENT_GROUPS`): one test per group per batch when nothing listens, the events one by one
when something does. ``Dispatch.watch`` tells a plugin that derives something from the dispatch
when it is rebuilt, so that it need not compare ``built`` at every call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from hookloop.engine.errors import did_you_mean

if TYPE_CHECKING:
    from hookloop.engine.faces import Implementation
    from hookloop.engine.registry import PluginRegistry


#: ``group -> events``: after every build, ``dispatch.<group>`` is True when any of the events
#: has an implementation. The loop tests a group once per batch and its events only if it is True;
#: a plugin registered by one of the group's handlers is still called at its event in that batch.
EVENT_GROUPS: Dict[str, Tuple[str, ...]] = {
    "any_before_training_step": ("on_batch_start", "on_train_batch_start", "transfer_batch_to_device"),
    "any_after_training_step": ("on_train_batch_end", "on_batch_end"),
}


class Dispatch:
    """One attribute per event: ``None`` (no implementation) or a callable taking the spec's arguments positionally."""

    #: See :data:`EVENT_GROUPS`.
    any_before_training_step: bool
    #: See :data:`EVENT_GROUPS`.
    any_after_training_step: bool

    def __init__(self, registry: "PluginRegistry") -> None:
        self._registry = registry
        self._names: List[str] = []
        self._watchers: List[Callable[[], None]] = []
        #: Extension point (the profiler uses it): ``wrap(event, impl, function) -> function`` is
        #: applied, when the dispatch is built, to every implementation's function (``impl`` is its
        #: :class:`~hookloop.engine.faces.Implementation`) and then to the event's combined caller
        #: (``impl`` is ``None``). An event with wrapper implementations runs through pluggy, and is
        #: wrapped as a whole only.
        #: ``None``, the default, leaves everything as it is: no cost unless someone sets it.
        #: Setting it takes effect at the next :meth:`rebuild`.
        self.wrap: Optional[Callable[[str, Any, Callable[..., Any]], Callable[..., Any]]] = None
        #: A fresh object at every :meth:`rebuild`: a plugin that derives something from the
        #: dispatch (``hooks.backward is mine``) caches it against this and re-derives on change.
        self.built: object = object()
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute every event's caller from the registry's current implementations."""
        registry = self._registry
        for name in self._names:
            self.__dict__.pop(name, None)
        self._names = []
        monitored = registry.monitored
        for name, caller in vars(registry.hook).items():
            spec = getattr(caller, "spec", None)
            if spec is None:
                continue
            firstresult = bool(spec.opts.get("firstresult"))
            if monitored:
                # Every event the loop fires goes through pluggy, so that its monitors see it; a behaviour
                # hook nobody implements stays None (the loop must not take its None as an answer).
                fn = _through_pluggy(caller, tuple(spec.argnames)) if caller.get_hookimpls() or not firstresult \
                    else None
            else:
                fn = _build(registry.implementations(name), caller, spec.argnames, firstresult, name, self.wrap)
            self.__dict__[name] = fn if fn is None or self.wrap is None else self.wrap(name, None, fn)
            self._names.append(name)
        for group, events in EVENT_GROUPS.items():
            self.__dict__[group] = any(self.__dict__.get(event) is not None for event in events)
        self.built = object()
        for callback in tuple(self._watchers):
            callback()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every rebuild from now on; returns the function that stops it.

        For a plugin that derives something from the dispatch (``hooks.backward is mine``) on its
        hot path: it marks that stale when told, instead of comparing ``built`` at every call.
        """
        self._watchers.append(callback)

        def unwatch() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unwatch

    def call(self, name: str, *args: Any) -> Any:
        """Call event ``name`` with positional ``args`` (a convenience off the hot path).

        An unknown ``name`` raises an ``AttributeError`` with the nearest event names.
        """
        if name not in self._names:
            raise AttributeError(f"No event named {name!r}." + did_you_mean(name, self._names))
        fn = getattr(self, name)
        return None if fn is None else fn(*args)

    # No ``__getattr__`` on purpose: a class with one keeps CPython from specialising
    # ``hooks.<event>`` reads, which the loop makes several times per batch (an unspecialised
    # read costs about 20 ns and touches interpreter code the step would otherwise not need).
    # A misspelt event read still fails with ``AttributeError``, which Python (3.10+) prints
    # with "Did you mean"; the engine's and built-in plugins' reads are checked by
    # tests/test_dispatch_names.py.


def _build(impls: Sequence["Implementation"], caller: Any, argnames: Sequence[str], firstresult: bool,
           name: str = "", wrap: Optional[Callable[..., Any]] = None) -> Optional[Callable[..., Any]]:
    if not impls:
        return None
    if any(impl.wrapper or impl.hookwrapper for impl in impls):
        # pluggy runs wrappers (its semantics exactly); a tool's ``wrap`` then times the event as a whole.
        return _through_pluggy(caller, tuple(argnames))
    # ``impls`` are in call order (tryfirst/trylast, __engine_order__ and tiers applied, see
    # engine/registry.py), each with the event arguments it takes, positionally (a Callback's freely
    # named parameters and Lightning's defaulted ``dataloader_idx=0`` included, see engine/faces.py).
    functions = tuple(_adapt(impl.function if wrap is None else wrap(name, impl, impl.function),
                             impl.argnames, argnames) for impl in impls)
    if len(functions) == 1:
        return functions[0]
    if firstresult:
        return _first_result(functions)
    return _call_all(functions)


def _adapt(function: Callable[..., Any], impl_args: Sequence[str], spec_args: Sequence[str]) -> Callable[..., Any]:
    """Return a callable taking the spec's arguments that calls ``function`` with its own subset."""
    impl_args = tuple(impl_args)
    if impl_args == tuple(spec_args):
        return function
    n = len(impl_args)
    if impl_args == tuple(spec_args[:n]):
        return lambda *args: function(*args[:n])
    index: Tuple[int, ...] = tuple(spec_args.index(a) for a in impl_args)
    return lambda *args: function(*[args[i] for i in index])


def _call_all(functions: Tuple[Callable[..., Any], ...]) -> Callable[..., None]:
    def call_all(*args: Any) -> None:
        for function in functions:
            function(*args)

    return call_all


def _first_result(functions: Tuple[Callable[..., Any], ...]) -> Callable[..., Any]:
    def first_result(*args: Any) -> Any:
        for function in functions:
            result = function(*args)
            if result is not None:
                return result
        return None

    return first_result


def _through_pluggy(caller: Any, argnames: Tuple[str, ...]) -> Callable[..., Any]:
    """pluggy's own call of the event (``registry.hook.<event>(**kwargs)``)."""
    def through_pluggy(*args: Any) -> Any:
        return caller(**dict(zip(argnames, args)))

    return through_pluggy
