"""``python -m engine fit|validate|test MODULE:CLASS [flags]``: run a LightningModule from the command line.

The flags are the Trainer's (:func:`engine.argparse_support.add_argparse_args`) and the
model's: its ``add_model_specific_args(parent_parser)`` static method if it has one (the
seed's convention), else one flag per ``__init__`` argument, typed from its annotation or
default. ``MODULE`` is a dotted module (``examples.digits``, found from the working
directory too) or a file (``examples/digits.py``); ``:CLASS`` may be left out when the
module defines exactly one LightningModule.

Examples::

    hookloop fit examples/digits.py:DigitsClassifier --max_epochs 3 --lr 0.01
    hookloop test examples/digits.py:DigitsClassifier --ckpt_path lightning_logs/version_0/checkpoints/x.ckpt

Wrong flags, flag values the Trainer or a plugin refuses (they raise an error with a ``flag``
attribute, e.g. :class:`engine.errors.FlagError`), a ``--ckpt_path`` that is no checkpoint of the
model, or a wrong ``MODULE:CLASS`` end with an argparse error (exit status 2), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any, List, Optional, Sequence, Set, Tuple

from hookloop.engine.argparse_support import add_signature_args, init_parameters

STAGES = {
    "fit": "train a LightningModule (then print where the logs and the best checkpoint went)",
    "validate": "run one validation epoch (optionally from --ckpt_path) and print the metrics",
    "test": "run the test loop (optionally from --ckpt_path) and print the metrics",
}

# `fit --ckpt_path last` and the like are resolved by the checkpoint plugin, not files here.
_SPECIAL_CKPT = {"last", "best", "hpc"}


class TargetError(Exception):
    """``MODULE:CLASS`` could not be resolved; the message names what is missing."""


# ----------------------------------------------------------------------------------------
# the subcommands
# ----------------------------------------------------------------------------------------


def add_subcommands(subparsers: Any) -> None:
    """Add ``fit``, ``validate`` and ``test`` to the ``python -m engine`` subparsers.

    Each subcommand parses its own flags (they depend on the model class), so its
    subparser takes nothing and its handler gets the rest of the command line.
    """
    for stage, summary in STAGES.items():
        sub = subparsers.add_parser(stage, help=summary, description=summary, add_help=False)
        sub.set_defaults(run=_handler(stage))


def _handler(stage: str) -> Any:
    def run(args: argparse.Namespace, rest: List[str], parser: argparse.ArgumentParser) -> int:
        return run_stage(stage, rest, prog=f"{parser.prog} {stage}")

    run.__name__ = f"run_{stage}"
    run.__doc__ = f"Handle ``{stage}``: parse ``rest`` with the Trainer's and the model's flags, then run."
    return run


def run_stage(stage: str, argv: Sequence[str], prog: Optional[str] = None) -> int:
    """Parse ``argv`` (``MODULE:CLASS`` and flags) for ``stage``, build model and Trainer, run; return 0.

    Command-line mistakes exit with status 2 through ``argparse``.
    """
    argv = list(argv)
    prog = prog or f"hookloop {stage}"
    target_spec = _probe_target(stage, argv, prog)
    base = _base_parser(stage, prog)
    if target_spec is None:
        _add_trainer_args(base)
        base.parse_args(argv)  # prints help, or says MODULE:CLASS is missing / what is wrong; exits
        base.error("the following arguments are required: MODULE:CLASS")  # not reached in practice
    try:
        model_cls = resolve_target(target_spec)
    except TargetError as exc:
        base.error(str(exc))
    parser, model_dests = _add_model_args(base, model_cls)
    _add_trainer_args(parser)
    args = parser.parse_args(argv)
    _check_ckpt_path(parser, args.ckpt_path)
    try:
        return _run(stage, parser, argv, args, model_cls, model_dests, prog)
    except Exception as exc:
        # A flag value the Trainer or a plugin refused (FlagError), or a --ckpt_path file that is no
        # checkpoint of this model: a usage error naming it, not a traceback. Anything else is a bug
        # in the run and keeps its traceback.
        flag = getattr(exc, "flag", None)
        if not isinstance(flag, str):
            raise
        parser.error(_flag_message(parser, flag, exc))
    return 2  # not reached: parser.error exits


def _run(stage: str, parser: argparse.ArgumentParser, argv: List[str], args: argparse.Namespace, model_cls: type,
         model_dests: Set[str], prog: str) -> int:
    from hookloop.engine import Trainer, seed_everything

    if args.seed_everything is not None:
        seed_everything(args.seed_everything)
    values = vars(args)
    init_names = {p.name for p in init_parameters(model_cls)}
    model_kwargs = {k: values[k] for k in values if k in model_dests or k in init_names}
    trainer = Trainer.from_argparse_args(args)
    if stage == "fit":
        model = model_cls(**model_kwargs)
        trainer.fit(model, ckpt_path=args.ckpt_path)
        _report_fit(trainer, prog)
        return 0
    if args.ckpt_path and callable(getattr(model_cls, "load_from_checkpoint", None)):
        # Hyperparameters come from the checkpoint; only flags given on the command line override them.
        given = _given_dests(parser, argv)
        overrides = {k: v for k, v in model_kwargs.items() if k in given}
        try:
            model = model_cls.load_from_checkpoint(args.ckpt_path, **overrides)
        except Exception as exc:
            if getattr(exc, "path", None) is not None:  # the checkpoint plugin's error about this file
                exc.flag = "ckpt_path"  # type: ignore[attr-defined]
            raise
        results = getattr(trainer, stage)(model)
    else:
        model = model_cls(**model_kwargs)
        results = getattr(trainer, stage)(model, ckpt_path=args.ckpt_path)
    _report_metrics(trainer, results, prog)
    return 0


def _flag_message(parser: argparse.ArgumentParser, flag: str, exc: BaseException) -> str:
    """``argument --flag: <the error on one line>`` (or the error alone for a flag with no option here)."""
    message = " ".join(str(exc).split())
    option = f"--{flag}"
    if any(option in action.option_strings for action in parser._actions):
        return f"argument {option}: {message}"
    return message


def _base_parser(stage: str, prog: str, probe: bool = False) -> argparse.ArgumentParser:
    cls = _ProbeParser if probe else argparse.ArgumentParser
    parser = cls(
        prog=prog,
        # The full list of flags is long: the usage line (printed with every error) stays short.
        usage=f"{prog} MODULE:CLASS [--ckpt_path PATH] [--seed_everything INT] [model flags] [Trainer flags]",
        description=STAGES[stage][0].upper() + STAGES[stage][1:] + ". Flags come from the Trainer and from the model class.",
        add_help=not probe,
        allow_abbrev=False,  # a model flag must never be taken for the prefix of a Trainer flag
    )
    parser.add_argument(
        "_target", metavar="MODULE:CLASS", nargs="?" if probe else None,  # a dest no model flag would use
        help="the LightningModule: a dotted module or a .py file, then ':' and the class name",
    )
    ckpt_help = ("checkpoint to resume training from" if stage == "fit"
                 else "checkpoint whose weights to evaluate (default: the freshly built model)")
    parser.add_argument("--ckpt_path", default=None, metavar="PATH", help=ckpt_help)
    parser.add_argument("--seed_everything", type=int, default=None, metavar="INT",
                        help="seed Python, NumPy and torch before building the model")
    return parser


def _add_trainer_args(parser: argparse.ArgumentParser) -> None:
    from hookloop.engine import Trainer

    Trainer.add_argparse_args(parser)


class _ProbeFailed(Exception):
    """The probe parser met a mistake; the real parser reports it."""


class _ProbeParser(argparse.ArgumentParser):
    """A parser that raises instead of exiting: used only to find ``MODULE:CLASS`` among the flags."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _ProbeFailed(message)


def _probe_target(stage: str, argv: List[str], prog: str) -> Optional[str]:
    """``MODULE:CLASS`` from ``argv``: Trainer flags are known here, so their values are not taken for it."""
    probe = _base_parser(stage, prog, probe=True)
    _add_trainer_args(probe)
    try:
        known, _ = probe.parse_known_args(argv)
    except _ProbeFailed:
        return None  # the real parser will report the mistake
    return known._target


def _add_model_args(parser: argparse.ArgumentParser, model_cls: type) -> Tuple[argparse.ArgumentParser, Set[str]]:
    """Let the model add its flags; return the parser to use and the destinations the model added."""
    before = {a.dest for a in parser._actions}
    hook = getattr(model_cls, "add_model_specific_args", None)
    name = model_cls.__qualname__
    if callable(hook):
        required = [p for p in inspect.signature(hook).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        try:
            # The seed's template model took `(parent_parser, root_dir)`; root_dir is the working directory.
            result = hook(parser, os.getcwd()) if len(required) >= 2 else hook(parser)
        except argparse.ArgumentError as exc:
            parser.error(f"{name}.add_model_specific_args: {exc}")
        if result is None:  # it added to the parser in place and returned nothing
            result = parser
        if not isinstance(result, argparse.ArgumentParser):
            parser.error(f"{name}.add_model_specific_args must return an ArgumentParser, "
                         f"got {type(result).__name__}")
        # The seed's pattern returns ArgumentParser(parents=[parent]): keep this command's name and text.
        result.prog, result.usage, result.description = parser.prog, parser.usage, parser.description
        result.allow_abbrev = False
    else:
        result = parser
        doc = (inspect.getdoc(model_cls) or "").split("\n\n")[0].replace("%", "%%")
        added = add_signature_args(parser, model_cls, title=name, description=doc or None)
        for p in init_parameters(model_cls):
            if p.default is inspect.Parameter.empty and p.name not in added:
                parser.error(f"{name}.__init__ argument {p.name!r} has no default and no command-line type; "
                             f"give it a default or define {name}.add_model_specific_args")
    return result, {a.dest for a in result._actions} - before


def _given_dests(parser: argparse.ArgumentParser, argv: List[str]) -> Set[str]:
    """Destinations of the flags written on the command line (``--name value`` or ``--name=value``)."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(arg == option or arg.startswith(option + "=") for arg in argv):
                given.add(action.dest)
    return given


def _check_ckpt_path(parser: argparse.ArgumentParser, path: Optional[str]) -> None:
    if not path or path in _SPECIAL_CKPT:
        return
    if os.path.isdir(path):
        parser.error(f"--ckpt_path {path!r}: is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        parser.error(f"--ckpt_path {path!r}: no such file")


def _report_fit(trainer: Any, prog: str) -> None:
    if not trainer.is_global_zero:  # under DDP every process runs this command; one reports
        return
    logs = trainer.log_dir if trainer.logger is not None else "none (logger disabled)"
    print(f"{prog}: logs: {logs}")
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    print(f"{prog}: best checkpoint: {best or 'none saved'}")


def _report_metrics(trainer: Any, results: Any, prog: str) -> None:
    if not trainer.is_global_zero:
        return
    for idx, metrics in enumerate(results or []):
        where = f" (dataloader {idx})" if len(results) > 1 else ""
        shown = "  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items()))
        print(f"{prog}{where}: {shown or 'no metrics logged'}")


# ----------------------------------------------------------------------------------------
# MODULE:CLASS
# ----------------------------------------------------------------------------------------


def resolve_target(spec: str) -> type:
    """The LightningModule class named by ``MODULE:CLASS`` (or ``path/to/file.py:CLASS``).

    Without ``:CLASS`` the module must define exactly one LightningModule subclass.
    Raises :class:`TargetError` naming what could not be found.
    """
    from hookloop.engine.module import LightningModule

    module_part, _, class_part = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not module_part:
        raise TargetError(f"{spec!r}: expected MODULE:CLASS (e.g. examples/digits.py:MyModel)")
    module = _import(module_part)
    if not class_part:
        found = [obj for obj in vars(module).values() if inspect.isclass(obj)
                 and issubclass(obj, LightningModule) and obj.__module__ == module.__name__]
        if len(found) != 1:
            names = ", ".join(sorted(c.__name__ for c in found)) or "none"
            raise TargetError(f"{module_part!r} defines {len(found)} LightningModule classes ({names}); "
                              f"name one as {module_part}:CLASS")
        return found[0]
    obj: Any = module
    for part in class_part.split("."):
        if not hasattr(obj, part):
            from hookloop.engine.errors import did_you_mean

            candidates = [n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, LightningModule)]
            raise TargetError(f"module {module_part!r} has no class {class_part!r}." + did_you_mean(part, candidates))
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, LightningModule)):
        raise TargetError(f"{spec!r} is not a LightningModule subclass (it is {type(obj).__name__} {obj!r})")
    return obj


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name or "/" in name:
        return _import_file(name)
    # Like `python -m`, find modules in the working directory (the console script would not).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise TargetError(f"no module named {name!r} (looked in the working directory and sys.path); "
                              "for a file write path/to/file.py:CLASS") from None
        raise TargetError(f"importing module {name!r} failed: {exc}") from None
    except ImportError as exc:
        raise TargetError(f"importing module {name!r} failed: {exc}") from None


def _import_file(path: str) -> Any:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise TargetError(f"file {path!r} does not exist")
    name = os.path.splitext(os.path.basename(full))[0]
    loaded = sys.modules.get(name)
    if loaded is not None and os.path.abspath(getattr(loaded, "__file__", "") or "") == full:
        return loaded
    # Its sibling files must be importable, as when the file is run as a script.
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise TargetError(f"file {path!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, so that pickling and dataclasses find it
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise TargetError(f"importing file {path!r} failed: {exc}") from None
    except BaseException:
        del sys.modules[name]
        raise
    return module
