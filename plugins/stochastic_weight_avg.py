"""``StochasticWeightAveraging``: average the weights of the last epochs into the model (Izmailov et al., 2018).

As in Lightning 2.x: from the start epoch on, the model's weights at the start of every epoch up to the last
are averaged (``torch.optim.swa_utils``' equal average unless ``avg_fn`` says otherwise), and the optimizer's
learning rate follows ``torch.optim.swa_utils.SWALR`` (annealed to ``swa_lrs``), which replaces the module's
scheduler. When training ends the averaged weights are put into the model. A model with BatchNorm layers gets
one more epoch that only runs ``training_step`` forward (no backward, no optimizer step) to recompute their
statistics for the averaged weights; ``trainer.max_epochs`` is one higher during it and restored after.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import nn
from torch.optim.swa_utils import SWALR

from hookloop.engine import Callback, hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.markers import SKIPPED_BATCH
from hookloop.plugins.optimizer_config import LRSchedulerConfig

#: ``avg_fn(averaged_parameter, model_parameter, num_averaged) -> new averaged parameter``.
AvgFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: Name under which the forward-only epoch's batch runner is registered while it runs.
_BATCH_NORM_PASS = "swa_batch_norm_pass"


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging of the model's weights over the last epochs of ``fit``.

    Args:
        swa_lrs: The SWA learning rate: one float for every parameter group, or a list of one per group.
        swa_epoch_start: An int ``n``: averaging starts with the ``n``-th epoch (counting from 1); a float in
            ``[0, 1]``: at epoch ``int(swa_epoch_start * max_epochs)``.
        annealing_epochs: Epochs over which the learning rate anneals to ``swa_lrs``.
        annealing_strategy: ``'cos'`` or ``'linear'`` annealing.
        avg_fn: The averaging function (default: the equal average of every model seen).
        device: Where the averaged copy of the model lives (``None``: the model's device).
    """

    def __init__(self, swa_lrs: Union[float, List[float]], swa_epoch_start: Union[int, float] = 0.8,
                 annealing_epochs: int = 10, annealing_strategy: str = "cos", avg_fn: Optional[AvgFn] = None,
                 device: Optional[Union[torch.device, str]] = torch.device("cpu")) -> None:
        if isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)) or (
                isinstance(swa_epoch_start, int) and swa_epoch_start < 1) or (
                isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}): give an int >= 1 (an epoch, counting "
                "from 1) or a float between 0 and 1 (a fraction of max_epochs).")
        lrs = swa_lrs if isinstance(swa_lrs, list) else [swa_lrs]
        if not lrs or not all(isinstance(lr, float) and lr > 0 for lr in lrs):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}): give a positive float, or a list of positive floats "
                "(one per parameter group).")
        if annealing_strategy not in ("cos", "linear"):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}): use 'cos' or 'linear'.")
        if avg_fn is not None and not callable(avg_fn):
            raise MisconfigurationException("StochasticWeightAveraging(avg_fn=...) must be callable.")
        if device is not None and not isinstance(device, (torch.device, str)):
            raise MisconfigurationException(
                f"StochasticWeightAveraging(device={device!r}): give a torch.device, a string or None.")
        #: How many models the average holds (a tensor once averaging has begun).
        self.n_averaged: Optional[torch.Tensor] = None
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn or self.avg_fn
        self._device = device
        self._model_contains_batch_norm: Optional[bool] = None
        self._average_model: Optional[nn.Module] = None
        self._initialized = False
        self._swa_scheduler: Optional[SWALR] = None
        self._scheduler_state: Optional[Dict[str, Any]] = None
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self._max_epochs = 0
        self._epochs_added = 0
        self._batch_norm_epoch = False
        #: BatchNorm layer -> its momentum, while the forward-only epoch recomputes their statistics.
        self.momenta: Dict[nn.Module, Optional[float]] = {}

    @property
    def swa_start(self) -> int:
        """The first averaged epoch (from 0)."""
        return max(int(self._swa_epoch_start) - 1, 0)

    @property
    def swa_end(self) -> int:
        """The last averaged epoch (from 0): the fit's last."""
        return self._max_epochs - 1

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        """True if any submodule is a BatchNorm layer."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in pl_module.modules())

    # ---- hooks ---------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Copy the model (before it moves to its device): the copy holds the average."""
        if stage == "fit":
            self._average_model = copy.deepcopy(pl_module)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Check the set-up; resolve the start epoch; one more epoch for BatchNorm statistics."""
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException(
                f"StochasticWeightAveraging works with one optimizer; configure_optimizers returned "
                f"{len(trainer.optimizers)}.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException(
                "StochasticWeightAveraging replaces the learning-rate scheduler; configure_optimizers returned "
                f"{len(trainer.lr_scheduler_configs)}. Return at most one.")
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise MisconfigurationException(
                "StochasticWeightAveraging averages up to the last epoch, so it needs Trainer(max_epochs=...).")
        if isinstance(self._swa_epoch_start, float):
            self._swa_epoch_start = int(trainer.max_epochs * self._swa_epoch_start)
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        self._max_epochs = trainer.max_epochs
        if self._model_contains_batch_norm:
            trainer.max_epochs += 1  # the forward-only epoch; restored at on_train_end (or teardown)
            self._epochs_added = 1
        if self._scheduler_state is not None:
            # Resumed after the swap: the SWA scheduler is rebuilt from its state at the next epoch start.
            trainer.lr_scheduler_configs.clear()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Take over the learning rate at the start epoch, average, and start the BatchNorm epoch."""
        epoch = trainer.current_epoch
        if not self._initialized and self.swa_start <= epoch <= self.swa_end:
            self._initialize(trainer, pl_module)
        if self.swa_start <= epoch <= self.swa_end and epoch > self._latest_update_epoch:
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch
        if epoch == self.swa_end + 1:  # only a model with BatchNorm gets this epoch
            self.transfer_weights(self._average_model, pl_module)
            self.reset_batch_norm_and_save_state(pl_module)
            self._batch_norm_epoch = True
            trainer.registry.add(_ForwardOnly(), _BATCH_NORM_PASS, "code", origin="StochasticWeightAveraging")

    def _initialize(self, trainer: Any, pl_module: Any) -> None:
        self._initialized = True
        self._average_model = self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        if not isinstance(self._swa_lrs, list):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        self._swa_scheduler = SWALR(optimizer, swa_lr=self._swa_lrs, anneal_epochs=self._annealing_epochs,
                                    anneal_strategy=self._annealing_strategy,
                                    last_epoch=trainer.max_epochs if self._annealing_strategy == "cos" else -1)
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            warnings.warn("StochasticWeightAveraging starts after its start epoch without a checkpoint of its state; "
                          "the average holds fewer models than an uninterrupted run's.")
        config = LRSchedulerConfig(self._swa_scheduler)
        if trainer.lr_scheduler_configs:
            replaced = trainer.lr_scheduler_configs[0]
            if replaced.interval != "epoch" or replaced.frequency != 1:
                warnings.warn(f"StochasticWeightAveraging steps its scheduler every epoch; the module's "
                              f"{type(replaced.scheduler).__name__} (interval={replaced.interval!r}, frequency="
                              f"{replaced.frequency}) is replaced by it.")
            trainer.lr_scheduler_configs[0] = config
        else:
            trainer.lr_scheduler_configs.append(config)
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """The forward-only epoch is over: training batches optimize again."""
        if self._batch_norm_epoch:
            self._batch_norm_epoch = False
            if trainer.registry.has_plugin(_BATCH_NORM_PASS):
                trainer.registry.remove(_BATCH_NORM_PASS)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Put the average into the model (after the BatchNorm epoch: restore ``max_epochs`` and the momenta)."""
        finished = trainer.state.epoch - 1  # the loop counted the last epoch already (in every era)
        if self._model_contains_batch_norm and finished == self.swa_end + 1:
            self._give_back(trainer)
        elif finished == self.swa_end:
            self.transfer_weights(self._average_model, pl_module)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """A fit that stopped early or failed gets ``max_epochs`` and the BatchNorm momenta back too."""
        if stage != "fit":
            return
        if trainer.registry.has_plugin(_BATCH_NORM_PASS):
            trainer.registry.remove(_BATCH_NORM_PASS)
        self._give_back(trainer)

    def _give_back(self, trainer: Any) -> None:
        trainer.max_epochs -= self._epochs_added
        self._epochs_added = 0
        self.reset_momenta()
        self.momenta = {}

    # ---- the averaging ---------------------------------------------------------------------
    @staticmethod
    def transfer_weights(src_pl_module: nn.Module, dst_pl_module: nn.Module) -> None:
        """Copy the parameters of ``src_pl_module`` into ``dst_pl_module``."""
        for src, dst in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
            dst.detach().copy_(src.to(dst.device))

    def reset_batch_norm_and_save_state(self, pl_module: nn.Module) -> None:
        """Zero every BatchNorm layer's statistics and make them a cumulative average (momentum ``None``)."""
        self.momenta = {}
        for module in pl_module.modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.running_mean is None:
                continue
            module.running_mean = torch.zeros_like(module.running_mean)
            module.running_var = torch.ones_like(module.running_var)
            self.momenta[module] = module.momentum
            module.momentum = None
            module.num_batches_tracked *= 0

    def reset_momenta(self) -> None:
        """Give the BatchNorm layers their momenta back."""
        for module, momentum in self.momenta.items():
            module.momentum = momentum

    @staticmethod
    def update_parameters(average_model: nn.Module, model: nn.Module, n_averaged: torch.Tensor, avg_fn: AvgFn) -> None:
        """Average ``model``'s parameters into ``average_model``'s; count one more model in ``n_averaged``."""
        for p_swa, p_model in zip(average_model.parameters(), model.parameters()):
            swa, current = p_swa.detach(), p_model.detach().to(p_swa.device)
            swa.copy_(current if n_averaged == 0 else avg_fn(swa, current, n_averaged.to(p_swa.device)))
        n_averaged += 1

    @staticmethod
    def avg_fn(averaged_model_parameter: torch.Tensor, model_parameter: torch.Tensor,
               num_averaged: torch.Tensor) -> torch.Tensor:
        """The equal average: the running mean of every model seen."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The average, how many models it holds, and the SWA scheduler's state."""
        return {
            "n_averaged": 0 if self.n_averaged is None else int(self.n_averaged.item()),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._init_n_averaged = state_dict["n_averaged"]
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        if self._average_model is not None and state_dict.get("average_model_state") is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])


class _ForwardOnly:
    """Runs a training batch's ``training_step`` without gradients, backward or optimizer step.

    Registered only during the BatchNorm epoch (``tryfirst``: it replaces the optimization plugin's batch).
    """

    @hookimpl(tryfirst=True)
    def run_training_batch(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> Any:
        """The step's output as ``on_train_batch_end`` expects it."""
        with torch.no_grad():
            output = trainer.hooks.training_step(trainer, pl_module, batch, batch_idx, None)
        if output is None:
            return SKIPPED_BATCH
        return {"loss": output.detach()} if isinstance(output, torch.Tensor) else output


__all__ = ["StochasticWeightAveraging"]
