"""``ModelPruning``: prune the model's parameters during ``fit`` with ``torch.nn.utils.prune`` (Lightning 2.x's).

At every training epoch's end (or validation epoch's, ``prune_on_train_epoch_end=False``) the chosen
parameters are pruned by ``amount`` (globally across them, or layer by layer); with the lottery ticket
hypothesis the weights that remain are reset to their values at the start of the fit. With
``make_pruning_permanent`` every checkpoint holds plain weights (the masks applied, no ``_orig``/``_mask``
entries) while training goes on with the masks, and when training ends the masks are removed from the model.
"""
from __future__ import annotations

import copy
import inspect
import logging
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.utils.prune as pytorch_prune
from torch import nn

from hookloop.engine import Callback, LightningModule
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.rank_zero import is_rank_zero

log = logging.getLogger(__name__)

#: ``pruning_fn`` names: the functions (layer by layer) and the methods (global) of ``torch.nn.utils.prune``.
PRUNING_FUNCTIONS: Dict[str, Callable[..., Any]] = {
    "ln_structured": pytorch_prune.ln_structured, "l1_unstructured": pytorch_prune.l1_unstructured,
    "random_structured": pytorch_prune.random_structured, "random_unstructured": pytorch_prune.random_unstructured,
}
PRUNING_METHODS: Dict[str, type] = {
    "ln_structured": pytorch_prune.LnStructured, "l1_unstructured": pytorch_prune.L1Unstructured,
    "random_structured": pytorch_prune.RandomStructured, "random_unstructured": pytorch_prune.RandomUnstructured,
}
#: Containers whose own parameters are never chosen by default (they hold their children's).
_CONTAINERS = (LightningModule, nn.Sequential, nn.ModuleList, nn.ModuleDict)

ParameterList = Sequence[Tuple[nn.Module, str]]


class ModelPruning(Callback):
    """Prune parameters during training.

    Args:
        pruning_fn: A name (``'l1_unstructured'``, ``'random_unstructured'``, ``'ln_structured'``,
            ``'random_structured'``) or a ``torch.nn.utils.prune.BasePruningMethod`` subclass (global pruning).
        parameters_to_prune: ``[(module, 'weight'), ...]``; empty or ``None``: every ``parameter_names``
            parameter of every layer.
        parameter_names: ``'weight'`` and/or ``'bias'`` (default both).
        use_global_unstructured: Prune across all the parameters at once (unstructured methods only).
        amount: A fraction (float) or a count (int) to prune, or ``epoch -> amount``.
        apply_pruning: Whether to prune, or ``epoch -> bool``.
        make_pruning_permanent: Checkpoints hold plain weights, and the masks are removed when training ends.
        use_lottery_ticket_hypothesis: Reset the remaining weights to their initial values after pruning
            (or ``epoch -> bool``).
        resample_parameters: With the lottery ticket: draw new initial values instead (``reset_parameters``).
        pruning_dim: The dimension of structured pruning.
        pruning_norm: The norm of ``'ln_structured'``.
        verbose: 0 quiet, 1 the overall sparsity after each pruning, 2 also each parameter's.
        prune_on_train_epoch_end: Prune at the training epoch's end (else at the validation epoch's).
    """

    PARAMETER_NAMES = ("weight", "bias")

    def __init__(self, pruning_fn: Union[Callable[..., Any], str], parameters_to_prune: Optional[ParameterList] = (),
                 parameter_names: Optional[List[str]] = None, use_global_unstructured: bool = True,
                 amount: Union[int, float, Callable[[int], Union[int, float]]] = 0.5,
                 apply_pruning: Union[bool, Callable[[int], bool]] = True, make_pruning_permanent: bool = True,
                 use_lottery_ticket_hypothesis: Union[bool, Callable[[int], bool]] = True,
                 resample_parameters: bool = False, pruning_dim: Optional[int] = None,
                 pruning_norm: Optional[int] = None, verbose: int = 0, prune_on_train_epoch_end: bool = True) -> None:
        self._use_global_unstructured = use_global_unstructured
        self._parameters_to_prune: ParameterList = parameters_to_prune or ()
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        self._parameter_names = tuple(parameter_names or self.PARAMETER_NAMES)
        self._global_kwargs: Dict[str, Any] = {}
        self._original_layers: Optional[Dict[int, Dict[str, Any]]] = None
        for name in self._parameter_names:
            if name not in self.PARAMETER_NAMES:
                raise MisconfigurationException(
                    f"ModelPruning(parameter_names=[{name!r}]): only {list(self.PARAMETER_NAMES)} can be pruned.")
        if isinstance(pruning_fn, str):
            pruning_fn = self._resolve_name(pruning_fn.lower(), pruning_dim, pruning_norm)
        elif inspect.isclass(pruning_fn) and issubclass(pruning_fn, pytorch_prune.BasePruningMethod):
            if not use_global_unstructured:
                raise MisconfigurationException(
                    f"ModelPruning(pruning_fn={pruning_fn.__name__}): a BasePruningMethod works with "
                    "use_global_unstructured=True only; pass a name for layer-by-layer pruning.")
            self._pruning_method_name = pruning_fn.__name__
        else:
            raise MisconfigurationException(
                f"ModelPruning(pruning_fn={pruning_fn!r}): give one of {sorted(PRUNING_FUNCTIONS)} or a "
                "torch.nn.utils.prune.BasePruningMethod subclass (the class, not an instance).")
        if use_global_unstructured and getattr(pruning_fn, "PRUNING_TYPE", None) != "unstructured":
            raise MisconfigurationException(
                f"ModelPruning(use_global_unstructured=True) needs an unstructured method; {self._pruning_method_name} "
                f"is {getattr(pruning_fn, 'PRUNING_TYPE', 'of no known type')}. Pass use_global_unstructured=False.")
        if isinstance(amount, bool) or not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationException(
                f"ModelPruning(amount={amount!r}): give a fraction (float), a count (int) or a function of the epoch.")
        if verbose not in (0, 1, 2):
            raise MisconfigurationException(f"ModelPruning(verbose={verbose!r}): use 0, 1 or 2.")
        self.pruning_fn = pruning_fn
        self.amount = amount
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        self._verbose = verbose
        hooks = {"setup", "on_train_end", "on_save_checkpoint",
                 "on_train_epoch_end" if prune_on_train_epoch_end else "on_validation_epoch_end"}
        self.__engine_hooks__ = hooks

    def _resolve_name(self, name: str, dim: Optional[int], norm: Optional[int]) -> Any:
        if name not in PRUNING_FUNCTIONS:
            raise MisconfigurationException(
                f"ModelPruning(pruning_fn={name!r}) is not one of torch's: {sorted(PRUNING_FUNCTIONS)}.")
        kwargs: Dict[str, Any] = {}
        if name.endswith("_structured"):
            if dim is None:
                raise MisconfigurationException(f"ModelPruning(pruning_fn={name!r}) needs pruning_dim=...")
            if name == "ln_structured":
                if norm is None:
                    raise MisconfigurationException("ModelPruning(pruning_fn='ln_structured') needs pruning_norm=...")
                kwargs["n"] = norm
            kwargs["dim"] = dim
        method = PRUNING_METHODS[name] if self._use_global_unstructured else PRUNING_FUNCTIONS[name]
        self._pruning_method_name = method.__name__
        if self._use_global_unstructured:
            self._global_kwargs = kwargs
            return method
        return partial(method, **kwargs)

    def filter_parameters_to_prune(self, parameters_to_prune: ParameterList = ()) -> ParameterList:
        """Override to choose, among the parameters found, which to prune."""
        return parameters_to_prune

    # ---- hooks ---------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Find the parameters to prune; keep their initial values for the lottery ticket."""
        chosen = self.sanitize_parameters_to_prune(pl_module, self._parameters_to_prune, self._parameter_names)
        self._parameters_to_prune = self.filter_parameters_to_prune(chosen)
        self._original_layers = None
        if self._use_lottery_ticket_hypothesis:
            layers: Dict[int, Dict[str, Any]] = {}
            for i, (module, name) in enumerate(self._parameters_to_prune):
                entry = layers.setdefault(id(module), {"data": _copy_module(module), "names": []})
                entry["names"].append((i, name))
            self._original_layers = layers

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Prune at the end of every training epoch."""
        self._run_pruning(trainer.current_epoch)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Prune at the end of every validation epoch (not the sanity check's)."""
        if not trainer.sanity_checking:
            self._run_pruning(trainer.current_epoch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Remove the masks: the model keeps plain, pruned weights."""
        if self._make_pruning_permanent:
            self.make_pruning_permanent(pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any]) -> None:
        """Checkpoints hold plain weights; the model keeps its masks and trains on."""
        if self._make_pruning_permanent:
            checkpoint["state_dict"] = _permanent_state_dict(checkpoint["state_dict"])

    # ---- pruning ---------------------------------------------------------------------------
    def _run_pruning(self, epoch: int) -> None:
        prune = self._apply_pruning(epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(epoch) if callable(self.amount) else self.amount
        if not prune or not amount:
            return
        self.apply_pruning(amount)
        lottery = self._use_lottery_ticket_hypothesis
        if lottery(epoch) if callable(lottery) else lottery:
            self.apply_lottery_ticket_hypothesis()

    def apply_pruning(self, amount: Union[int, float]) -> None:
        """Prune ``parameters_to_prune`` by ``amount``."""
        before = [self._pruned_stats(m, n) for m, n in self._parameters_to_prune] if self._verbose else []
        if self._use_global_unstructured:
            kwargs = {**self._global_kwargs, "amount": amount}
            accepted = set(inspect.signature(self.pruning_fn).parameters) - {"self"}
            pytorch_prune.global_unstructured(self._parameters_to_prune, pruning_method=self.pruning_fn,
                                              **{k: v for k, v in kwargs.items() if k in accepted})
        else:
            for module, name in self._parameters_to_prune:
                self.pruning_fn(module, name=name, amount=amount)
        if self._verbose:
            self._log_sparsity(before, [self._pruned_stats(m, n) for m, n in self._parameters_to_prune], amount)

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Reset the weights that remain to their values at the fit's start (or new ones, ``resample_parameters``)."""
        for layer in (self._original_layers or {}).values():
            original = layer["data"]
            if self._resample_parameters and callable(getattr(original, "reset_parameters", None)):
                original = copy.deepcopy(original)
                original.reset_parameters()
            for i, name in layer["names"]:
                module, _ = self._parameters_to_prune[i]
                target = getattr(module, name + "_orig", None)
                target = target if target is not None else getattr(module, name)
                source = getattr(original, name)
                if isinstance(target, torch.Tensor) and isinstance(source, torch.Tensor):
                    target.data = source.data.to(target.device)

    def make_pruning_permanent(self, module: nn.Module) -> None:
        """Remove every pruning mask of ``module``'s layers, keeping the pruned values as plain parameters."""
        for layer in module.modules():
            for name in [n[:-len("_mask")] for n, _ in layer.named_buffers(recurse=False) if n.endswith("_mask")]:
                if hasattr(layer, name + "_orig"):
                    pytorch_prune.remove(layer, name)

    @staticmethod
    def sanitize_parameters_to_prune(pl_module: nn.Module, parameters_to_prune: Optional[ParameterList] = (),
                                     parameter_names: Sequence[str] = ()) -> ParameterList:
        """``parameters_to_prune`` checked against the model, or every ``parameter_names`` parameter of its layers."""
        names = tuple(parameter_names) or ModelPruning.PARAMETER_NAMES
        layers = [m for m in pl_module.modules() if not isinstance(m, _CONTAINERS)]
        if not parameters_to_prune:
            return [(m, n) for n in names for m in layers if isinstance(getattr(m, n, None), nn.Parameter)]
        if not (isinstance(parameters_to_prune, (list, tuple)) and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], nn.Module) and isinstance(p[1], str)
                for p in parameters_to_prune)):
            raise MisconfigurationException(
                "ModelPruning(parameters_to_prune=...) takes a list of (module, 'parameter name') pairs, or None.")
        known = {id(m) for m in layers}
        missing = [f"{type(m).__name__}.{n}" for m, n in parameters_to_prune if id(m) not in known or not hasattr(m, n)]
        if missing:
            raise MisconfigurationException(
                f"ModelPruning(parameters_to_prune=...) names what {type(pl_module).__name__} does not have: "
                f"{missing}.")
        return list(parameters_to_prune)

    @staticmethod
    def _pruned_stats(module: nn.Module, name: str) -> Tuple[int, int]:
        mask = getattr(module, f"{name}_mask", None)
        return (int((mask == 0).sum()), mask.numel()) if mask is not None else (0, 1)

    def _log_sparsity(self, before: List[Tuple[int, int]], after: List[Tuple[int, int]], amount: Any) -> None:
        if not is_rank_zero():
            return
        total = sum(n for _, n in after)
        was, now = sum(z for z, _ in before), sum(z for z, _ in after)
        log.info(f"Applied `{self._pruning_method_name}`. Pruned: {was}/{total} ({was / total:.2%}) -> "
                 f"{now}/{total} ({now / total:.2%})")
        if self._verbose == 2:
            for (module, name), (z0, n0), (z1, n1) in zip(self._parameters_to_prune, before, after):
                log.info(f"Applied `{self._pruning_method_name}` to `{module!r}.{name}` with amount={amount}. "
                         f"Pruned: {z0} ({z0 / n0:.2%}) -> {z1} ({z1 / n1:.2%})")


def _permanent_state_dict(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """``state_dict`` with each ``x_orig``/``x_mask`` pair replaced by ``x = x_orig * x_mask``, on the CPU."""
    result = dict(state_dict)
    for key in [k[:-len("_mask")] for k in state_dict if k.endswith("_mask")]:
        if key + "_orig" not in result:
            continue
        original, mask = result.pop(key + "_orig"), result.pop(key + "_mask")
        result[key] = mask.to(dtype=original.dtype) * original
    return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in result.items()}


def _copy_module(module: nn.Module) -> nn.Module:
    """A deep copy of ``module``, also while pruned (its masked weights are non-leaf tensors deepcopy refuses)."""
    attributes = vars(module)
    computed = {k: v for k, v in attributes.items() if isinstance(v, torch.Tensor) and not v.is_leaf}
    for key, value in computed.items():
        attributes[key] = value.detach().clone()
    try:
        return copy.deepcopy(module)
    finally:
        attributes.update(computed)


__all__ = ["ModelPruning", "PRUNING_FUNCTIONS", "PRUNING_METHODS"]
