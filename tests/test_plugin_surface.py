"""Built-in plugins use only the public surface of the trainer and the module, so a third-party plugin can do
whatever a built-in does."""
from __future__ import annotations

import ast
from pathlib import Path

import torch

from engine import Trainer, hookimpl
from tests.models import SeedModel

ROOT = Path(__file__).resolve().parent.parent
#: Names under which plugins hold the trainer, the module and the registry.
SUBJECTS = {"trainer", "pl_module", "module", "model", "registry", "state", "lightning_module"}


def _subject(node: ast.AST) -> str:
    """The last name of an expression such as ``trainer``, ``self.trainer`` or ``trainer.state``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _private_reads(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if _subject(node.value) in SUBJECTS:
                yield node.lineno, f"{_subject(node.value)}.{node.attr}"
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_") and not str(node.args[1].value).startswith("__")
                and _subject(node.args[0]) in SUBJECTS):
            yield node.lineno, f"{node.func.id}({_subject(node.args[0])}, {node.args[1].value!r})"


def test_built_in_plugins_read_no_private_attribute_of_the_trainer_module_or_registry():
    found = [f"plugins/{path.name}:{line}: {what}"
             for path in sorted((ROOT / "plugins").glob("*.py")) for line, what in _private_reads(path)]
    assert found == []


def test_the_checker_finds_a_private_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(trainer, self):\n    trainer._results\n    getattr(self.trainer, '_x', None)\n")
    assert [what for _, what in _private_reads(sample)] == ["trainer._results", "getattr(trainer, '_x')"]


class SeedDictLogger:
    """A third-party replacement for model_hooks' training step, through the public surface only: it runs the
    module's step and logs a seed-era dict into ``trainer.train_results`` as the built-in does."""

    @hookimpl(tryfirst=True)
    def training_step(self, trainer, pl_module, batch, batch_idx):
        output = pl_module.training_step(batch, batch_idx)
        output["log"]["third_party"] = torch.tensor(1.0)
        trainer.train_results.log_seed_dict(output, "training_step", epoch_end=False)
        return output


def test_a_third_party_plugin_logs_as_the_built_in_does(tmp_path):
    trainer = Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      logger=False, plugins=[SeedDictLogger()], default_root_dir=tmp_path)
    trainer.fit(SeedModel())
    assert "third_party" in trainer.logged_metrics and "train_loss" in trainer.logged_metrics
