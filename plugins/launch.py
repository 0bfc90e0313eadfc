"""Built-in ``launcher``: runs a stage's body in this process (distributed plugins launch others), and answers
the collectives (``barrier``, ``broadcast``, ``reduce_metric``, ``all_gather``) for a single process."""
from __future__ import annotations

from typing import Any, Callable

from hookloop.engine import hookimpl


class LocalLauncher:
    """Runs ``function`` here, once. A distributed plugin's ``launch`` runs before this one."""

    @hookimpl(trylast=True)
    def launch(self, trainer: Any, function: Callable[[], Any]) -> bool:
        """Run the body in this process."""
        function()
        return True

    @hookimpl(trylast=True)
    def barrier(self, trainer: Any, name: str) -> bool:
        """A single process has nobody to wait for."""
        return True

    @hookimpl(trylast=True)
    def broadcast(self, trainer: Any, obj: Any, src: int) -> Any:
        """A single process already holds ``obj``."""
        return obj

    @hookimpl(trylast=True)
    def reduce_metric(self, trainer: Any, value: Any, reduce_fx: str) -> Any:
        """A single process's value is already reduced."""
        return value

    @hookimpl(trylast=True)
    def all_gather(self, trainer: Any, tensor: Any, sync_grads: bool) -> Any:
        """A single process gathers only its own ``tensor`` (returned as it is, as in Lightning)."""
        return tensor
