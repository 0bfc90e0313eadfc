"""Every event the engine and the built-in plugins read from the dispatch exists.

``Dispatch`` has no ``__getattr__`` (it would keep CPython from specialising the loop's
``hooks.<event>`` reads), so a misspelt event read is an ``AttributeError`` only when that
line runs. This test reads the source instead: every ``<...>.hooks.<name>``,
``<...>.dispatch.<name>``, and ``<local>.<name>`` where the local was assigned one of those,
must name an event or an attribute of ``Dispatch`` itself.
"""
from __future__ import annotations

import ast
import pathlib
from typing import List, Set

import pytest

from engine.dispatch import Dispatch
from engine.registry import PluginRegistry

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("engine/*.py"), *ROOT.glob("plugins/*.py")])


def _dispatch_reads(source: str) -> List[ast.Attribute]:
    """The attribute reads made on a dispatch in ``source``."""
    tree = ast.parse(source)
    reads: List[ast.Attribute] = []

    def is_dispatch(node: ast.AST, locals_: Set[str]) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in ("hooks", "dispatch")
        return isinstance(node, ast.Name) and node.id in locals_

    for scope in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        body = list(ast.walk(scope))
        locals_ = {
            target.id
            for node in body if isinstance(node, ast.Assign) and is_dispatch(node.value, set())
            for target in node.targets if isinstance(target, ast.Name)
        }
        reads.extend(node for node in body
                     if isinstance(node, ast.Attribute) and is_dispatch(node.value, locals_))
    return reads


def _unknown(source: str, known: Set[str]) -> Set[str]:
    return {read.attr for read in _dispatch_reads(source) if read.attr not in known}


@pytest.fixture(scope="module")
def known() -> Set[str]:
    registry = PluginRegistry()
    return set(vars(registry.dispatch)) | {n for n in dir(Dispatch) if not n.startswith("__")}


def test_the_checker_finds_a_misspelt_event(known: Set[str]) -> None:
    source = (
        "def f(trainer):\n"
        "    hooks = trainer.hooks\n"
        "    if hooks.on_trian_batch_end is not None:\n"
        "        trainer.registry.dispatch.on_train_epoch_edn(trainer, None)\n"
        "    trainer.hooks.on_train_start\n"
    )
    assert _unknown(source, known) == {"on_trian_batch_end", "on_train_epoch_edn"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_event_read_from_the_dispatch_exists(path: pathlib.Path, known: Set[str]) -> None:
    unknown = _unknown(path.read_text(), known)
    assert not unknown, f"{path.name} reads events that do not exist: {sorted(unknown)}"


def test_calling_an_unknown_event_by_name_suggests_the_nearest() -> None:
    registry = PluginRegistry()
    with pytest.raises(AttributeError, match=r"No event named 'on_trian_start'.*on_train_start"):
        registry.dispatch.call("on_trian_start", None, None)
