"""What the rest of hookloop derives from the hook catalogue (:mod:`hookloop.engine.hookspecs`), written once there.

An event marked ``@user_hook`` is a hook users override by name, as in Lightning:

* :func:`callback_hooks` — the ``engine.Callback`` methods: event name -> the event's arguments;
* :func:`module_hooks` — the ``engine.LightningModule`` hooks: event name -> the module method's
  arguments (the event's after ``trainer, pl_module``); the module's adapter forwards each one the
  module overrides (``plugins/model_hooks.py``);
* :func:`add_noop_hooks` gives ``Callback`` and ``LightningModule`` their documented no-op methods.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Optional, Tuple

from hookloop.engine import hookspecs
from hookloop.engine.markers import USER_HOOK_ATTRIBUTE

#: The arguments every Lightning hook receives first; module hooks do without them.
_LEADING = ("trainer", "pl_module")


def _spec_args(function: Callable[..., Any]) -> Tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


@functools.lru_cache(maxsize=None)
def _user_hooks(audience: str) -> Dict[str, Tuple[str, ...]]:
    found: Dict[str, Tuple[str, ...]] = {}
    for name in hookspecs.event_names():
        function = getattr(hookspecs, name)
        mark = getattr(function, USER_HOOK_ATTRIBUTE, None)
        if mark is not None and mark[audience]:
            found[name] = _spec_args(function)
    return found


def callback_hooks() -> Dict[str, Tuple[str, ...]]:
    """``event -> arguments`` of every hook an ``engine.Callback`` overrides by name, in catalogue order."""
    return dict(_user_hooks("callback"))


def module_hooks() -> Dict[str, Tuple[str, ...]]:
    """``event -> the module method's arguments`` of every ``LightningModule`` hook, in catalogue order."""
    return dict(_module_hooks())


@functools.lru_cache(maxsize=None)
def _module_hooks() -> Dict[str, Tuple[str, ...]]:
    hooks = {}
    for name, args in _user_hooks("module").items():
        if args[:len(_LEADING)] != _LEADING:
            raise TypeError(f"hookspec {name}{args}: a module hook's event takes (trainer, pl_module, ...) first")
        hooks[name] = args[len(_LEADING):]
    return hooks


@functools.lru_cache(maxsize=None)
def _module_defaults() -> Dict[str, Callable[[Any], None]]:
    defaults = {}
    for name in _module_hooks():
        default = getattr(getattr(hookspecs, name), USER_HOOK_ATTRIBUTE)["module_default"]
        if default is not None:
            defaults[name] = default
    return defaults


def module_defaults() -> Dict[str, Callable[[Any], None]]:
    """``event -> default(module)`` of the module behaviour hooks whose ``LightningModule`` method does something."""
    return dict(_module_defaults())


def spec_summary(event: str) -> str:
    """The first line of ``event``'s hookspec docstring (what it is, when it fires)."""
    doc = inspect.getdoc(getattr(hookspecs, event)) or ""
    return doc.splitlines()[0] if doc else ""


def add_noop_hooks(cls: type, hooks: Dict[str, Tuple[str, ...]], what: str,
                   defaults: Optional[Dict[str, Callable[[Any], None]]] = None) -> None:
    """Give ``cls`` a no-op method per hook (``name -> arguments``) that ``cls`` does not define itself.

    Each takes any arguments (``super().on_x(...)`` works whatever the era's signature), shows the
    event's own in ``help()``, and is documented by the hookspec it stands for. A hook named in
    ``defaults`` does ``defaults[name](self)`` instead of nothing (a module behaviour hook's default).
    """
    for name, args in hooks.items():
        if name in vars(cls):
            continue
        setattr(cls, name, _noop(cls, name, args, what, (defaults or {}).get(name)))


def _noop(cls: type, name: str, args: Tuple[str, ...], what: str,
          default: Optional[Callable[[Any], None]] = None) -> Callable[..., None]:
    if default is None:
        def hook(self: Any, *args_: Any, **kwargs: Any) -> None:
            return None
    else:
        def hook(self: Any, *args_: Any, **kwargs: Any) -> None:
            default(self)

    parameter = inspect.Parameter.POSITIONAL_OR_KEYWORD
    hook.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", parameter)] + [inspect.Parameter(a, parameter) for a in args])
    hook.__name__ = name
    hook.__qualname__ = f"{cls.__qualname__}.{name}"
    hook.__module__ = cls.__module__
    if default is not None:
        does = f"By default: {(default.__doc__ or '').strip().rstrip('.')}; override it in your {what}"
    elif getattr(hookspecs, name).engine_spec.get("firstresult"):
        # A behaviour hook's work is the built-in plugin's until the module overrides the hook.
        does = f"Here a no-op: a built-in plugin does the work, and an override in your {what} replaces it"
    else:
        does = f"A no-op; override it in your {what}"
    hook.__doc__ = f"{spec_summary(name)}\n\n{does}. See :func:`engine.hookspecs.{name}`."
    return hook
