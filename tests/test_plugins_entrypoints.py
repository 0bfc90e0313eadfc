"""Entry-point plugins, proven with a real distribution (tests/plugin_dist) installed by pip.

The distribution ``hookloop-testplugins 0.3.1`` declares in its setup.cfg::

    [options.entry_points]
    engine.plugins =
        tp_module = hookloop_testplugins.module_plugin          # a module
        tp_object = hookloop_testplugins.objects:OBJECT_PLUGIN  # an object
        tp_callback = hookloop_testplugins.objects:EpochCounter # a Callback subclass
        tp_zbroken = hookloop_testplugins.broken                # fails to import on demand
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Callback, PluginError, Trainer
from engine.listing import describe
from engine.registry import DISABLE_AUTOLOAD_ENV
from tests.models import ModernModel

DIST_SOURCE = Path(__file__).parent / "plugin_dist"
DIST_NAME = "hookloop-testplugins"
TP_NAMES = ["tp_callback", "tp_module", "tp_object", "tp_zbroken"]
QUIET = dict(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
             num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1)


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def plugin_dist(tmp_path_factory):
    """Install tests/plugin_dist into this interpreter's environment (offline); uninstall afterwards."""
    # Build from a copy so that pip's build/ and *.egg-info never land in the source tree.
    source = tmp_path_factory.mktemp("dist") / "plugin_dist"
    shutil.copytree(DIST_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", str(source))
    assert done.returncode == 0, f"pip install of {source} failed:\n{done.stdout}\n{done.stderr}"
    importlib.invalidate_caches()
    yield DIST_NAME
    _pip("uninstall", "--yes", "--quiet", DIST_NAME)
    for module in [m for m in sys.modules if m.startswith("hookloop_testplugins")]:
        del sys.modules[module]
    importlib.invalidate_caches()


@pytest.fixture
def autoload(plugin_dist, monkeypatch):
    """Entry points on (tests/conftest.py turns them off by default), the distribution installed."""
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv("HOOKLOOP_TESTPLUGINS_BREAK", raising=False)
    import hookloop_testplugins

    hookloop_testplugins.CALLS.clear()
    return hookloop_testplugins


def test_every_kind_of_target_is_loaded_and_called(autoload):
    trainer = Trainer(max_epochs=2, **QUIET)
    names = trainer.registry.names()
    assert all(name in names for name in TP_NAMES)
    import hookloop_testplugins.module_plugin as module_target
    from hookloop_testplugins.objects import OBJECT_PLUGIN, EpochCounter

    assert trainer.plugin("tp_module") is module_target       # a module
    assert trainer.plugin("tp_object") is OBJECT_PLUGIN        # an object
    counter = trainer.plugin("tp_callback")
    assert type(counter) is EpochCounter and isinstance(counter, Callback)  # a class, instantiated
    assert counter in trainer.callbacks

    trainer.fit(ModernModel())
    epoch = [("tp_callback", "on_train_epoch_end"), ("tp_module", "on_train_epoch_end"),
             ("tp_object", "on_train_epoch_end")]  # entry points run in name order
    assert autoload.CALLS == [("tp_module", "on_fit_start")] + epoch + epoch
    assert counter.epochs == 2
    # Each Trainer gets its own Callback instance.
    assert Trainer(**QUIET).plugin("tp_callback") is not counter


def test_origin_names_distribution_and_version(autoload):
    origins = {p.name: p.origin for p in describe(Trainer(**QUIET)).plugins}
    assert origins["tp_module"] == (f"entry point of {DIST_NAME} 0.3.1 "
                                    "(`tp_module = hookloop_testplugins.module_plugin`)")
    assert origins["metrics"] == "built-in"


def test_autoload_env_loads_no_entry_point(autoload, monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    names = Trainer(**QUIET).registry.names()
    assert not any(name.startswith("tp_") for name in names)
    # Disabling them by name is still allowed (the names are known, just not loaded).
    Trainer(disable_plugins=["tp_object"], **QUIET)


def test_disable_entry_point_by_name(autoload):
    trainer = Trainer(max_epochs=1, disable_plugins=["tp_object", "tp_module"], **QUIET)
    names = trainer.registry.names()
    assert "tp_object" not in names and "tp_module" not in names and "tp_callback" in names
    trainer.fit(ModernModel())
    assert autoload.CALLS == [("tp_callback", "on_train_epoch_end")]


def test_unknown_disable_lists_entry_points_too(autoload):
    with pytest.raises(PluginError) as info:
        Trainer(disable_plugins=["tp_objet"], **QUIET)
    message = str(info.value)
    assert "Did you mean `tp_object`?" in message and "tp_callback" in message and "metrics" in message


def test_broken_entry_point_is_a_clear_error_and_nothing_runs(autoload, monkeypatch):
    monkeypatch.setenv("HOOKLOOP_TESTPLUGINS_BREAK", "1")
    sys.modules.pop("hookloop_testplugins.broken", None)
    with pytest.raises(PluginError) as info:
        Trainer(max_epochs=1, **QUIET).fit(ModernModel())
    message = str(info.value)
    assert f"{DIST_NAME} 0.3.1" in message
    assert "`tp_zbroken = hookloop_testplugins.broken`" in message
    assert "hookloop_testplugins_missing_dependency" in message and "disable_plugins=['tp_zbroken']" in message
    assert autoload.CALLS == []  # no plugin saw a fit start: training never began
    # The way out the message offers works.
    Trainer(disable_plugins=["tp_zbroken"], **QUIET)


def test_cli_lists_plugins_with_origins_and_call_order(autoload):
    env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}
    env["PYTHONPATH"] = str(Path(__file__).parent.parent)
    done = subprocess.run([sys.executable, "-m", "engine", "plugins"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"entry point of {DIST_NAME} 0.3.1 (`tp_object = hookloop_testplugins.objects:OBJECT_PLUGIN`)" in out
    assert "metrics" in out and "built-in" in out
    # The default Trainer's every plugin is listed.
    for name in Trainer().registry.names():
        assert f"  {name} " in out, name
    # Every handler of the event, numbered in call order; the three entry points keep their documented
    # relative order (by entry-point name) wherever the built-ins sit around them.
    section = out.split("\n  on_train_epoch_end\n")[1].split("\n  on_")[0]
    handlers = [line.strip().split(". ", 1)[1].split()[0] for line in section.splitlines() if ". " in line]
    assert [name for name in handlers if name.startswith("tp_")] == ["tp_callback", "tp_module", "tp_object"]
    assert "metrics" in handlers and handlers.index("checkpoint") == len(handlers) - 1
    # With autoload off the entry points disappear from the listing.
    env[DISABLE_AUTOLOAD_ENV] = "1"
    quiet = subprocess.run([sys.executable, "-m", "engine", "plugins"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert quiet.returncode == 0 and "tp_module" not in quiet.stdout


def test_cli_reports_a_broken_entry_point_without_traceback(autoload):
    env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}
    env.update(HOOKLOOP_TESTPLUGINS_BREAK="1", PYTHONPATH=str(Path(__file__).parent.parent))
    done = subprocess.run([sys.executable, "-m", "engine", "plugins"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{DIST_NAME} 0.3.1" in done.stderr and "tp_zbroken" in done.stderr


def _readme_package_files() -> dict:
    """The files of the README's "Writing a plugin" example: {path: text}."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Writing a plugin", 1)[1].split("\n### ", 1)[0]
    files = {}
    for label, fence in (("`setup.cfg`", "```ini"), ("`pyproject.toml`", "```toml"),
                         ("`hookloop_epoch_timer/__init__.py`", "```python")):
        block = section.split(f"\n{label}\n", 1)[1].split(fence + "\n", 1)[1].split("\n```", 1)[0]
        files[label.strip("`")] = block + "\n"
    return files


def test_readme_plugin_package_works(tmp_path, monkeypatch, capsys):
    package = tmp_path / "hookloop-epoch-timer"
    for relative, text in _readme_package_files().items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text)
    done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", str(package))
    assert done.returncode == 0, done.stderr
    try:
        importlib.invalidate_caches()
        monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
        trainer = Trainer(max_epochs=2, **QUIET)
        assert trainer.plugin("epoch_timer").__class__.__name__ == "EpochTimer"
        trainer.fit(ModernModel())
        out = capsys.readouterr().out
        assert "epoch 0 took" in out and "epoch 1 took" in out
    finally:
        _pip("uninstall", "--yes", "--quiet", "hookloop-epoch-timer")
        sys.modules.pop("hookloop_epoch_timer", None)
        importlib.invalidate_caches()
