"""hookloop's code never resolves the short names ``engine``/``plugins`` through ``sys.path``.

A project may have its own ``engine.py`` or ``plugins/`` next to its scripts; those come first on
``sys.path``. hookloop must still train there, and the short names stay aliases of the one copy of
each module (``hookloop.engine``/``hookloop.plugins``), never second copies.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIT = """
import torch
from torch.utils.data import DataLoader, TensorDataset

class Tiny({base}):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)
trainer = {trainer}(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir="out")
trainer.fit(Tiny(), data)
print("global_step", trainer.global_step)
"""


def _run(project: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ENGINE_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # the project directory alone comes first, as for `python train.py`
    return subprocess.run([sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_a_projects_own_plugins_package_does_not_break_training(tmp_path):
    _write(tmp_path / "plugins" / "__init__.py", "OWN = 'the project'\n")
    _write(tmp_path / "plugins" / "mine.py", "VALUE = 42\n")
    _write(tmp_path / "train.py", "from engine import LightningModule, Trainer\n"
           + FIT.format(base="LightningModule", trainer="Trainer")
           + "import plugins.mine\nprint('own plugins', plugins.OWN, plugins.mine.VALUE)\n")
    done = _run(tmp_path, "train.py")
    assert done.returncode == 0, done.stderr
    assert "global_step 2" in done.stdout
    assert "own plugins the project 42" in done.stdout  # the project's package is untouched


def test_a_projects_own_engine_module_leaves_hookloop_importable(tmp_path):
    _write(tmp_path / "engine.py", "OWN = 'the project'\n")
    _write(tmp_path / "train.py", "from hookloop import LightningModule, Trainer\n"
           "from plugins import ModelCheckpoint  # hookloop's plugins, which use the engine internally\n"
           + FIT.format(base="LightningModule", trainer="Trainer")
           + "import engine\nprint('own engine', engine.OWN)\n"
           "assert isinstance(trainer.checkpoint_callback, ModelCheckpoint)\n")
    done = _run(tmp_path, "train.py")
    assert done.returncode == 0, done.stderr
    assert "global_step 2" in done.stdout
    assert "own engine the project" in done.stdout


def test_the_plugin_listing_runs_next_to_shadowing_names(tmp_path):
    _write(tmp_path / "engine.py", "raise SystemExit('the project engine.py was imported')\n")
    _write(tmp_path / "plugins" / "__init__.py", "raise SystemExit('the project plugins/ was imported')\n")
    done = _run(tmp_path, "-m", "hookloop", "plugins")
    assert done.returncode == 0, done.stderr
    assert "checkpoint_io" in done.stdout and "on_train_epoch_end" in done.stdout
    (tmp_path / "engine.py").unlink()  # `python -m engine` needs the short name to be hookloop's
    done = _run(tmp_path, "-m", "engine", "plugins")
    assert done.returncode == 0, done.stderr
    assert "checkpoint_io" in done.stdout


def test_short_names_are_the_same_modules_whichever_is_imported_first(tmp_path):
    code = textwrap.dedent("""
        import plugins.checkpoint                     # a short-named submodule first of all
        import engine.trainer, hookloop.engine.trainer, hookloop.plugins.checkpoint
        from engine import Trainer
        from plugins import ModelCheckpoint
        assert engine.trainer is hookloop.engine.trainer
        assert plugins.checkpoint is hookloop.plugins.checkpoint
        assert Trainer is hookloop.engine.trainer.Trainer is hookloop.Trainer
        assert ModelCheckpoint is hookloop.plugins.checkpoint.ModelCheckpoint
        assert engine.trainer.__spec__.name == "hookloop.engine.trainer"  # relative imports keep working
        print("one copy")
    """)
    done = _run(tmp_path, "-c", code)
    assert done.returncode == 0, done.stderr
    assert "one copy" in done.stdout


def _imported_modules(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_hookloop_code_imports_only_canonical_names_and_the_engine_no_plugin():
    for package in ("engine", "plugins"):
        for path in sorted((ROOT / package).glob("*.py")):
            for name in _imported_modules(path):
                top = name.split(".")[0]
                assert top not in ("engine", "plugins"), f"{path.name} imports {name} by its short name"
                if package == "engine":
                    assert not name.startswith("hookloop.plugins"), f"engine/{path.name} imports {name}"
