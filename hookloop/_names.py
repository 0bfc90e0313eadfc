"""One module object per file, whichever name imported it.

hookloop's code lives in two directories, ``engine/`` and ``plugins/``, that users import by those
short names (``from engine import Trainer``, ``from plugins import ModelCheckpoint``). Short names
are easy to shadow: a user's own ``engine.py`` or ``plugins/`` folder next to their script comes
first on ``sys.path``. So hookloop's own code never imports them by the short names. Its canonical
names are ``hookloop.engine`` and ``hookloop.plugins``, found by :class:`PackageFinder` from this
directory's location, not through ``sys.path``.

The short names stay aliases of the canonical modules, never second copies: when ``engine`` (or
``plugins``) is hookloop's, its ``__init__`` hands the name over with :func:`settle`, and
:class:`PackageFinder` answers ``engine.x`` with the module already loaded as ``hookloop.engine.x``
(so ``engine.trainer.Trainer is hookloop.engine.trainer.Trainer``). A short name that is the
user's own module is left alone.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Optional, Sequence

#: The directory holding ``engine/``, ``plugins/`` and ``hookloop/`` (the source tree or site-packages).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: hookloop's packages that users import by a short name.
SHORT_NAMES = ("engine", "plugins")


def settle(name: str) -> None:
    """Called first by ``engine/__init__.py`` and ``plugins/__init__.py`` with their ``__name__``.

    Run under the short name, it makes that name the canonical package (loading it first), so the
    import statement that got here returns the canonical module; under the canonical name it does
    nothing.
    """
    if name in SHORT_NAMES:
        sys.modules[name] = importlib.import_module(f"hookloop.{name}")


class _AliasLoader(importlib.abc.Loader):
    """Loads ``engine.x`` as the module ``hookloop.engine.x`` (imported now if it is not yet)."""

    def __init__(self, canonical: str) -> None:
        self.canonical = canonical

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.canonical)
        spec.loader_state = module.__spec__  # the import system overwrites __spec__ before exec_module
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its canonical name; give it back its own spec (relative imports use it).
        module.__spec__ = module.__spec__.loader_state


class PackageFinder(importlib.abc.MetaPathFinder):
    """Finds ``hookloop.engine``/``hookloop.plugins`` next to ``hookloop/``, and aliases ``engine.*``/``plugins.*``."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        """A spec for a canonical package or an alias of a canonical submodule; ``None`` for anything else."""
        head, _, rest = fullname.partition(".")
        if head == "hookloop" and rest in SHORT_NAMES:
            init = os.path.join(ROOT, rest, "__init__.py")
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[os.path.dirname(init)])
        if head in SHORT_NAMES and rest and not rest.endswith("__main__") and self._is_ours(head):
            return importlib.util.spec_from_loader(fullname, _AliasLoader(f"hookloop.{fullname}"))
        return None

    @staticmethod
    def _is_ours(short: str) -> bool:
        """True when the short name is (already) the canonical package, not a user's module of that name."""
        module = sys.modules.get(short)
        return module is not None and module is sys.modules.get(f"hookloop.{short}")


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(finder, PackageFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, PackageFinder())
