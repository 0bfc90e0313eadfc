"""``trainer.strategy``: Lightning's ``Strategy`` API, its work asked of behaviour hooks.

The object knows no feature. Its collectives (``barrier``, ``broadcast``, ``reduce``,
``all_gather``) and ``remove_checkpoint`` call the behaviour hooks of the same work
(``engine/hookspecs.py``), which the built-in plugins implement: in a single process they
return at once, under DDP the distributed plugin runs ``torch.distributed``'s collectives. A
plugin replacing one of those hooks changes what the strategy does too. Ranks, the root device
and the model are the trainer's.

Which class ``trainer.strategy`` is belongs to the plugins (the ``make_strategy`` hook):
``SingleDeviceStrategy``, ``DataParallelStrategy`` or ``DDPStrategy`` (:mod:`hookloop.plugins.strategies`), so that
``isinstance(trainer.strategy, DDPStrategy)`` works as in Lightning.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

import torch

from hookloop.engine.errors import MisconfigurationException, PluginError

if TYPE_CHECKING:
    from hookloop.engine.trainer import Trainer

#: ``reduce_op`` spellings (Lightning's strings and ``torch.distributed.ReduceOp`` names) -> ``reduce_metric``'s.
_REDUCE_OPS = {"mean": "mean", "avg": "mean", "sum": "sum", "max": "max", "min": "min"}


class _BroadcastNone:
    """The type of :data:`BROADCAST_NONE` (one instance; its repr names it)."""

    def __repr__(self) -> str:
        return "BROADCAST_NONE"


#: What a ``broadcast`` hook returns when the object it broadcast is ``None``: pluggy reads a
#: ``None`` answer as "not mine" and would ask the next plugin, which returns this process's own
#: object. ``Strategy.broadcast`` turns it back into ``None``.
BROADCAST_NONE = _BroadcastNone()


class Strategy:
    """How the model runs across devices and processes; see the module docstring.

    Args:
        trainer: the trainer whose ranks, device and model this strategy reports.
    """

    #: Lightning's name of the strategy (its ``Trainer(strategy=...)`` value).
    strategy_name: str = "strategy"

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root_device={self.root_device}, world_size={self.world_size})"

    # ---- where and who ------------------------------------------------------------------------
    @property
    def root_device(self) -> Optional[torch.device]:
        """The device this process runs on (set when a run starts; see the subclasses for before)."""
        return self.trainer.root_device

    @property
    def global_rank(self) -> int:
        """This process's rank in the whole job."""
        return self.trainer.global_rank

    @property
    def local_rank(self) -> int:
        """This process's rank on its node."""
        return self.trainer.local_rank

    @property
    def node_rank(self) -> int:
        """This process's node."""
        return self.trainer.node_rank

    @property
    def world_size(self) -> int:
        """Processes in the job."""
        return self.trainer.world_size

    @property
    def num_nodes(self) -> int:
        """Nodes in the job."""
        return self.trainer.num_nodes

    @property
    def is_global_zero(self) -> bool:
        """True in the process of global rank 0."""
        return self.trainer.global_rank == 0

    # ---- what runs ----------------------------------------------------------------------------
    @property
    def lightning_module(self) -> Any:
        """The ``LightningModule`` being run (``None`` outside a run)."""
        return self.trainer.lightning_module

    @property
    def model(self) -> Any:
        """The model as the strategy runs it: the wrapper a plugin set as ``trainer.strategy_model`` (DDP's during a
        distributed ``fit``, DataParallel's under ``strategy='dp'``), else the module."""
        wrapped = self.trainer.strategy_model
        return wrapped if wrapped is not None else self.trainer.lightning_module

    @property
    def optimizers(self) -> List[Any]:
        """The optimizers of the running ``fit``."""
        return self.trainer.optimizers

    @property
    def accelerator(self) -> Any:
        """``trainer.accelerator``."""
        return self.trainer.accelerator

    @property
    def precision_plugin(self) -> Any:
        """``trainer.precision_plugin``."""
        return self.trainer.precision_plugin

    # ---- collectives: asked of the behaviour hooks ----------------------------------------------
    def barrier(self, name: Optional[str] = None) -> None:
        """Wait until every process gets here (the ``barrier`` hook)."""
        hook = self.trainer.hooks.barrier
        if hook is not None:
            hook(self.trainer, name)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` as process ``src`` holds it (the ``broadcast`` hook; any picklable object)."""
        hook = self.trainer.hooks.broadcast
        result = hook(self.trainer, obj, src) if hook is not None else None
        if result is BROADCAST_NONE:
            return None
        return obj if result is None else result

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """``tensor`` reduced over the processes (the ``reduce_metric`` hook); anything else is returned as is.

        ``reduce_op``: ``"mean"`` (``"avg"``), ``"sum"``, ``"max"``, ``"min"`` or the
        ``torch.distributed.ReduceOp`` of one of them.
        """
        _no_group("reduce", group)
        if not isinstance(tensor, torch.Tensor):
            return tensor
        op = _reduce_op(reduce_op)
        hook = self.trainer.hooks.reduce_metric
        result = hook(self.trainer, tensor, op) if hook is not None else None
        return tensor if result is None else result

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        """Every process's ``tensor``, stacked along a new first dimension of size ``world_size``
        (the ``all_gather`` hook); a single process gets ``tensor`` itself, as in Lightning.
        ``sync_grads=True`` lets gradients flow back through the gather."""
        _no_group("all_gather", group)
        hook = self.trainer.hooks.all_gather
        result = hook(self.trainer, tensor, sync_grads) if hook is not None else None
        return tensor if result is None else result

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:  # noqa: A002 - Lightning's name
        """``decision`` agreed over the processes: True when every process (``all=True``) or any process says so."""
        if self.world_size <= 1:
            return bool(decision)
        votes = self.reduce(torch.tensor(int(bool(decision))), reduce_op="sum")
        count = int(votes.item())
        return count == self.world_size if all else count > 0

    # ---- checkpoints ----------------------------------------------------------------------------
    def remove_checkpoint(self, filepath: str) -> None:
        """Delete a checkpoint file (the ``remove_checkpoint`` hook: on global rank zero, where files are written)."""
        hook = self.trainer.hooks.remove_checkpoint
        if hook is None or hook(self.trainer, filepath) is None:
            raise PluginError("No plugin removes checkpoints (the built-in 'checkpoint_io' plugin is disabled).")


def _reduce_op(reduce_op: Any) -> str:
    """``reduce_op`` as the ``reduce_metric`` hook names it; an error naming the unknown one."""
    name = getattr(reduce_op, "name", reduce_op)  # a torch.distributed.ReduceOp member
    key = str(name).lower() if name is not None else "mean"
    if key not in _REDUCE_OPS:
        raise MisconfigurationException(
            f"strategy.reduce(reduce_op={reduce_op!r}) is not supported; use 'mean', 'sum', 'max' or 'min'.")
    return _REDUCE_OPS[key]


def _no_group(method: str, group: Any) -> None:
    if group is not None:
        raise MisconfigurationException(
            f"strategy.{method}(group=...) is not supported: hookloop's collectives run over every process "
            "(the default group). Leave `group` out.")
