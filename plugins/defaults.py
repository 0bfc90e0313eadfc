"""The built-in plugins a ``Trainer`` registers, by name, built from its flags.

Order matters: pluggy calls later registrations first, so the list runs from the plugin
called last to the one called first among built-ins (``metrics`` reduces values before
loggers and the progress bar read them).
"""
from __future__ import annotations

from typing import Any, List, Tuple

from plugins.data import DataPlugin
from plugins.device import DevicePlugin
from plugins.launch import LocalLauncher
from plugins.metrics import MetricsPlugin
from plugins.model_hooks import ModelHooksPlugin
from plugins.optimization import OptimizationPlugin


def default_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``(name, plugin)`` for every built-in this trainer's flags ask for."""
    plugins: List[Tuple[str, Any]] = [
        ("launcher", LocalLauncher()),
        ("data", DataPlugin()),
        ("device", DevicePlugin()),
        ("optimization", OptimizationPlugin()),
        ("model_hooks", ModelHooksPlugin()),
    ]
    plugins.append(("metrics", MetricsPlugin()))
    return plugins
