"""Fast event dispatch, prepared once per registry change instead of per call.

pluggy's ``hook.name(**kwargs)`` copies the implementation list and builds an argument list
per implementation on every call (about 1 µs with no implementation at all). The training
loop fires a dozen events per batch, so it calls through a :class:`Dispatch` instead:

* an event with no implementation is ``None`` — the loop tests ``is not None`` and skips it;
* an event with a single implementation taking the spec's arguments is that function itself;
* several implementations become one small closure over a tuple of functions;
* anything with ``wrapper=True``/``hookwrapper=True`` implementations goes through pluggy's
  own caller, so its semantics are pluggy's exactly.

Callers pass the spec's arguments positionally, in the spec's order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

from engine.errors import did_you_mean

if TYPE_CHECKING:
    from engine.registry import PluginRegistry


class Dispatch:
    """One attribute per event: ``None`` (no implementation) or a callable taking the spec's arguments positionally."""

    def __init__(self, registry: "PluginRegistry") -> None:
        self._registry = registry
        self._names: List[str] = []
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute every event's caller from the registry's current implementations."""
        for name in self._names:
            self.__dict__.pop(name, None)
        self._names = []
        for name, caller in vars(self._registry.hook).items():
            spec = getattr(caller, "spec", None)
            if spec is None:
                continue
            self.__dict__[name] = _build(caller, spec.argnames, bool(spec.opts.get("firstresult")))
            self._names.append(name)

    def call(self, name: str, *args: Any) -> Any:
        """Call event ``name`` with positional ``args`` (a convenience off the hot path)."""
        fn = getattr(self, name)
        return None if fn is None else fn(*args)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not events: a typo in engine or plugin code.
        raise AttributeError(f"No event named {name!r}." + did_you_mean(name, self._names))


def _build(caller: Any, argnames: Sequence[str], firstresult: bool) -> Optional[Callable[..., Any]]:
    impls = caller.get_hookimpls()
    if not impls:
        return None
    if any(impl.wrapper or impl.hookwrapper for impl in impls):
        return _through_pluggy(caller, tuple(argnames))
    # pluggy calls the last-registered implementation first; tryfirst/trylast are already
    # reflected in the list's order.
    functions = tuple(_adapt(impl.function, impl.argnames, argnames) for impl in reversed(impls))
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
    def through_pluggy(*args: Any) -> Any:
        return caller(**dict(zip(argnames, args)))

    return through_pluggy
