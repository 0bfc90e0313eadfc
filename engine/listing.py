"""``python -m engine plugins``: which plugins a Trainer registers, and who answers each event.

The same information is available from Python::

    from engine import Trainer
    from engine.listing import describe, format_report

    report = describe(Trainer())          # or describe(trainer.plugin_manager)
    report.plugins                         # [PluginInfo(name, origin, tier, hooks), ...]
    report.events["on_train_epoch_end"]    # [("my_callback", ""), ..., ("checkpoint", "trylast")]
    print(format_report(report))
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

from hookloop.engine.registry import PluginRegistry


@dataclass
class PluginInfo:
    """One registered plugin: its name, where it came from, its tier and the events it implements."""

    name: str
    origin: str
    tier: str
    hooks: List[str]


@dataclass
class PluginReport:
    """Every registered plugin, and for each event its implementations in call order.

    ``events`` maps an event name to ``[(plugin name, marker), ...]`` in call order, where
    ``marker`` is ``"wrapper"``, ``"tryfirst"``, ``"trylast"`` or ``""``. Events with no
    implementation are left out; ``firstresult`` lists the behaviour hooks (first
    non-``None`` result wins).
    """

    plugins: List[PluginInfo]
    events: Dict[str, List[Tuple[str, str]]]
    firstresult: List[str] = field(default_factory=list)


def describe(source: Any) -> PluginReport:
    """Build a :class:`PluginReport` from a ``Trainer`` or a :class:`~engine.registry.PluginRegistry`."""
    registry: PluginRegistry = source if isinstance(source, PluginRegistry) else source.registry
    plugins = [PluginInfo(r.name, r.origin, r.tier, list(r.hooks)) for r in registry.records()]
    events: Dict[str, List[Tuple[str, str]]] = {}
    firstresult: List[str] = []
    for event in registry.events():
        order = registry.call_order(event)
        if order:
            events[event] = order
        spec = getattr(registry.hook, event).spec
        if spec is not None and spec.opts.get("firstresult"):
            firstresult.append(event)
    return PluginReport(plugins, events, firstresult)


def format_report(report: PluginReport) -> str:
    """The text ``python -m engine plugins`` prints for ``report``."""
    lines = [f"plugins ({len(report.plugins)}), in registration order:"]
    width = max((len(p.name) for p in report.plugins), default=0)
    for info in report.plugins:
        lines.append(f"  {info.name:<{width}}  {info.origin}")
    lines.append("")
    lines.append("events, each with its implementations in call order:")
    for event, order in report.events.items():
        kind = "  (behaviour: first non-None result wins)" if event in report.firstresult else ""
        lines.append(f"  {event}{kind}")
        for position, (name, marker) in enumerate(order, 1):
            lines.append(f"    {position}. {name}" + (f"  [{marker}]" if marker else ""))
    lines.append("")
    lines.append("Order: tryfirst, then plain, then trylast; inside each, lower __engine_order__ first, then "
                 "callbacks, code plugins, entry points, the LightningModule, built-ins. Wrappers wrap all.")
    lines.append("The LightningModule's own hooks join at fit/validate/test time (as 'lightning_module').")
    return "\n".join(lines)


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plugins`` subcommand to ``python -m engine``'s subparsers."""
    parser = subparsers.add_parser(
        "plugins",
        help="list the plugins a default Trainer registers and each event's implementations in call order",
        description="List every plugin a default Trainer registers (built-ins, entry points named "
                    "in the 'engine.plugins' group) with its origin, then each event's implementations "
                    "in call order. Set ENGINE_DISABLE_PLUGIN_AUTOLOAD=1 to leave entry points out.",
    )
    parser.add_argument("--disable", action="append", default=[], metavar="NAME",
                        help="leave out a built-in or entry-point plugin (repeatable), like "
                             "Trainer(disable_plugins=[...])")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, rest: Sequence[str], parser: argparse.ArgumentParser) -> int:
    """Handler of ``python -m engine plugins``: print the report of a default ``Trainer``."""
    if rest:
        parser.error(f"plugins: unrecognized arguments: {' '.join(rest)}")
    from hookloop.engine.errors import MisconfigurationException
    from hookloop.engine.trainer import Trainer

    try:
        trainer = Trainer(disable_plugins=list(args.disable))
    except MisconfigurationException as exc:  # a broken entry point, an unknown name: no traceback
        parser.exit(2, f"hookloop plugins: error: {exc}\n")
    print(format_report(describe(trainer)))
    return 0


__all__ = ["PluginInfo", "PluginReport", "describe", "format_report", "add_subcommand", "run"]
