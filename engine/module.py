"""``LightningModule``: an ``nn.Module`` that also says how it trains (the research code)."""
from __future__ import annotations

import inspect
import itertools
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import torch
from torch import nn

from hookloop.engine.apply import apply_to_tensors
from hookloop.engine.catalogue import add_noop_hooks, module_defaults, module_hooks
from hookloop.engine.errors import MisconfigurationException, UnknownFlagError, did_you_mean
from hookloop.engine.hparams import AttributeDict, HyperparametersMixin  # noqa: F401  (AttributeDict: its old home)
from hookloop.engine.metric_objects import dictionary_items
from hookloop.engine.results import DATALOADER_SUFFIX
from hookloop.engine.seed_attributes import derived


#: Every keyword ``self.log`` takes, of Lightning 2.x and 1.x (for "did you mean" suggestions).
_LOG_KEYWORDS = ("prog_bar", "logger", "on_step", "on_epoch", "reduce_fx", "enable_graph", "sync_dist", "batch_size",
                 "add_dataloader_idx", "sync_dist_group", "rank_zero_only", "metric_attribute", "sync_dist_op",
                 "tbptt_reduce_fx", "tbptt_pad_token")


def _unknown_log_keywords(name: str, unknown: Dict[str, Any]) -> UnknownFlagError:
    """The error for keywords ``self.log`` does not take (a typo is never swallowed)."""
    problems = [f"self.log({name!r}, ..., {key}=...) got an unknown keyword `{key}`." + did_you_mean(key, _LOG_KEYWORDS)
                for key in unknown]
    return UnknownFlagError(" ".join(problems) + f" self.log takes: {', '.join(_LOG_KEYWORDS)}.")


def _trainer_flag(name: str, doc: str) -> derived:
    """A module attribute that reads the trainer's ``name`` (``False`` outside a run) until assigned."""
    def compute(module: Any) -> bool:
        return bool(getattr(module._trainer, name, False))

    compute.__name__, compute.__doc__ = name, doc
    return derived(compute)


class LightningModule(HyperparametersMixin, nn.Module):
    """Research code: the model (``forward``), one step of training, and its optimizers.

    It stays a plain ``nn.Module``: ``model.eval(); model(x)`` and every ``nn.Module``
    method work. Override only the hooks you need; a hook you do not override costs nothing.
    Seed-era (0.8/0.9) and modern (2.x) hooks both work, side by side.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Optional[Any] = None
        self._automatic_optimization: bool = True

    # ----------------------------------------------------------------------------------
    # pickling: a module travels to other processes without its trainer
    # ----------------------------------------------------------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_trainer"] = None
        return state

    # ----------------------------------------------------------------------------------
    # properties
    # ----------------------------------------------------------------------------------

    @property
    def trainer(self) -> Any:
        """The :class:`engine.Trainer` running this module (``None`` outside a run)."""
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        self._trainer = trainer

    # Seed era: the trainer's flags, which 0.8 copied onto the module (assignable, as they were).
    use_dp = _trainer_flag("use_dp", "Seed era: ``trainer.use_dp`` (DataParallel, ``strategy='dp'`` on GPUs).")
    use_ddp = _trainer_flag("use_ddp", "Seed era: ``trainer.use_ddp`` (several processes).")
    use_ddp2 = _trainer_flag("use_ddp2", "Seed era: ``trainer.use_ddp2`` (always ``False``).")
    use_amp = _trainer_flag("use_amp", "Seed era: ``trainer.use_amp`` (16-bit mixed precision).")

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter or buffer (CPU if it has none)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in _replica_parameters(self):
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the module's first floating parameter (default dtype if none)."""
        for tensor in itertools.chain(self.parameters(), _replica_parameters(self)):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.get_default_dtype()

    @property
    def on_gpu(self) -> bool:
        """True when the module lives on a CUDA device."""
        return self.device.type == "cuda"

    @property
    def current_epoch(self) -> int:
        """The trainer's current epoch (0 outside a run)."""
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far (0 outside a run)."""
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        """This process's rank in the whole job."""
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        """This process's rank on its node."""
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def logger(self) -> Any:
        """The trainer's logger, ``trainer.logger`` (``self.logger.experiment`` is e.g. a ``SummaryWriter``)."""
        return getattr(self._trainer, "logger", None)

    @property
    def loggers(self) -> List[Any]:
        """Every logger of the trainer."""
        return list(getattr(self._trainer, "loggers", []) or [])

    @property
    def automatic_optimization(self) -> bool:
        """If ``False``, ``training_step`` does its own backward and optimizer steps."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = bool(value)

    # ----------------------------------------------------------------------------------
    # logging
    # ----------------------------------------------------------------------------------

    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool = True,
        on_step: Optional[bool] = None,
        on_epoch: Optional[bool] = None,
        reduce_fx: Union[str, Callable[..., Any]] = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        batch_size: Optional[int] = None,
        add_dataloader_idx: bool = True,
        *,
        sync_dist_group: Any = None,
        rank_zero_only: bool = False,
        metric_attribute: Optional[str] = None,
        sync_dist_op: Any = None,
        tbptt_reduce_fx: Any = None,
        tbptt_pad_token: Any = None,
        **unknown: Any,
    ) -> None:
        """Log a scalar, with Lightning's defaults per hook.

        In ``training_step`` and the training batch hooks: ``on_step=True, on_epoch=False``.
        In validation/test steps and all epoch-level hooks: ``on_step=False, on_epoch=True``.
        With both, loggers get ``name_step`` and ``name_epoch``. Epoch values are reduced
        with ``reduce_fx`` (weighted by ``batch_size`` for ``'mean'``; when not given, the first
        dimension of the batch's first tensor, as in Lightning): ``'mean'`` (or ``'avg'``),
        ``'sum'``, ``'max'``, ``'min'``, or ``torch.mean``/``torch.sum``/``torch.max``/``torch.min``
        and the built-in ``sum``/``max``/``min``. ``sync_dist=True``
        reduces them across processes. ``prog_bar=True`` shows it in the progress bar.
        While a validation/test loop runs several dataloaders, ``name`` becomes
        ``name/dataloader_idx_N`` unless ``add_dataloader_idx=False``. Outside a run, calls are ignored.

        As in Lightning, logging ``on_step=True`` (or ``on_epoch=False``) in an epoch-level hook, or
        one name with other options than earlier in the same epoch, is an error. Lightning 1.x's
        keywords are accepted: ``sync_dist_op`` (1.x's ``reduce_fx`` of the sync, used as ``reduce_fx``
        when that is left at its default), ``rank_zero_only`` (values are logged from rank zero anyway),
        ``sync_dist_group`` (ignored with a warning: the reduction covers every process), and
        ``metric_attribute``, ``tbptt_reduce_fx``, ``tbptt_pad_token`` (no effect: a metric object is
        found by its value). Any other keyword is an error with the closest one.

        ``value`` may be a torchmetrics ``Metric`` (as in Lightning 2.x): the step value is what its
        ``forward`` returned for the batch, the epoch value its ``compute()`` at the epoch's end, after
        which it is ``reset()``; it syncs across processes itself (``sync_dist``/``reduce_fx`` do not apply).
        """
        if unknown:
            raise _unknown_log_keywords(name, unknown)
        if sync_dist_op is not None:
            warnings.warn(f"self.log({name!r}, sync_dist_op={sync_dist_op!r}) is Lightning 1.x's spelling; use "
                          f"reduce_fx={sync_dist_op!r}.", DeprecationWarning, stacklevel=2)
            if isinstance(reduce_fx, str) and reduce_fx == "mean":
                reduce_fx = sync_dist_op
        if sync_dist_group is not None:
            warnings.warn(f"self.log({name!r}, sync_dist_group=...) is ignored: with sync_dist=True hookloop "
                          "reduces over every process.", UserWarning, stacklevel=2)
        trainer = self._trainer
        if trainer is None:
            return
        if add_dataloader_idx and trainer.state.dataloader_idx is not None:
            name = f"{name}{DATALOADER_SUFFIX}{trainer.state.dataloader_idx}"
        trainer.results.log(
            name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
            reduce_fx=reduce_fx, sync_dist=sync_dist, batch_size=batch_size, hook="self.log",
            enable_graph=enable_graph,
        )

    def log_dict(self, dictionary: Any, **kwargs: Any) -> None:
        """Call :meth:`log` for every item of ``dictionary`` with the same options.

        ``dictionary`` is a dict of name -> value, or a torchmetrics ``MetricCollection``, whose
        metrics are logged under their names with the collection's ``prefix``/``postfix``.
        """
        for name, value in dictionary_items(dictionary):
            self.log(name, value, **kwargs)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank zero only."""
        if self.global_rank == 0:
            print(*args, **kwargs)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """``data`` of every process: each tensor (numbers become tensors on ``self.device``) stacked along a
        new first dimension of size ``world_size``, inside the same lists, dicts... (``trainer.strategy.all_gather``).

        In a single process the tensors come back as they are, as in Lightning. ``sync_grads=True`` lets
        gradients flow back through the gather.
        """
        device = self.device
        data = apply_to_tensors(data, lambda v: torch.as_tensor(v, device=device), (torch.Tensor, bool, int, float))
        trainer = self._trainer
        if trainer is None:
            return data
        strategy = trainer.strategy
        return apply_to_tensors(data, lambda t: strategy.all_gather(t, group=group, sync_grads=sync_grads))

    def get_progress_bar_dict(self) -> Dict[str, Any]:
        """Seed era (0.8/0.9): the progress bar's standard items, the running-mean ``loss`` and ``v_num``.

        Override it to change what the bar shows; ``super().get_progress_bar_dict()`` gives these
        defaults (e.g. pop ``'v_num'``). Metrics logged with ``prog_bar=True`` are shown after them.
        Modern code overrides ``TQDMProgressBar.get_metrics`` instead.
        """
        bar = getattr(self._trainer, "progress_bar_callback", None)
        return bar.standard_metrics(self._trainer) if bar is not None else {}

    def get_tqdm_dict(self) -> Dict[str, Any]:
        """Deprecated 0.7 name of :meth:`get_progress_bar_dict` (which is what the bar calls, as in 0.8/0.9)."""
        warnings.warn("`get_tqdm_dict` was renamed to `get_progress_bar_dict`; call that instead.", DeprecationWarning)
        return self.get_progress_bar_dict()

    # ----------------------------------------------------------------------------------
    # optimization helpers (manual optimization)
    # ----------------------------------------------------------------------------------

    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer (or list of them) built from :meth:`configure_optimizers`.

        By default each is wrapped so that ``opt.step()`` goes through the trainer (precision,
        ``on_before_optimizer_step``, step counting); ``use_pl_optimizer=False`` gives the
        plain torch optimizers.
        """
        trainer = self._trainer
        opts = list(getattr(trainer, "lightning_optimizers", None) or []) if use_pl_optimizer else []
        if not opts:
            opts = list(getattr(trainer, "optimizers", []) or [])
        return opts[0] if len(opts) == 1 else opts

    def lr_schedulers(self) -> Any:
        """The scheduler (or list of them), or ``None`` if there are none."""
        configs = list(getattr(self._trainer, "lr_scheduler_configs", []) or [])
        scheds = [c.scheduler if hasattr(c, "scheduler") else c for c in configs]
        if not scheds:
            return None
        return scheds[0] if len(scheds) == 1 else scheds

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward for manual optimization: fires ``on_before_backward``/``on_after_backward`` and goes
        through the trainer's ``backward`` hook (so the precision can scale the loss).

        Extra ``args``/``kwargs`` (e.g. ``retain_graph=True``) reach :meth:`backward`.
        """
        trainer = self._trainer
        if trainer is None:
            loss.backward(*args, **kwargs)
            return
        if self._automatic_optimization:
            raise MisconfigurationException(
                "manual_backward() is for manual optimization: set `self.automatic_optimization = False` in "
                f"{type(self).__name__}.__init__, or return the loss from training_step and let the trainer step."
            )
        hooks = trainer.hooks
        if hooks.on_before_backward is not None:
            hooks.on_before_backward(trainer, self, loss)
        if args or kwargs:
            precision = getattr(trainer, "precision_plugin", None)
            self.backward(precision.pre_backward(loss) if precision is not None else loss, *args, **kwargs)
        else:
            hooks.backward(trainer, self, loss, None, None)
        if hooks.on_after_backward is not None:
            hooks.on_after_backward(trainer, self)

    def toggle_optimizer(self, optimizer: Any, optimizer_idx: Optional[int] = None) -> None:
        """Freeze (``requires_grad=False``) the parameters of every *other* optimizer; undo with :meth:`untoggle_optimizer`.

        ``optimizer``'s own parameters keep the ``requires_grad`` they had. The trainer calls
        this around each optimizer's step when there are several (seed-era ``optimizer_idx``);
        under manual optimization call it yourself (2.x: ``toggle_optimizer(opt)``).
        """
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        saved = self.__dict__.setdefault("_toggled_requires_grad", {})
        for opt in getattr(self._trainer, "optimizers", []) or []:
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) not in own:
                        saved.setdefault(id(p), (p, p.requires_grad))
                        p.requires_grad = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) in saved:
                    p.requires_grad = saved.pop(id(p))[1]

    def untoggle_optimizer(self, optimizer: Any = None) -> None:
        """Restore the ``requires_grad`` flags :meth:`toggle_optimizer` changed (takes an optimizer or an index)."""
        saved = self.__dict__.get("_toggled_requires_grad", {})
        for p, flag in saved.values():
            p.requires_grad = flag
        saved.clear()

    @property
    def example_input_array(self) -> Any:
        """A sample input of ``forward`` (``None`` until set): ``to_torchscript(method='trace')`` traces with it."""
        return self.__dict__.get("_example_input_array")

    @example_input_array.setter
    def example_input_array(self, example: Any) -> None:
        self.__dict__["_example_input_array"] = example

    #: Whether resuming or evaluating from ``ckpt_path`` loads the weights strictly (every key, and no other;
    #: Lightning 2.x's attribute). Set it to ``False`` in ``__init__`` to load a checkpoint of a changed model.
    strict_loading: bool = True

    def to_torchscript(self, file_path: Any = None, method: str = "script", example_inputs: Any = None,
                       **kwargs: Any) -> Any:
        """The module compiled with ``torch.jit.script`` (default) or ``torch.jit.trace`` (``method='trace'``, on
        ``example_inputs`` or else ``example_input_array``), in ``eval()`` mode; saved to ``file_path`` when
        given (``torch.jit.save``). The module's own mode is left as it was. ``kwargs`` go to script/trace."""
        training = self.training
        try:
            if method == "script":
                compiled = torch.jit.script(self.eval(), **kwargs)
            elif method == "trace":
                example = example_inputs if example_inputs is not None else self.example_input_array
                if example is None:
                    raise MisconfigurationException(
                        f"{type(self).__name__}.to_torchscript(method='trace') needs an input to trace with: pass "
                        "example_inputs=..., or set self.example_input_array in __init__.")
                example = apply_to_tensors(example, lambda t: t.to(self.device))
                compiled = torch.jit.trace(self.eval(), example, **kwargs)
            else:
                raise MisconfigurationException(
                    f"{type(self).__name__}.to_torchscript(method={method!r}): use 'script' or 'trace'.")
        finally:
            self.train(training)
        if file_path is not None:
            torch.jit.save(compiled, file_path)
        return compiled

    def freeze(self) -> None:
        """Turn off gradients for every parameter and switch to ``eval()``."""
        for p in self.parameters():
            p.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Turn gradients back on for every parameter and switch to ``train()``."""
        for p in self.parameters():
            p.requires_grad = True
        self.train()

    # ----------------------------------------------------------------------------------
    # overridable steps (defaults used by the built-in plugins)
    # ----------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        """Return the optimizer(s) and optional scheduler(s) (every form Lightning accepts)."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `configure_optimizers`. Define it to return an optimizer, "
            "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Compute and return the loss of one batch (a tensor, or a dict with ``'loss'``)."""
        raise MisconfigurationException(
            f"{type(self).__name__} has no `training_step(self, batch, batch_idx)`; define it to train."
        )

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Compute gradients; override for custom backward (default ``loss.backward()``).

        The trainer calls an override in its era's signature: 2.x ``backward(self, loss)``,
        1.x ``backward(self, loss, optimizer, optimizer_idx)``, 0.8 ``backward(self, trainer,
        loss, optimizer, optimizer_idx)``; this default accepts all three from ``super()``.
        """
        if not isinstance(loss, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
            loss, args = args[0], args[1:]  # 0.8: (trainer, loss, optimizer, optimizer_idx)
        # Optimizers and optimizer indices (1.x/0.8) are not arguments of Tensor.backward.
        args = tuple(a for a in args if isinstance(a, (torch.Tensor, bool)))
        loss.backward(*args, **kwargs)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_idx: Any = 0,
        optimizer_closure: Any = None, *args: Any, **kwargs: Any,
    ) -> None:
        """Step ``optimizer``; override for learning-rate warm-up etc.

        2.x signature: ``optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None)``;
        seed-era/1.x: ``(self, epoch, batch_idx, optimizer, optimizer_idx, optimizer_closure, ...)``.
        The trainer calls an override in the signature it declares. Call
        ``optimizer.step(closure=optimizer_closure)`` inside: the closure returns the loss
        (LBFGS may call it again to re-evaluate).
        """
        if callable(optimizer_idx):  # 2.x order: the closure came in the optimizer_idx slot
            optimizer_closure = optimizer_idx
        optimizer_closure = kwargs.pop("second_order_closure", optimizer_closure)  # 0.8 keyword
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_idx: int = 0) -> None:
        """Clear gradients; override to change how (default ``zero_grad()``)."""
        optimizer.zero_grad()

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Optional[float] = None,
                                    gradient_clip_algorithm: Optional[str] = None) -> None:
        """Clip ``optimizer``'s gradients before its step; override for custom clipping.

        Called after ``on_before_optimizer_step`` (gradients already unscaled) with the
        Trainer's ``gradient_clip_val``/``gradient_clip_algorithm``. The default calls
        :meth:`clip_gradients`.
        """
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(self, optimizer: Any, gradient_clip_val: Optional[float] = None,
                       gradient_clip_algorithm: Optional[str] = None) -> None:
        """Clip the gradients of ``optimizer``'s parameters: by total 2-norm (``'norm'``, default) or by value."""
        if not gradient_clip_val:
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        algorithm = gradient_clip_algorithm or "norm"
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        elif algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            raise MisconfigurationException(
                f"gradient_clip_algorithm={algorithm!r} is unknown; use 'norm' or 'value'.")

    def tbptt_split_batch(self, batch: Any, split_size: int) -> List[Any]:
        """Split ``batch`` along its time dimension for ``Trainer(truncated_bptt_steps=split_size)`` (0.9's hook).

        The default splits each tensor of the batch (a list or tuple) at dim 1, and each list element's
        items at their dim 0 (a list of per-sample sequences), in pieces of ``split_size`` time steps;
        other elements are repeated in every piece. Override it for other layouts; return the pieces.
        """
        items = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        time_dims = [len(x[0]) for x in items if isinstance(x, (torch.Tensor, list, tuple)) and len(x)
                     and (not isinstance(x, torch.Tensor) or x.dim() > 1)]
        if not time_dims:
            raise MisconfigurationException(
                "tbptt_split_batch: found no time dimension in the batch (a tensor of shape (batch, time, ...) or "
                "a list of sequences); override tbptt_split_batch(self, batch, split_size) for this layout.")
        if any(t != time_dims[0] for t in time_dims):
            raise MisconfigurationException(
                f"tbptt_split_batch: the batch's time dimensions differ ({time_dims}); override "
                "tbptt_split_batch(self, batch, split_size) to split it.")
        splits = []
        for t in range(0, time_dims[0], split_size):
            piece = []
            for x in items:
                if isinstance(x, torch.Tensor) and x.dim() > 1:
                    piece.append(x[:, t:t + split_size])
                elif isinstance(x, (list, tuple)):
                    piece.append([sample[t:t + split_size] for sample in x])
                else:
                    piece.append(x)
            splits.append(piece)
        return splits

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int = 0) -> Any:
        """Move ``batch`` to ``device``; override for custom batch types."""
        from hookloop.engine.apply import move_to_device

        return move_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change ``batch`` before it moves to the device (e.g. CPU-side augmentation); return it."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change ``batch`` once it is on the device (e.g. GPU-side augmentation); return it."""
        return batch

    # The events' hooks (on_train_start, on_validation_batch_end, ...) are documented no-ops added
    # after the class from the catalogue (engine/hookspecs.py, ``@user_hook``); overriding one
    # registers it for the run. These two are the module's own:
    def prepare_data(self) -> None:
        """Download or write data (once per node or job)."""

    def on_batch_start(self, batch: Any) -> Optional[int]:
        """Seed-era: before each training batch; return -1 to skip the rest of the epoch."""

    def configure_callbacks(self) -> Any:
        """Callbacks of the model (a callback or a list of them), added to the trainer's at each run.

        A trainer callback of the same type as one returned here is replaced by it; checkpoint
        callbacks run last. Default: none.
        """
        return []

    # Dataloaders, steps and epoch-end aggregation are looked up by name when defined:
    # train_dataloader, val_dataloader, test_dataloader, predict_dataloader,
    # validation_step, test_step, predict_step, training_step_end, validation_step_end,
    # test_step_end, training_epoch_end(outputs), validation_epoch_end(outputs),
    # test_epoch_end(outputs).

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Return the prediction for one batch (default: ``self(batch)``)."""
        return self(batch)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, strict: bool = True,
                             hparams_file: Any = None, **overrides: Any) -> Any:
        """Build the module from a checkpoint's saved hyperparameters (``overrides`` win) and load its weights.

        ``hparams_file``: a ``.yaml`` (a logger's ``hparams.yaml``) or 0.8-style ``.csv`` whose hyperparameters
        replace the checkpoint's. The file is read with ``torch.load(weights_only=True)``; the module is returned
        in ``eval()`` mode.
        """
        from hookloop.engine.builtins import provided  # the file format belongs to the plugin that writes it

        return provided().load_from_checkpoint(cls, checkpoint_path, map_location=map_location, strict=strict,
                                               hparams_file=hparams_file, **overrides)


add_noop_hooks(LightningModule, module_hooks(), "LightningModule", module_defaults())
# torch.jit.script compiles a module's properties; the trainer-facing ones are Python only.
LightningModule.__jit_unused_properties__ = sorted(
    name for name in dir(LightningModule) if isinstance(inspect.getattr_static(LightningModule, name), property))


def _replica_parameters(module: nn.Module) -> Iterator[torch.Tensor]:
    """The parameters of a ``torch.nn.DataParallel`` replica, which ``parameters()`` does not yield: torch's
    ``replicate`` sets them as plain attributes and lists them in each submodule's ``_former_parameters``.
    Nothing for an ordinary module."""
    for sub in module.modules():
        former = sub.__dict__.get("_former_parameters")
        if former:
            yield from former.values()


def is_overridden(name: str, obj: Any, parent: type = LightningModule) -> bool:
    """True if ``obj``'s class defines ``name`` itself rather than inheriting ``parent``'s."""
    attr = getattr(type(obj), name, None)
    if attr is None:
        return False
    return attr is not getattr(parent, name, None)
