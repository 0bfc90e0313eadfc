"""``BaseFinetuning`` and ``BackboneFinetuning``: freeze parts of a model, then unfreeze them during ``fit``.

As in Lightning 2.x: :meth:`BaseFinetuning.freeze_before_training` runs in ``setup``, before
``configure_optimizers`` builds the optimizers (so a module filtering on ``requires_grad`` leaves the frozen
parameters out), and :meth:`BaseFinetuning.finetune_function` runs at every training epoch start, where it
unfreezes modules and adds their parameters to an optimizer as a new parameter group.

The parameter groups added are kept in the callback's checkpoint state (parameters by name). A resumed fit
adds them back to the freshly built optimizers before the optimizers' saved states are loaded, and makes their
parameters trainable again (Lightning restores the groups but leaves those parameters frozen).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

import torch
from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm

from hookloop.engine import Callback
from hookloop.engine.errors import MisconfigurationException

log = logging.getLogger(__name__)

#: A module, or an iterable (nested) of modules.
Modules = Union[Module, Iterable[Any]]


def multiplicative(epoch: int) -> float:
    """``BackboneFinetuning``'s default ``lambda_func``: double the backbone's learning rate every epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Base class of finetuning callbacks: override :meth:`freeze_before_training` and :meth:`finetune_function`.

    Example::

        class FeatureExtractorFreezeUnfreeze(BaseFinetuning):
            def __init__(self, unfreeze_at_epoch=10):
                super().__init__()
                self._unfreeze_at_epoch = unfreeze_at_epoch

            def freeze_before_training(self, pl_module):
                self.freeze(pl_module.feature_extractor)

            def finetune_function(self, pl_module, current_epoch, optimizer):
                if current_epoch == self._unfreeze_at_epoch:
                    self.unfreeze_and_add_param_group(pl_module.feature_extractor, optimizer, train_bn=True)

    The module's ``configure_optimizers`` should pass only trainable parameters
    (``filter(lambda p: p.requires_grad, self.parameters())``).
    """

    def __init__(self) -> None:
        #: Per optimizer index, its parameter groups (parameters by name), as in Lightning's checkpoints.
        self._internal_optimizer_metadata: Dict[int, List[Dict[str, Any]]] = {}
        self._restarting = False

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The optimizers' parameter groups, parameters by name."""
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Take the parameter groups of a checkpoint (the optimizers got them in ``on_load_checkpoint``)."""
        self._restarting = True
        self._internal_optimizer_metadata = {int(k): v for k, v in
                                             state_dict.get("internal_optimizer_metadata", {}).items()}

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Resuming a fit: add the saved extra parameter groups to the new optimizers, trainable again.

        As in Lightning, this runs at fit start: the optimizers exist, and their states (which need
        the same groups) are loaded after every ``on_fit_start``.
        """
        if not self._restarting:
            return
        self._restarting = False
        metadata = self._internal_optimizer_metadata
        named = dict(pl_module.named_parameters())
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            groups = metadata.get(opt_idx, metadata.get(str(opt_idx)))
            if not groups:
                continue
            for group in groups[len(optimizer.param_groups):]:
                missing = [name for name in group["params"] if name not in named]
                if missing:
                    raise MisconfigurationException(
                        f"{type(self).__name__}: the checkpoint's parameter group of optimizer {opt_idx} names "
                        f"parameters the model does not have: {missing}. Is it a checkpoint of another model?")
                params = [named[name] for name in group["params"]]
                for param in params:
                    param.requires_grad = True  # unfrozen when the group was added
                optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": params})

    # ---- hooks ---------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Freeze before ``configure_optimizers`` runs."""
        self.freeze_before_training(pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Call :meth:`finetune_function` for every optimizer and remember the groups it added."""
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            before = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, opt_idx, before, optimizer.param_groups)

    def _store(self, pl_module: Any, opt_idx: int, before: int, groups: List[Dict[str, Any]]) -> None:
        names = {id(p): n for n, p in pl_module.named_parameters()}
        if opt_idx not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[opt_idx] = _by_name(groups, names)
        elif before != len(groups):
            self._internal_optimizer_metadata[opt_idx].extend(_by_name(groups[before:], names))

    # ---- what subclasses write -------------------------------------------------------------
    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
        """Override: unfreeze (and add to ``optimizer``) what should train from ``epoch`` on."""
        raise NotImplementedError(f"{type(self).__name__} must override finetune_function(pl_module, epoch, optimizer).")

    def freeze_before_training(self, pl_module: Any) -> None:
        """Override: freeze what should not train at first (called before ``configure_optimizers``)."""
        raise NotImplementedError(f"{type(self).__name__} must override freeze_before_training(pl_module).")

    # ---- helpers -----------------------------------------------------------------------------
    @staticmethod
    def flatten_modules(modules: Modules) -> List[Module]:
        """The leaf modules of ``modules`` (a module or a nested iterable of them), and parents that hold parameters."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable) and not isinstance(modules, Module):
            found: List[Module] = []
            for item in modules:
                found.extend(BaseFinetuning.flatten_modules(item))
            candidates: Iterable[Module] = found
        else:
            candidates = modules.modules()
        return [m for m in candidates if not list(m.children()) or any(True for _ in m.parameters(recurse=False))]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Iterator[torch.nn.Parameter]:
        """The parameters of ``modules`` whose ``requires_grad`` is ``requires_grad`` (BatchNorm's only with ``train_bn``)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):  # a parent's own only: no duplicates
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        """Unfreeze every parameter of ``modules`` (BatchNorm layers track running statistics again)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        """Freeze ``module``'s own parameters (a BatchNorm layer also stops tracking running statistics)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; with ``train_bn`` their BatchNorm layers stay trainable."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Any, params: Iterable[torch.nn.Parameter]) -> List[torch.nn.Parameter]:
        """``params`` less those already in one of ``optimizer``'s groups (with a warning naming the fix)."""
        present = {id(p) for group in optimizer.param_groups for p in group["params"]}
        kept, skipped = [], 0
        for param in params:
            if id(param) in present:  # by identity: two parameters with equal values are still two
                skipped += 1
            else:
                kept.append(param)
        if skipped:
            warnings.warn(
                f"{skipped} parameter(s) to unfreeze already train in a parameter group of {type(optimizer).__name__} "
                "and stay there (freeze(..., train_bn=True) leaves BatchNorm layers trainable). If frozen ones are "
                "among them, build the optimizer from the trainable parameters only: "
                f"{type(optimizer).__name__}(filter(lambda p: p.requires_grad, self.parameters()), ...).")
        return kept

    @staticmethod
    def unfreeze_and_add_param_group(modules: Modules, optimizer: Any, lr: Optional[float] = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Unfreeze ``modules`` and add their parameters to ``optimizer`` as a new group.

        The group's learning rate is ``lr``, or the first group's divided by ``initial_denom_lr``.
        """
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_on_optimizer(
            optimizer, BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True))
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})


class BackboneFinetuning(BaseFinetuning):
    """Train ``pl_module.backbone`` from ``unfreeze_backbone_at_epoch`` on, at a rising learning rate.

    Args:
        unfreeze_backbone_at_epoch: Epoch (from 0) at whose start the backbone is unfrozen.
        lambda_func: ``epoch -> factor``: each later epoch the backbone's rate is multiplied by
            ``lambda_func(epoch + 1)``.
        backbone_initial_ratio_lr: The backbone starts at the model's current rate times this.
        backbone_initial_lr: Or at this rate.
        should_align: Once the backbone's rate would pass the model's, it follows the model's.
        initial_denom_lr: Passed to :meth:`BaseFinetuning.unfreeze_and_add_param_group`.
        train_bn: Whether the backbone's BatchNorm layers train (they do while frozen too).
        verbose: Log both learning rates at every change.
        rounding: Digits of the rates logged.
    """

    def __init__(self, unfreeze_backbone_at_epoch: int = 10, lambda_func: Callable[[int], float] = multiplicative,
                 backbone_initial_ratio_lr: float = 10e-2, backbone_initial_lr: Optional[float] = None,
                 should_align: bool = True, initial_denom_lr: float = 10.0, train_bn: bool = True,
                 verbose: bool = False, rounding: int = 12) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: Optional[float] = None

    def state_dict(self) -> Dict[str, Any]:
        """The parameter groups and the backbone's last learning rate."""
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.previous_backbone_lr = state_dict.get("previous_backbone_lr")
        super().load_state_dict(state_dict)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Check that there is a backbone, then freeze it."""
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, Module):
            raise MisconfigurationException(
                f"BackboneFinetuning needs `{type(pl_module).__name__}.backbone`, an nn.Module to freeze and unfreeze; "
                f"it has {'none' if backbone is None else type(backbone).__name__}.")
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: Any) -> None:
        """Freeze the backbone."""
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
        """Unfreeze the backbone at its epoch; raise its learning rate at every later one."""
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = (self.backbone_initial_lr if self.backbone_initial_lr is not None
                           else current_lr * self.backbone_initial_ratio_lr)
            self.previous_backbone_lr = backbone_lr
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                                              initial_denom_lr=self.initial_denom_lr)
        elif epoch > self.unfreeze_backbone_at_epoch and self.previous_backbone_lr is not None:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
            self.previous_backbone_lr = backbone_lr
        else:
            return
        if self.verbose:
            log.info(f"Current lr: {round(current_lr, self.rounding)}, Backbone lr: {round(backbone_lr, self.rounding)}")


def _by_name(groups: List[Dict[str, Any]], names: Dict[int, str]) -> List[Dict[str, Any]]:
    """Parameter groups with their parameters replaced by names (plain data for checkpoints)."""
    return [{**{k: v for k, v in group.items() if k != "params"}, "params": [names[id(p)] for p in group["params"]]}
            for group in groups]


__all__ = ["BaseFinetuning", "BackboneFinetuning", "multiplicative"]
