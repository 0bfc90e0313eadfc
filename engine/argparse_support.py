"""The seed's argparse workflow: command-line flags made from a signature and its docstring.

``Trainer.add_argparse_args`` / ``from_argparse_args`` / ``parse_argparser`` /
``default_attributes`` delegate here. The same machinery turns a model's ``__init__``
into flags for ``python -m engine fit`` (:func:`add_signature_args`).

A flag's type comes from the argument's annotation (or, without one, from its default):

=====================================  ====================================================
annotation                             accepted on the command line
=====================================  ====================================================
``bool``                               ``--flag`` (True), ``--flag true``, ``--flag no``...
``Union[int, bool]``                   the above, or an int (``--fast_dev_run 3``)
``int`` / ``float`` / ``str``          that type
``Union[int, float]``                  ``10`` is an int (a count), ``0.5`` a float (a fraction)
``Union[int, str]``                    ``16`` is an int, ``bf16-mixed`` a string
``Union[int, str, List[int]]``         ``2`` (a count), ``-1``, ``1,2`` or ``'1, 2'`` (ids)
``Sequence[str]``                      comma-separated: ``a,b``
``Optional[...]``                      also ``none``
``Literal[...]``                       one of its values
``Any`` with a ``None`` default        ``none``, ``true``/``false``, a number or a string
=====================================  ====================================================

Arguments whose value cannot be written on a command line (callbacks, plugin objects,
modules...) get no flag; pass them in code, e.g. ``Trainer.from_argparse_args(args, callbacks=[...])``.
"""
from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

__all__ = [
    "add_argparse_args",
    "from_argparse_args",
    "parse_argparser",
    "default_attributes",
    "init_parameters",
    "init_arguments_and_types",
    "add_signature_args",
    "docstring_args",
    "str_to_bool",
]

_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}
_NONE = {"none", "null"}
_INT = re.compile(r"^[+-]?\d+$")


def str_to_bool(value: str) -> bool:
    """``'true'``/``'yes'``/``'1'``... -> True, ``'false'``/``'no'``/``'0'``... -> False (any case)."""
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {value!r}")


# ----------------------------------------------------------------------------------------
# signatures and docstrings
# ----------------------------------------------------------------------------------------


def init_parameters(cls: type) -> List[inspect.Parameter]:
    """The named ``__init__`` arguments of ``cls``, following ``**kwargs`` up the class hierarchy.

    A subclass ``def __init__(self, extra=1, **kwargs)`` of ``Trainer`` thus keeps every
    ``Trainer`` flag.
    """
    params: Dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        forwards = False
        for p in list(inspect.signature(init).parameters.values())[1:]:  # skip self
            if p.kind is p.VAR_KEYWORD:
                forwards = True
            elif p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
                params.setdefault(p.name, p)
        if not forwards:
            break
    return list(params.values())


def _type_hints(cls: type) -> Dict[str, Any]:
    """Resolved annotations of every ``__init__`` in the MRO (string annotations evaluated)."""
    hints: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            hints.update(typing.get_type_hints(init))
        except Exception:  # an annotation naming something not importable: use the raw one
            hints.update(getattr(init, "__annotations__", {}))
    return hints


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Keyword Args|Keyword Arguments)\s*:\s*$")
_ENTRY = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def docstring_args(obj: Any) -> Dict[str, str]:
    """Argument descriptions from the Google-style ``Args:`` sections of ``obj`` (and its ``__init__``).

    For a class, its bases are read too (a subclass inherits its parent's descriptions).
    """
    texts: List[str] = []
    for klass in (obj.__mro__ if inspect.isclass(obj) else (obj,)):
        if klass is object:
            continue
        texts.append(inspect.getdoc(klass) or "")
        init = getattr(klass, "__dict__", {}).get("__init__")
        if init is not None:
            texts.append(inspect.getdoc(init) or "")
    found: Dict[str, str] = {}
    for text in texts:
        for name, desc in _parse_args_section(text).items():
            found.setdefault(name, desc)
    return found


def _parse_args_section(doc: str) -> Dict[str, str]:
    result: Dict[str, str] = {}
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        if not _SECTION.match(lines[i]):
            i += 1
            continue
        i += 1
        entry_indent: Optional[int] = None
        current: Optional[str] = None
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if entry_indent is None:
                entry_indent = indent
            if indent < entry_indent or (indent == 0 and _SECTION.match(line)):
                break  # the section ended
            match = _ENTRY.match(line)
            if indent == entry_indent and match:
                current = match.group(2).lstrip("*")
                result[current] = match.group(4).strip()
            elif current is not None:  # a continuation line
                result[current] = (result[current] + " " + line.strip()).strip()
            i += 1
    return result


# ----------------------------------------------------------------------------------------
# annotation -> what the command line accepts
# ----------------------------------------------------------------------------------------

_SCALARS = (bool, int, float, str)
_BY_NAME = {t.__name__: t for t in _SCALARS}
# `Optional[int]` and, from Python 3.10, `int | None`.
_UNIONS = (typing.Union, getattr(types, "UnionType", typing.Union))


def _kinds(annotation: Any, default: Any) -> Tuple[set, bool, Tuple[Any, ...]]:
    """(kinds the flag accepts, whether ``none`` is accepted, Literal choices).

    Kinds are ``bool``, ``int``, ``float``, ``str``, ``"ints"`` (a list of ints),
    ``"strs"`` (a list of strings) and ``"literal"`` (anything that reads like a value).
    An empty set means the argument cannot come from a command line.
    """
    kinds: set = set()
    choices: Tuple[Any, ...] = ()
    optional = default is None

    def visit(tp: Any) -> None:
        nonlocal optional, choices
        origin = typing.get_origin(tp)
        if tp is type(None) or tp is None:
            optional = True
        elif origin in _UNIONS:
            for arg in typing.get_args(tp):
                visit(arg)
        elif origin is typing.Literal:
            choices = typing.get_args(tp)
            kinds.update(type(c) for c in choices if type(c) in _SCALARS)
        elif tp in _SCALARS:
            kinds.add(tp)
        elif origin is not None and _is_sequence_origin(origin):
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            if args and all(a is int for a in args):
                kinds.add("ints")
            elif args and all(a is str for a in args):
                kinds.add("strs")
        elif isinstance(tp, str) and tp in _BY_NAME:  # an annotation that could not be resolved
            kinds.add(_BY_NAME[tp])
        elif tp is Any or tp is inspect.Parameter.empty or tp is object or isinstance(tp, str):
            # No useful annotation: go by the default value.
            if isinstance(default, _SCALARS):
                kinds.add(type(default))
            elif default is None:
                kinds.add("literal")
        # anything else (Dict, Callable, a class...) is not a command-line value

    visit(annotation)
    return kinds, optional, choices


def _is_sequence_origin(origin: Any) -> bool:
    import collections.abc as abc

    return isinstance(origin, type) and issubclass(origin, (abc.Sequence, abc.Set)) and origin is not str


def _value_parser(kinds: set, optional: bool, choices: Tuple[Any, ...]) -> Callable[[str], Any]:
    """A function from one command-line string to a value of one of ``kinds``."""

    def parse(text: str) -> Any:
        raw = text.strip()
        low = raw.lower()
        if optional and low in _NONE:
            return None
        if choices:
            for choice in choices:
                if raw == str(choice) or (isinstance(choice, bool) and low in (_TRUE if choice else _FALSE)):
                    return choice
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(map(str, choices))}; got {text!r}")
        if bool in kinds and low in _TRUE | _FALSE and not (int in kinds and _INT.match(raw)):
            return str_to_bool(raw)
        if "literal" in kinds and low in ("true", "false"):
            return low == "true"
        if "ints" in kinds and ("," in raw or (int not in kinds and _INT.match(raw))):
            # A comma means a list of ids (`--gpus 1,2`), never a string that happens to hold one;
            # where no plain int is accepted, `5` is the list `[5]`.
            parts = [p.strip() for p in raw.split(",") if p.strip()]
            if parts and all(_INT.match(p) for p in parts):
                return [int(p) for p in parts]
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of ints; got {text!r}")
        if (int in kinds or "literal" in kinds) and _INT.match(raw):
            return int(raw)
        if float in kinds or "literal" in kinds:
            try:
                return float(raw)
            except ValueError:
                pass
        if str in kinds or "literal" in kinds:
            return text
        if "strs" in kinds:
            return [p.strip() for p in raw.split(",") if p.strip()]
        raise argparse.ArgumentTypeError(f"expected {_describe(kinds, optional)}; got {text!r}")

    parse.__name__ = _describe(kinds, optional)  # argparse names the type in its errors
    return parse


def _describe(kinds: set, optional: bool) -> str:
    order = [(bool, "bool"), (int, "int"), (float, "float"), ("ints", "int,int,..."), (str, "str"),
             ("strs", "str,str,..."), ("literal", "value")]
    names = [label for kind, label in order if kind in kinds]
    if optional and "literal" not in kinds:
        names.append("none")
    return "|".join(names)


def argument_kwargs(annotation: Any, default: Any, help_text: str = "") -> Optional[Dict[str, Any]]:
    """``add_argument`` keyword arguments for one signature parameter, or ``None`` to skip it."""
    required = default is inspect.Parameter.empty
    kinds, optional, choices = _kinds(annotation, None if required else default)
    if required:
        optional = False
    if not kinds:
        return None
    kwargs: Dict[str, Any] = {
        "type": _value_parser(kinds, optional, choices),
        "metavar": _describe(kinds, optional).upper() if not choices else "{" + ",".join(map(str, choices)) + "}",
        "help": _help(help_text, default),
    }
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if bool in kinds:
        # `--flag` alone means True; `--flag false` spells the opposite.
        kwargs["nargs"] = "?"
        kwargs["const"] = True
    return kwargs


def _help(text: str, default: Any) -> str:
    # Docstrings use reST literals; a terminal reads better without the backquotes.
    text = (text or "").replace("``", "").replace("%", "%%")
    shown = "required" if default is inspect.Parameter.empty else f"default: {default!r}".replace("%", "%%")
    return f"{text} ({shown})" if text else f"({shown})"


def add_signature_args(
    parser: Any,
    cls: type,
    *,
    title: Optional[str] = None,
    description: Optional[str] = None,
    skip: Iterable[str] = (),
) -> List[str]:
    """Add one ``--name`` flag per representable ``__init__`` argument of ``cls``; return their names.

    Flags ``parser`` already has (the user's own definition wins) and names in ``skip`` are left out.
    With ``title``, the flags go into an argument group of that title.
    """
    hints = _type_hints(cls)
    docs = docstring_args(cls)
    existing = {opt for action in parser._actions for opt in action.option_strings}
    target = parser.add_argument_group(title, description) if title else parser
    added: List[str] = []
    skip = set(skip)
    for param in init_parameters(cls):
        flag = f"--{param.name}"
        if param.name in skip or flag in existing:
            continue
        annotation = hints.get(param.name, param.annotation)
        kwargs = argument_kwargs(annotation, param.default, docs.get(param.name, ""))
        if kwargs is None:
            continue
        target.add_argument(flag, dest=param.name, **kwargs)
        added.append(param.name)
    return added


# ----------------------------------------------------------------------------------------
# the Trainer classmethods
# ----------------------------------------------------------------------------------------


def add_argparse_args(cls: type, parent_parser: argparse.ArgumentParser, *, use_argument_group: bool = True,
                      **_: Any) -> argparse.ArgumentParser:
    """Add one ``--flag`` per ``cls.__init__`` argument that a command line can express.

    With ``use_argument_group=True`` (default) the flags go into a group of ``parent_parser``, which
    is returned: that works for parsers made with ``add_help=False`` and for later use in
    ``ArgumentParser(parents=[...])``. With ``False``, a new parser inheriting from
    ``parent_parser`` is returned (the seed's behaviour).
    """
    if not isinstance(parent_parser, argparse.ArgumentParser):
        raise TypeError(f"{cls.__name__}.add_argparse_args expects an argparse.ArgumentParser, "
                        f"got {type(parent_parser).__name__}.")
    parser = parent_parser
    if not use_argument_group:
        parser = argparse.ArgumentParser(parents=[parent_parser], add_help=False)
    add_signature_args(
        parser, cls, title=cls.__name__,
        description=f"Flags of {cls.__module__}.{cls.__qualname__} (documented in its docstring).",
    )
    return parser


def _as_dict(args: Any) -> Dict[str, Any]:
    if isinstance(args, argparse.Namespace):
        return vars(args)
    if isinstance(args, dict):
        return args
    raise TypeError(f"expected an argparse.Namespace or a dict, got {type(args).__name__}")


def from_argparse_args(cls: type, args: Any, **overrides: Any) -> Any:
    """Build ``cls`` from the Namespace (or dict) ``args``; keys that are not arguments are ignored.

    ``overrides`` win over ``args`` and are passed on as they are (so ``callbacks=[...]`` or a
    checkpoint callback instance can be given in code).
    """
    if isinstance(args, argparse.ArgumentParser):
        args = parse_argparser(cls, args)
    params = _as_dict(args)
    valid = {p.name for p in init_parameters(cls)}
    kwargs = {k: v for k, v in params.items() if k in valid}
    kwargs.update(overrides)
    return cls(**kwargs)


def parse_argparser(cls: type, arg_parser: Any) -> argparse.Namespace:
    """Parse ``sys.argv`` with ``arg_parser`` (or take a ready Namespace); a bare boolean flag becomes True.

    Flags made by :func:`add_argparse_args` already turn ``--flag`` into True; this also covers
    ``nargs='?'`` boolean flags a user defined without ``const``.
    """
    args = arg_parser.parse_args() if isinstance(arg_parser, argparse.ArgumentParser) else arg_parser
    hints = _type_hints(cls)
    params = {p.name: p for p in init_parameters(cls)}
    values = dict(_as_dict(args))
    for name, value in values.items():
        param = params.get(name)
        if value is None and param is not None and isinstance(param.default, bool):
            kinds, _, _ = _kinds(hints.get(name, param.annotation), param.default)
            if bool in kinds:
                values[name] = True
    return argparse.Namespace(**values)


def init_arguments_and_types(cls: type) -> List[Tuple[str, Tuple[Any, ...], Any]]:
    """``(name, types, default)`` for every ``cls.__init__`` argument, as Lightning 0.9's
    ``get_init_arguments_and_types``: ``types`` holds a ``Union``'s (or ``Optional``'s) members, else the one
    annotation (``inspect.Parameter.empty`` when there is none); ``default`` is ``inspect.Parameter.empty``
    for an argument without one."""
    hints = _type_hints(cls)
    rows = []
    for p in init_parameters(cls):
        annotation = hints.get(p.name, p.annotation)
        members = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
        rows.append((p.name, tuple(members) or (annotation,), p.default))
    return rows


def default_attributes(cls: type) -> Dict[str, Any]:
    """Every ``cls.__init__`` argument with its default (``inspect.Parameter.empty`` if it has none)."""
    return {p.name: p.default for p in init_parameters(cls)}
