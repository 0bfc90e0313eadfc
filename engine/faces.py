"""What the registry hands pluggy for each plugin: its *faces*, and its implementations as hookloop calls them.

**Order.** pluggy orders an event's implementations by registration: among plain and ``tryfirst``
ones the one registered last is called first, among ``trylast`` ones the one registered first is.
hookloop's call order (:mod:`hookloop.engine.registry`) is a single rule for all groups, so each
plugin is registered as up to two objects: its *main face* (every implementation but ``trylast``
ones) and its *trylast face*. The registry registers main faces from the plugin called last to the
one called first, then trylast faces the other way round, and pluggy's own lists come out in
hookloop's order. Only pluggy's public API is used: ``register``, ``unregister``,
``parse_hookimpl_opts`` and ``HookCaller.get_hookimpls``.

**Arguments.** A face presents each implementation to pluggy with the event arguments it is to
be passed. A ``Callback`` method may name its parameters freely (``on_train_start(self, trainer,
model)``): Lightning calls callbacks positionally, so they take the event's arguments by position.
An event argument an implementation declares with a default (``dataloader_idx=0``, as Lightning's
own ``Callback`` does) is passed too, where pluggy would leave it out. Such an implementation reaches
pluggy as a small function with exactly those parameters that calls the method positionally; the
fast dispatch calls the method itself (see :class:`Implementation`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

#: Suffix of a plugin's trylast face's name in pluggy (``"checkpoint#trylast"``).
TRYLAST_SUFFIX = "#trylast"


@dataclass(frozen=True)
class Implementation:
    """One plugin's implementation of one event, in terms of the registered plugin (not its face).

    ``function`` is the plugin's own method or function; calling it with the event's values of
    ``argnames``, positionally and in that order, is what calling the implementation means.
    """

    event: str
    plugin: Any
    plugin_name: str
    function: Callable[..., Any]
    argnames: Tuple[str, ...]
    wrapper: bool = False
    hookwrapper: bool = False
    tryfirst: bool = False
    trylast: bool = False

    @property
    def marker(self) -> str:
        """``"wrapper"`` (also for old-style ``hookwrapper``), ``"tryfirst"``, ``"trylast"`` or ``""``."""
        if self.wrapper or self.hookwrapper:
            return "wrapper"
        return "tryfirst" if self.tryfirst else "trylast" if self.trylast else ""


@dataclass(frozen=True)
class HookEntry:
    """A face's record of one implementation: pluggy's callable, and what the dispatch calls instead."""

    attribute: str
    event: str
    opts: Dict[str, Any]
    for_pluggy: Callable[..., Any]
    original: Callable[..., Any]
    argnames: Tuple[str, ...]


class Face:
    """What pluggy registers in a plugin's place: some of its hooks as attributes, with their options."""

    def __init__(self, name: str, owner: str, plugin: Any, entries: Sequence[HookEntry]) -> None:
        self.face_name = name
        self.owner = owner
        self.plugin = plugin
        self.entries = {entry.attribute: entry for entry in entries}
        for entry in entries:
            self.__dict__[entry.attribute] = entry.for_pluggy

    def __dir__(self) -> List[str]:
        # pluggy looks for implementations in dir(plugin): only the hooks, not the face's own attributes.
        return list(self.entries)

    def opts(self, attribute: str) -> Optional[Dict[str, Any]]:
        """pluggy's options for the hook ``attribute`` (a fresh dict: pluggy fills in defaults in place)."""
        entry = self.entries.get(attribute)
        return dict(entry.opts) if entry is not None else None

    def __repr__(self) -> str:
        return f"<face {self.face_name!r} of {self.plugin!r}>"


def signature_args(function: Callable[..., Any]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """``(required, defaulted)`` positional parameter names of ``function`` (``self`` of a method left out)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return (), ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = tuple(p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty)
    defaulted = tuple(p.name for p in parameters if p.kind in kinds and p.default is not inspect.Parameter.empty)
    return required, defaulted


def _takes_star_args(function: Callable[..., Any]) -> bool:
    try:
        return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False


def passed_arguments(function: Callable[..., Any], spec_args: Optional[Sequence[str]],
                     by_position: bool) -> Tuple[str, ...]:
    """The event arguments ``function`` is passed, in the order of its parameters.

    Its required parameters, or for ``by_position`` (a ``Callback``) whose required parameters are not
    all event arguments, the event's first arguments in their place; then its leading defaulted
    parameters that the event provides. A ``Callback`` method taking ``*args`` gets every event
    argument, positionally (Lightning calls callbacks so). With no spec (the event is not declared
    yet), its required parameters as they are (pluggy reports any mismatch once the spec exists).
    """
    required, defaulted = signature_args(function)
    if spec_args is None:
        return required
    spec_args = tuple(spec_args)
    if by_position and _takes_star_args(function) and len(required) <= len(spec_args):
        return spec_args
    names = required
    if by_position and not set(required) <= set(spec_args) and len(required) <= len(spec_args):
        names = spec_args[:len(required)]
    for name in defaulted:
        if name not in spec_args or name in names:
            break  # keep positions aligned with the signature
        names += (name,)
    return names


def for_pluggy(function: Callable[..., Any], names: Tuple[str, ...]) -> Callable[..., Any]:
    """``function`` itself when pluggy would pass it ``names``, else a function with exactly those parameters
    that calls it positionally (pluggy reads parameter names from the code object, so it is compiled)."""
    required, _ = signature_args(function)
    if names == required:
        return function
    if not all(name.isidentifier() for name in names):
        raise ValueError(f"event arguments must be identifiers, got {names!r}")
    params = ", ".join(names)
    generator = inspect.isgeneratorfunction(function) or inspect.isgeneratorfunction(getattr(function, "__func__", None))
    # A wrapper stays a generator function: pluggy checks that it is one.
    body = f"return (yield from function({params}))" if generator else f"return function({params})"
    namespace: Dict[str, Any] = {"function": function}
    exec(f"def call({params}):\n    {body}\n", namespace)  # noqa: S102  (identifiers checked above)
    call = namespace["call"]
    call.__name__ = call.__qualname__ = getattr(function, "__name__", "hook")
    call.__wrapped_hook__ = function  # for readers of tracebacks and tools
    return call


def split_faces(name: str, plugin: Any, entries: Sequence[HookEntry]) -> Tuple[Face, Optional[Face]]:
    """The main face (every implementation but ``trylast`` ones) and the trylast face (``None`` if it has none)."""
    main = [e for e in entries if not e.opts.get("trylast")]
    last = [e for e in entries if e.opts.get("trylast")]
    trylast = Face(name + TRYLAST_SUFFIX, name, plugin, last) if last else None
    return Face(name, name, plugin, main), trylast
