"""LambdaCallback: functions given as keyword arguments run at their hooks; a wrong hook name is named."""
from __future__ import annotations

import pytest

from engine import MisconfigurationException, Trainer
from plugins import LambdaCallback
from tests.callback_support import QUIET
from tests.models import ModernModel


def test_the_given_functions_run_at_their_hooks_with_the_hook_arguments():
    calls = []
    callback = LambdaCallback(
        on_fit_start=lambda trainer, pl_module: calls.append(("fit_start", type(pl_module).__name__)),
        on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: calls.append(("batch", batch_idx)),
        on_train_epoch_end=lambda trainer, pl_module: calls.append(("epoch", trainer.current_epoch)),
        on_exception=None,  # None leaves the hook out, as in Lightning
    )
    Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[callback], **QUIET).fit(ModernModel())
    assert calls == [("fit_start", "ModernModel"), ("batch", 0), ("batch", 1), ("epoch", 0), ("batch", 0),
                     ("batch", 1), ("epoch", 1)]


def test_only_the_given_hooks_are_registered():
    callback = LambdaCallback(on_train_start=lambda trainer, pl_module: None)
    trainer = Trainer(callbacks=[callback], **QUIET)
    assert any(impl.plugin is callback for impl in trainer.registry.implementations("on_train_start"))
    assert not any(impl.plugin is callback for impl in trainer.registry.implementations("on_train_batch_end"))


def test_a_misspelt_hook_is_named_with_the_closest():
    with pytest.raises(MisconfigurationException, match="on_train_epoch_ned.*Did you mean `on_train_epoch_end`"):
        LambdaCallback(on_train_epoch_ned=lambda trainer, pl_module: None)
    with pytest.raises(MisconfigurationException, match="pass a function"):
        LambdaCallback(on_fit_start=3)
