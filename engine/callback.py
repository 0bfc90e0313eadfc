"""``Callback``: Lightning-style hooks as plain methods, no decorator needed."""
from __future__ import annotations

from typing import Any, Dict


class Callback:
    """Base class for callbacks. Override any event of :mod:`engine.hookspecs` by name.

    Only the methods a subclass overrides are registered, so an unused event costs nothing.
    A method named ``on_*`` that matches no event is an error when the callback is
    registered (with a "did you mean"). To change a method's place in the call order,
    decorate it with ``@hookimpl(tryfirst=True)`` or ``@hookimpl(trylast=True)`` (it is
    still matched by name); to order a whole class among implementations with the same
    marker, set the class attribute ``__engine_order__`` (an int, default 0, lower first —
    ``ModelCheckpoint`` uses 100 to save after early stopping). The full rules are in
    :mod:`engine.registry`; ``python -m engine plugins`` shows the resulting order.

    ``state_dict``/``load_state_dict`` carry the callback's state in checkpoints, under
    ``checkpoint["callbacks"][self.state_key]``.
    """

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint; override to let two instances coexist."""
        return type(self).__qualname__

    def _generate_state_key(self, **kwargs: Any) -> str:
        """A state key made of the class name and ``kwargs`` (Lightning's convention)."""
        return f"{type(self).__qualname__}{repr(kwargs)}"

    def state_dict(self) -> Dict[str, Any]:
        """Return the state to save in a checkpoint (default: nothing)."""
        return {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""

    # Lightning's hooks, as no-ops; overriding one registers it. Signatures follow hookspecs.
    def setup(self, trainer, pl_module, stage): """See :func:`engine.hookspecs.setup`."""
    def teardown(self, trainer, pl_module, stage): """See :func:`engine.hookspecs.teardown`."""
    def on_init_start(self, trainer): """See :func:`engine.hookspecs.on_init_start`."""
    def on_init_end(self, trainer): """See :func:`engine.hookspecs.on_init_end`."""
    def on_fit_start(self, trainer, pl_module): """See :func:`engine.hookspecs.on_fit_start`."""
    def on_fit_end(self, trainer, pl_module): """See :func:`engine.hookspecs.on_fit_end`."""
    def on_pretrain_routine_start(self, trainer, pl_module): """Seed-era; see hookspecs."""
    def on_pretrain_routine_end(self, trainer, pl_module): """Seed-era; see hookspecs."""
    def on_sanity_check_start(self, trainer, pl_module): """See hookspecs."""
    def on_sanity_check_end(self, trainer, pl_module): """See hookspecs."""
    def on_train_start(self, trainer, pl_module): """See hookspecs."""
    def on_train_end(self, trainer, pl_module): """See hookspecs."""
    def on_epoch_start(self, trainer, pl_module): """Seed-era; see hookspecs."""
    def on_epoch_end(self, trainer, pl_module): """Seed-era; see hookspecs."""
    def on_batch_start(self, trainer, pl_module): """Seed-era; see hookspecs."""
    def on_batch_end(self, trainer, pl_module): """Seed-era; see hookspecs."""
    def on_train_epoch_start(self, trainer, pl_module): """See hookspecs."""
    def on_train_epoch_end(self, trainer, pl_module): """See hookspecs."""
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx): """See hookspecs."""
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx): """See hookspecs."""
    def on_validation_start(self, trainer, pl_module): """See hookspecs."""
    def on_validation_end(self, trainer, pl_module): """See hookspecs."""
    def on_validation_epoch_start(self, trainer, pl_module): """See hookspecs."""
    def on_validation_epoch_end(self, trainer, pl_module): """See hookspecs."""
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0): """See hookspecs."""
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0): """See hookspecs."""
    def on_test_start(self, trainer, pl_module): """See hookspecs."""
    def on_test_end(self, trainer, pl_module): """See hookspecs."""
    def on_test_epoch_start(self, trainer, pl_module): """See hookspecs."""
    def on_test_epoch_end(self, trainer, pl_module): """See hookspecs."""
    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0): """See hookspecs."""
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0): """See hookspecs."""
    def on_predict_start(self, trainer, pl_module): """See hookspecs."""
    def on_predict_end(self, trainer, pl_module): """See hookspecs."""
    def on_predict_epoch_start(self, trainer, pl_module): """See hookspecs."""
    def on_predict_epoch_end(self, trainer, pl_module): """See hookspecs."""
    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0): """See hookspecs."""
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0): """See hookspecs."""
    def on_before_backward(self, trainer, pl_module, loss): """See hookspecs."""
    def on_after_backward(self, trainer, pl_module): """See hookspecs."""
    def on_before_optimizer_step(self, trainer, pl_module, optimizer): """See hookspecs."""
    def on_before_zero_grad(self, trainer, pl_module, optimizer): """See hookspecs."""
    def on_save_checkpoint(self, trainer, pl_module, checkpoint): """See hookspecs."""
    def on_load_checkpoint(self, trainer, pl_module, checkpoint): """See hookspecs."""
    def on_exception(self, trainer, pl_module, exception): """See hookspecs."""
    def on_keyboard_interrupt(self, trainer, pl_module): """Seed-era; see hookspecs."""
