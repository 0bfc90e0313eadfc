"""Lightning 0.8/0.9's ``trainer.current_epoch`` once a seed-era ``fit`` has trained.

0.9 set ``current_epoch`` at the start of each epoch and never after, so from the end of training on
it held the last trained epoch's index (``max_epochs - 1`` after a full run, the stopping epoch's index
after an early stop); Lightning 2.x counts the epoch as done and holds the number of epochs run. The
loop counts as 2.x does. When the run used an API only 0.8/0.9 had (``trainer.state.seed_era``: a
``'log'`` dict, a ``TrainResult``...), this plugin shows 0.9's value from ``on_train_end`` on (its
handlers, ``on_fit_end``, ``teardown``, and whatever runs after ``fit``, ``trainer.test()`` included)
until the next ``fit`` starts, through ``trainer.state.current_epoch_offset``.

Only ``trainer.current_epoch`` (and ``pl_module.current_epoch``) reads differently: ``state.epoch`` is
what checkpoints, resuming and a second ``fit`` count from, so a checkpoint saved after a seed-era
``fit`` resumes at the next epoch, as 0.9's did.
"""
from __future__ import annotations

from typing import Any

from hookloop.engine import hookimpl


class SeedEraCurrentEpoch:
    """Shows 0.9's ``trainer.current_epoch`` after the training of a seed-era ``fit`` (see the module docstring)."""

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, stage: str) -> None:
        """A new ``fit`` counts its epochs from the last one run plus one, as both eras do during training."""
        if stage == "fit":
            trainer.state.current_epoch_offset = 0

    @hookimpl(tryfirst=True)
    def on_train_end(self, trainer: Any) -> None:
        """Training is over: a seed-era run's ``current_epoch`` is the last trained epoch's index from here on."""
        state = trainer.state
        if state.seed_era and state.epoch > 0:
            state.current_epoch_offset = 1
