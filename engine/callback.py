"""``Callback``: Lightning-style hooks as plain methods, no decorator needed."""
from __future__ import annotations

from typing import Any, Dict

from hookloop.engine.catalogue import add_noop_hooks, callback_hooks


class Callback:
    """Base class for callbacks. Override any event of :mod:`engine.hookspecs` by name.

    The class has a no-op method for each of Lightning's callback hooks (every event the catalogue
    marks ``@user_hook``), so ``super().on_train_start(trainer, pl_module)`` works. A hook may also
    be assigned on an instance (``callback.on_train_start = function``), before the callback is
    given to a ``Trainer``.

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


# Lightning's hooks, as documented no-ops, derived from the catalogue (engine/hookspecs.py, ``@user_hook``):
# overriding one registers it.
add_noop_hooks(Callback, callback_hooks(), "callback")
