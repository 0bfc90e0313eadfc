"""Packaging: setup.cfg declares what hookloop needs, and the distribution is installed.

Building a fresh virtual environment takes minutes, so CI (``.ci/run``) does that; these
tests check the declarations it relies on and the installed distribution.
"""
from __future__ import annotations

import configparser
import importlib.metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _names(lines: str) -> set:
    """Distribution names of requirement lines (``torch>=2.1`` -> ``torch``)."""
    out = set()
    for line in lines.strip().splitlines():
        name = line.split(";")[0].strip()
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        if name:
            out.add(name.lower())
    return out


def test_setup_cfg_declares_dependencies_and_extras():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["name"] == "hookloop"
    assert {"torch", "pluggy", "tensorboardx", "tqdm"} <= _names(cfg["options"]["install_requires"])
    extras = cfg["options.extras_require"]
    assert "pytest" in _names(extras["test"])
    assert "scikit-learn" in _names(extras["examples"])  # examples/digits.py's data


TOP_LEVEL = {"engine", "plugins", "hookloop"}  # hookloop: the canonical name of the other two


def test_packages_are_engine_plugins_and_hookloop_only():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = set(cfg["options.packages.find"]["include"].split())
    assert TOP_LEVEL <= include and {p.split(".")[0] for p in include} == TOP_LEVEL
    assert (ROOT / "setup.py").is_file()
    setupcfg = pytest.importorskip("setuptools.config.setupcfg")  # setuptools resolves `packages = find:`
    packages = set(setupcfg.read_configuration(str(ROOT / "setup.cfg"))["options"]["packages"])
    assert TOP_LEVEL <= packages
    assert {p.split(".")[0] for p in packages} == TOP_LEVEL  # no tests/, examples/, benchmarks/


def test_distribution_is_installed():
    dist = importlib.metadata.distribution("hookloop")
    requires = _names("\n".join(r for r in dist.requires or [] if "extra ==" not in r))
    assert {"torch", "pluggy", "tensorboardx", "tqdm"} <= requires
    assert {"test", "examples"} <= set(dist.metadata.get_all("Provides-Extra") or [])
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        assert set(top_level.split()) == TOP_LEVEL
    import engine
    assert Path(engine.__file__).resolve().parent.parent == ROOT  # the editable install points here
