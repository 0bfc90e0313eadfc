"""``Trainer``: the engineering side of a run. It holds the flags, the plugin registry and the state."""
from __future__ import annotations

import inspect
import math
import os
import sys
from types import TracebackType
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from hookloop.engine.builtins import provided
from hookloop.engine.combined_loader import CombinedLoader, combine_train_loaders, evaluation_loaders
from hookloop.engine.dataloader_kinds import LOADER_METHODS, STAGE_LOADERS
from hookloop.engine.errors import (FlagError, MisconfigurationException, PluginError, UnknownFlagError, check_int_flag,
                                    did_you_mean)
from hookloop.engine.loop import (FitLoop, check_limit, check_val_check_interval, is_zero_limit, num_batches,
                                  run_evaluation)
from hookloop.engine.loop_views import EvaluationLoopView, FitLoopView, PredictionLoopView
from hookloop.engine.plugin_checks import check_given
from hookloop.engine.registry import PluginRegistry, entry_points
from hookloop.engine.reporting_list import ReportingList
from hookloop.engine.results import DATALOADER_SUFFIX, ResultCollection, format_eval_results
from hookloop.engine.seed_attributes import SeedTrainerAttributes
from hookloop.engine.seed_flags import (check_track_grad_norm, check_truncated_bptt_steps, resolve_seed_flags,
                                        uses_seed_only_flags)
from hookloop.engine.seed_tuning import SeedTuningMethods
from hookloop.engine.state import LoopState, RunningStage, TrainerFn, TrainerStatus
from hookloop.engine.trainer_objects import TrainerObjects

#: The name the LightningModule's own hooks are registered under (the ``module_plugin`` hook's adapter).
MODULE_PLUGIN_NAME = "lightning_module"

#: Modules whose frames a configuration error's traceback leaves out (the culprit is in the message).
_INTERNAL_MODULES = ("hookloop.", "pluggy.")



class Trainer(TrainerObjects, SeedTrainerAttributes, SeedTuningMethods):
    """Runs a :class:`engine.LightningModule`: ``fit``, ``validate``, ``test``, ``predict``.

    Every behaviour is a plugin (see ``python -m engine plugins``); the flags below
    configure the built-in ones. Seed-era (0.8/0.9) and 2.x names are both accepted.

    Args:
        logger: ``True`` for the default TensorBoard logger, ``False`` for none, or a logger (or list of them).
        checkpoint_callback: Seed-era: ``True``/``False`` to turn the default ModelCheckpoint on/off, or an instance.
        enable_checkpointing: 2.x name for turning the default ModelCheckpoint on/off.
        early_stop_callback: Seed-era: ``True`` for EarlyStopping(monitor='val_loss', patience=3), or an instance.
        callbacks: Callbacks to attach (``Callback`` subclasses or plugins), called in list order.
        plugins: Plugin objects or modules with ``@hookimpl`` methods to register.
        disable_plugins: Names of built-in or entry-point plugins not to register.
        default_root_dir: Root directory for logs and checkpoints (default: the working directory).
        gradient_clip_val: Clip gradients at this value (0 or None: off).
        gradient_clip_algorithm: ``'norm'`` (default) or ``'value'``.
        process_position: Seed-era: position of the progress bar (several trainers in one terminal).
        num_nodes: Number of nodes for distributed training.
        num_processes: Seed-era: number of CPU processes (with ``distributed_backend='ddp_cpu'``).
        gpus: Seed-era: an int (how many GPUs), a list or a string (``'1, 2'``: which ones), -1 for all.
        accelerator: ``'cpu'``, ``'gpu'``/``'cuda'``, ``'mps'`` or ``'auto'`` (kept as ``trainer.accelerator_flag``;
            ``trainer.accelerator`` is the object, e.g. a ``CPUAccelerator``).
        devices: Number of devices, a list of device ids, or ``'auto'``.
        strategy: ``'auto'``, ``'ddp'`` or ``'ddp_spawn'`` (kept as ``trainer.strategy_flag``; ``trainer.strategy``
            is the object, e.g. a ``DDPStrategy``).
        distributed_backend: Seed-era name for the strategy: ``'ddp'``, ``'ddp_spawn'`` or ``'ddp_cpu'``.
        sync_batchnorm: Convert BatchNorm layers to SyncBatchNorm under DDP.
        enable_progress_bar: Show the tqdm progress bar (default on).
        progress_bar_refresh_rate: Seed-era: update the bar every N batches (0 turns it off).
        enable_model_summary: Print the model summary at fit start (default on).
        weights_summary: Seed-era: ``'top'``, ``'full'`` or ``None`` for the model summary.
        overfit_batches: Train (and validate) on this many batches (int) or fraction (float) of the training data.
        check_val_every_n_epoch: Validate every N training epochs.
        fast_dev_run: Run N (True: 1) batches of train/val/test as a smoke test; no logs or checkpoints.
        accumulate_grad_batches: Accumulate gradients over k batches (int, or a dict ``{epoch: k}``).
        max_epochs: Stop after this many epochs (default 1000 unless max_steps is set).
        min_epochs: Train at least this many epochs even if asked to stop.
        max_steps: Stop after this many optimizer steps (-1 or None: no limit).
        min_steps: Take at least this many optimizer steps even if asked to stop.
        limit_train_batches: Batches per training epoch: a fraction (float) or a count (int).
        limit_val_batches: Batches per validation run: a fraction (float) or a count (int).
        limit_test_batches: Batches per test run: a fraction (float) or a count (int).
        limit_predict_batches: Batches per predict run: a fraction (float) or a count (int).
        val_check_interval: Validate every fraction (float) of an epoch or every N (int) training batches.
        log_every_n_steps: Send step metrics to loggers every N optimizer steps (0: never; epoch metrics still go).
        row_log_interval: Seed-era name for log_every_n_steps.
        precision: 32 (default), 64, ``'bf16-mixed'`` or ``'16-mixed'`` (seed-era 16).
        num_sanity_val_steps: Validation batches to run before training (0: none, -1: all).
        resume_from_checkpoint: Seed-era: checkpoint to resume from (2.x: ``fit(ckpt_path=...)``).
        profiler: ``'simple'``, ``'advanced'`` or a profiler plugin; None for none.
        benchmark: Set ``torch.backends.cudnn.benchmark``.
        deterministic: Use deterministic algorithms (``torch.use_deterministic_algorithms``); ``"warn"`` warns
            instead of raising on an op without a deterministic version. Restored after the run.
        reload_dataloaders_every_n_epochs: Rebuild the dataloaders every N epochs (0: never).
        reload_dataloaders_every_epoch: Seed-era: rebuild the dataloaders every epoch.
        replace_sampler_ddp: Seed-era: insert a DistributedSampler under DDP.
        use_distributed_sampler: 2.x name for replace_sampler_ddp.
        terminate_on_nan: Stop with an error when the loss or the weights become NaN or inf.
        detect_anomaly: Run with ``torch.autograd.set_detect_anomaly`` and stop on a NaN/inf loss.
        prepare_data_per_node: Call prepare_data on local rank 0 of every node (True) or on global rank 0 only.
        max_time: Stop after this much time (``'DD:HH:MM:SS'``, a dict of timedelta arguments or seconds).
        inference_mode: Kept for 2.x compatibility; evaluation runs under ``torch.no_grad()``.
        weights_save_path: Seed-era: directory of the default checkpoint files (``<it>/checkpoints``).
        train_percent_check: 0.7 name of limit_train_batches (a fraction).
        val_percent_check: 0.7 name of limit_val_batches (a fraction).
        test_percent_check: 0.7 name of limit_test_batches (a fraction).
        overfit_pct: 0.7 name of overfit_batches (a fraction).
        log_save_interval: Seed-era; no effect (loggers write at every epoch end and every flush_secs).
        amp_backend: Seed-era; only ``'native'`` (torch.autocast).
        amp_level: Seed-era apex option; no effect.
        log_gpu_memory: Seed-era (0.9): ``'all'`` logs each GPU's memory (MB) at the step-logging steps,
            ``'min_max'`` the least and the most of them; nothing without CUDA (a warning).
        track_grad_norm: Seed-era: log the gradients' p-norm per parameter and in total before each optimizer
            step (``grad_2.0_norm_<name>``, ``grad_2.0_norm_total``); ``'inf'`` for the max norm, ``-1`` off.
        auto_select_gpus: Seed-era; no effect (the GPUs are those of gpus=/devices=).
        truncated_bptt_steps: Seed-era: truncated back-propagation through time, splitting each batch in
            pieces of this many time steps (``tbptt_split_batch``); each piece is an optimizer step.
        auto_lr_find: Seed-era (0.9): ``True`` sweeps the learning rate at the start of every ``fit`` and sets
            ``model.lr``/``learning_rate`` (or ``hparams``) to the suggestion; a string names that attribute.
        auto_scale_batch_size: Seed-era (0.9): ``True``/``'power'`` or ``'binsearch'`` sets ``model.batch_size``
            (or ``hparams``/the datamodule's) to the largest that fits in memory at the start of every ``fit``.
        tpu_cores: Seed-era; not supported (an error when set).
    """

    def __init__(
        self,
        logger: Any = True,
        checkpoint_callback: Any = None,
        enable_checkpointing: Optional[bool] = None,
        early_stop_callback: Any = False,
        callbacks: Optional[Sequence[Any]] = None,
        plugins: Optional[Sequence[Any]] = None,
        disable_plugins: Optional[Sequence[str]] = None,
        default_root_dir: Optional[str] = None,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: Optional[str] = None,
        process_position: int = 0,
        num_nodes: int = 1,
        num_processes: Optional[int] = None,
        gpus: Optional[Union[int, str, List[int]]] = None,
        accelerator: str = "auto",
        devices: Optional[Union[int, str, List[int]]] = "auto",
        strategy: str = "auto",
        distributed_backend: Optional[str] = None,
        sync_batchnorm: bool = False,
        enable_progress_bar: Optional[bool] = None,
        progress_bar_refresh_rate: Optional[int] = None,
        enable_model_summary: Optional[bool] = None,
        weights_summary: Optional[str] = "top",
        overfit_batches: Union[int, float] = 0.0,
        check_val_every_n_epoch: int = 1,
        fast_dev_run: Union[int, bool] = False,
        accumulate_grad_batches: Union[int, Dict[int, int]] = 1,
        max_epochs: Optional[int] = None,
        min_epochs: Optional[int] = None,
        max_steps: Optional[int] = -1,
        min_steps: Optional[int] = None,
        limit_train_batches: Union[int, float] = 1.0,
        limit_val_batches: Union[int, float] = 1.0,
        limit_test_batches: Union[int, float] = 1.0,
        limit_predict_batches: Union[int, float] = 1.0,
        val_check_interval: Union[int, float] = 1.0,
        log_every_n_steps: int = 50,
        row_log_interval: Optional[int] = None,
        precision: Union[int, str] = 32,
        num_sanity_val_steps: int = 2,
        resume_from_checkpoint: Optional[str] = None,
        profiler: Any = None,
        benchmark: Optional[bool] = None,
        deterministic: Optional[Union[bool, str]] = None,
        reload_dataloaders_every_n_epochs: int = 0,
        reload_dataloaders_every_epoch: bool = False,
        replace_sampler_ddp: bool = True,
        use_distributed_sampler: Optional[bool] = None,
        terminate_on_nan: bool = False,
        detect_anomaly: bool = False,
        prepare_data_per_node: bool = True,
        max_time: Any = None,
        inference_mode: bool = True,
        weights_save_path: Optional[str] = None,
        train_percent_check: Optional[float] = None,
        val_percent_check: Optional[float] = None,
        test_percent_check: Optional[float] = None,
        overfit_pct: Optional[float] = None,
        log_save_interval: Optional[int] = None,
        amp_backend: str = "native",
        amp_level: Optional[str] = None,
        log_gpu_memory: Optional[str] = None,
        track_grad_norm: Union[int, float, str] = -1,
        auto_select_gpus: bool = False,
        truncated_bptt_steps: Optional[int] = None,
        auto_lr_find: Union[bool, str] = False,
        auto_scale_batch_size: Union[bool, str] = False,
        tpu_cores: Optional[Union[int, str, List[int]]] = None,
        **unknown: Any,
    ) -> None:
        if unknown:  # a typo, or a flag of another Lightning version: name it and the closest real one
            known = [p for p in inspect.signature(Trainer.__init__).parameters if p not in ("self", "unknown")]
            raise UnknownFlagError("; ".join(
                f"Trainer({name}=...) is no flag of hookloop's Trainer." + did_you_mean(name, known)
                for name in unknown) + " See help(engine.Trainer) for the flags.")
        # ---- 0.8/0.9 flags without a 2.x counterpart: renamed, ignored with a warning, or refused ----
        seed_flags = dict(train_percent_check=train_percent_check, val_percent_check=val_percent_check,
                          test_percent_check=test_percent_check, overfit_pct=overfit_pct,
                          log_save_interval=log_save_interval, amp_backend=amp_backend, amp_level=amp_level,
                          log_gpu_memory=log_gpu_memory, auto_select_gpus=auto_select_gpus, tpu_cores=tpu_cores)
        seed = resolve_seed_flags(
            seed_flags,
            dict(limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                 limit_test_batches=limit_test_batches, overfit_batches=overfit_batches))
        limit_train_batches, limit_val_batches = seed["limit_train_batches"], seed["limit_val_batches"]
        limit_test_batches, overfit_batches = seed["limit_test_batches"], seed["overfit_batches"]
        self.log_gpu_memory = log_gpu_memory
        #: The 0.8/0.9 flags as given (``trainer.log_save_interval``, ``amp_level`` read them).
        self.seed_flags_given = {name: value for name, value in seed_flags.items() if value is not None}
        self.weights_save_path_flag = os.fspath(weights_save_path) if weights_save_path is not None else None
        # ---- flags, with seed-era names folded into the 2.x ones -----------------------
        self.logger_flag = logger
        if checkpoint_callback is not None and enable_checkpointing is not None and bool(checkpoint_callback) != bool(enable_checkpointing):
            raise MisconfigurationException(
                f"checkpoint_callback={checkpoint_callback!r} and enable_checkpointing={enable_checkpointing!r} "
                "disagree; pass only one of them."
            )
        self.checkpoint_callback_flag = checkpoint_callback if checkpoint_callback is not None else (
            True if enable_checkpointing is None else enable_checkpointing)
        self.enable_checkpointing = bool(self.checkpoint_callback_flag)
        self.early_stop_callback_flag = early_stop_callback
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.process_position = process_position
        self.num_nodes = num_nodes
        self.num_processes = num_processes
        self.gpus = gpus
        #: The ``accelerator``/``strategy`` flags as given (``trainer.accelerator``/``strategy`` are the objects).
        self.accelerator_flag = accelerator
        self.devices = devices
        self.strategy_flag = distributed_backend if distributed_backend is not None and strategy == "auto" else strategy
        self.distributed_backend = distributed_backend
        self.sync_batchnorm = sync_batchnorm
        fast_dev_run = int(fast_dev_run) if isinstance(fast_dev_run, bool) else fast_dev_run
        if not isinstance(fast_dev_run, int) or fast_dev_run < 0:
            raise FlagError("fast_dev_run", f"fast_dev_run must be a bool or an int >= 0, got {fast_dev_run!r}.")
        _check_flags(max_epochs=max_epochs, min_epochs=min_epochs, max_steps=max_steps, min_steps=min_steps,
                     check_val_every_n_epoch=check_val_every_n_epoch, num_sanity_val_steps=num_sanity_val_steps,
                     reload_dataloaders_every_n_epochs=reload_dataloaders_every_n_epochs,
                     limits=dict(limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                                 limit_test_batches=limit_test_batches, limit_predict_batches=limit_predict_batches,
                                 overfit_batches=overfit_batches),
                     val_check_interval=val_check_interval, deterministic=deterministic)
        if num_sanity_val_steps is None:  # Lightning 2.x's default spelling
            num_sanity_val_steps = 2
        self.fast_dev_run = fast_dev_run
        if enable_progress_bar is None:
            enable_progress_bar = progress_bar_refresh_rate != 0
        self.enable_progress_bar = bool(enable_progress_bar)
        self.progress_bar_refresh_rate = progress_bar_refresh_rate if progress_bar_refresh_rate else 1
        if enable_model_summary is None:
            enable_model_summary = weights_summary is not None
        self.enable_model_summary = bool(enable_model_summary)
        self.weights_summary = weights_summary if weights_summary is not None else "top"
        self.overfit_batches = overfit_batches
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self._accumulate_grad_batches = accumulate_grad_batches
        check_truncated_bptt_steps(truncated_bptt_steps)
        check_track_grad_norm(track_grad_norm)
        self.track_grad_norm = track_grad_norm
        self.truncated_bptt_steps = truncated_bptt_steps
        if max_steps is None:
            max_steps = -1
        if max_epochs is None:
            max_epochs = 1000 if max_steps == -1 else -1
        self.max_epochs = max_epochs
        self.min_epochs = min_epochs
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.limit_train_batches = limit_train_batches
        self.limit_val_batches = limit_val_batches
        self.limit_test_batches = limit_test_batches
        self.limit_predict_batches = limit_predict_batches
        self.val_check_interval = val_check_interval
        self.log_every_n_steps = _check_log_every_n_steps(log_every_n_steps, row_log_interval)
        self.precision = precision
        self.num_sanity_val_steps = num_sanity_val_steps
        self.resume_from_checkpoint = resume_from_checkpoint
        self.profiler = profiler
        self.benchmark = benchmark
        self.deterministic = deterministic
        self.reload_dataloaders_every_n_epochs = 1 if reload_dataloaders_every_epoch else reload_dataloaders_every_n_epochs
        self.use_distributed_sampler = replace_sampler_ddp if use_distributed_sampler is None else use_distributed_sampler
        self.terminate_on_nan = terminate_on_nan
        self.detect_anomaly = detect_anomaly
        self.prepare_data_per_node = prepare_data_per_node
        self.max_time = max_time
        self.inference_mode = inference_mode
        # Seed era: read by the built-in finders (plugins), which search at the start of fit.
        self.auto_lr_find = auto_lr_find
        self.auto_scale_batch_size = auto_scale_batch_size
        if fast_dev_run:
            n = fast_dev_run
            self.max_epochs, self.max_steps, self.num_sanity_val_steps = 1, n, 0
            self.limit_train_batches = self.limit_val_batches = self.limit_test_batches = n
            self.limit_predict_batches = n
            self.val_check_interval = 1.0
            self.check_val_every_n_epoch = 1
        if overfit_batches:
            self.limit_train_batches = self.limit_val_batches = overfit_batches

        # ---- what a run sets ------------------------------------------------------------
        self.state = LoopState(seed_era=uses_seed_only_flags(seed_flags))
        self.lightning_module: Any = None
        self.datamodule: Any = None
        self._optimizers: List[Any] = []
        self._lr_scheduler_configs: List[Any] = []
        #: ``self.optimizers()`` of the module: the optimizers wrapped so ``step()`` goes through the trainer.
        self.lightning_optimizers: List[Any] = []
        #: Truncated back-propagation (0.9's names): the hidden state handed to the running split's
        #: ``training_step(batch, batch_idx, hiddens)``, and that split's index (``None`` outside a split).
        self.hiddens: Any = None
        self.split_idx: Optional[int] = None
        self.loggers: List[Any] = []
        #: ``trainer.logger`` when there are several loggers (the reporting plugin sets their collection,
        #: as in 0.8/0.9); ``None``: the first logger, as in 2.x.
        self.combined_logger: Any = None
        self.root_device: Any = None
        self.strategy_model: Any = None
        self.global_rank = 0
        self.local_rank = 0
        self.node_rank = 0
        self.world_size = 1
        self.train_dataloader: Any = None
        self.val_dataloaders: List[Any] = []
        #: The loaders of the last ``test()``/``predict()`` (``val_dataloaders`` holds ``validate()``'s too).
        self.test_dataloaders: List[Any] = []
        self.predict_dataloaders: List[Any] = []
        self.num_training_batches: Union[int, float] = 0
        self.num_val_batches: List[Union[int, float]] = []
        #: Batches per test/predict dataloader of the running ``test()``/``predict()`` (as in Lightning).
        self.num_test_batches: List[Union[int, float]] = []
        #: Batches per validation dataloader of the sanity check (as in Lightning 2.x).
        self.num_sanity_val_batches: List[Union[int, float]] = []
        #: Training batches between two validations of the running ``fit`` (Lightning 2.x; ``math.inf`` before one).
        self.val_check_batch: Union[int, float] = math.inf
        #: Set by the ``signals`` plugin when SIGTERM reached this process during ``fit`` (Lightning 2.x's name).
        self.received_sigterm = False
        self.num_predict_batches: List[Union[int, float]] = []
        self.ckpt_path: Optional[str] = None
        #: Whether the running ``validate``/``test``/``predict`` call was given a model (else it runs the
        #: trainer's own, and the checkpoint plugin may pick the fit's best weights, as Lightning does).
        self.model_given = True
        # ---- the plugin surface: what the built-ins read and write, open to any plugin ----------
        #: The dataloaders passed to the running ``fit``/``validate``/``test``/``predict``, by kind
        #: (``"train"``, ``"val"``, ``"test"``, ``"predict"``; ``None`` when not passed).
        self.dataloaders_given: Dict[str, Any] = {}
        #: What ``self.log`` and seed-era returned dicts write during training / evaluation (a metrics
        #: plugin reduces them at the epoch's end): :class:`~hookloop.engine.results.ResultCollection`.
        self.train_results = ResultCollection(self.state, training=True)
        self.eval_results = ResultCollection(self.state, training=False)
        #: What the running ``validate``/``test``/``predict`` returns (set by its body; a launcher that ran
        #: the body in other processes sets it from theirs).
        self.run_results: Any = None
        #: The callbacks passed to ``Trainer(callbacks=...)``, in order.
        self.user_callbacks = list(callbacks or [])
        #: Lightning's loop objects, their progress counters derived from ``state`` (engine/loop_views.py).
        self.fit_loop = FitLoopView(self)
        self.validate_loop = EvaluationLoopView(self, "validate")
        self.test_loop = EvaluationLoopView(self, "test")
        self.predict_loop = PredictionLoopView(self)

        # ---- plugins ----------------------------------------------------------------------
        self.registry = PluginRegistry()
        #: Names given to ``disable_plugins``; built-in factories read it to leave those out.
        self.disabled_plugins = frozenset(disable_plugins or ())
        self._register_plugins(self.user_callbacks, list(plugins or []), list(disable_plugins or []))
        if self.hooks.on_init_start is not None:
            self.hooks.on_init_start(self)
        if self.hooks.on_init_end is not None:
            self.hooks.on_init_end(self)

    # ------------------------------------------------------------------------------------
    # plugins
    # ------------------------------------------------------------------------------------

    def _register_plugins(self, callbacks: List[Any], plugins: List[Any], disabled: List[str]) -> None:
        check_given(self.registry, callbacks, "callbacks")
        check_given(self.registry, plugins, "plugins")
        builtin = provided().default_plugins(self)  # the built-ins are plugins like any other
        known = [name for name, _ in builtin] + [ep.name for ep in entry_points()]
        for name in disabled:
            if name not in known:
                raise PluginError(
                    f"disable_plugins names {name!r}, which is no built-in or installed plugin."
                    + did_you_mean(name, known) + f" Known plugins: {', '.join(sorted(known))}."
                )
        registry = self.registry
        with registry.batch():
            for name, plugin in builtin:
                if name not in disabled:
                    registry.add(plugin, name, "builtin", origin="built-in")
            registry.load_entrypoint_plugins(disabled)
            # pluggy calls later registrations first; register in reverse for list order.
            for plugin in reversed(plugins):
                registry.add(plugin, _plugin_name(plugin, registry), "code", origin="code (Trainer(plugins=...))")
            for plugin in reversed(callbacks):
                registry.add(plugin, _plugin_name(plugin, registry), "callback", origin="code (Trainer(callbacks=...))")
        registry.check_all()

    @property
    def hooks(self) -> Any:
        """The prepared event dispatch (:class:`engine.dispatch.Dispatch`)."""
        return self.registry.dispatch

    # ---- what the optimization follows when reassigned (``optimization_changed``) -----------------
    def _optimization_changed(self, attribute: str) -> None:
        registry = self.__dict__.get("registry")  # None while __init__ sets the flags
        if registry is not None and registry.dispatch.optimization_changed is not None:
            registry.dispatch.optimization_changed(self, attribute)

    @property
    def accumulate_grad_batches(self) -> Union[int, Dict[int, int]]:
        """Accumulate gradients over k batches (int, or ``{epoch: k}``); assigning it during ``fit`` (e.g. in
        ``on_train_epoch_start``) changes the accumulation from the next batch on."""
        return self._accumulate_grad_batches

    @accumulate_grad_batches.setter
    def accumulate_grad_batches(self, value: Union[int, Dict[int, int]]) -> None:
        self._accumulate_grad_batches = value
        self._optimization_changed("accumulate_grad_batches")

    @property
    def optimizers(self) -> List[Any]:
        """The optimizers of the running ``fit``; assigning a new list during it, or changing this one in place
        (``append``, ``[0] = ...``), steps those from the next batch."""
        return self._optimizers

    @optimizers.setter
    def optimizers(self, value: List[Any]) -> None:
        self._optimizers = ReportingList(value, lambda: self._optimization_changed("optimizers"))
        self._optimization_changed("optimizers")

    @property
    def lr_scheduler_configs(self) -> List[Any]:
        """The learning-rate scheduler configs of the running ``fit``; assigning them during it, or changing
        this list in place, takes effect at once."""
        return self._lr_scheduler_configs

    @lr_scheduler_configs.setter
    def lr_scheduler_configs(self, value: List[Any]) -> None:
        self._lr_scheduler_configs = ReportingList(value, lambda: self._optimization_changed("lr_scheduler_configs"))
        self._optimization_changed("lr_scheduler_configs")

    @property
    def plugin_manager(self) -> PluginRegistry:
        """The pluggy plugin manager (:class:`engine.registry.PluginRegistry`)."""
        return self.registry

    @property
    def callbacks(self) -> List[Any]:
        """Every registered ``Callback`` (built-in ones included) in the order they are called, which is
        Lightning's order of ``trainer.callbacks``: the trainer's in their list order, then the module's
        ``configure_callbacks()``, then the built-ins, checkpoint callbacks last."""
        from hookloop.engine.callback import Callback

        records = [r for r in self.registry.records() if isinstance(r.plugin, Callback)]
        return [r.plugin for r in sorted(records, key=lambda record: record.call_key())]

    def plugin(self, name: str) -> Any:
        """The registered plugin called ``name``."""
        plugin = self.registry.get_plugin(name)
        if plugin is None:
            raise PluginError(f"No plugin named {name!r}." + did_you_mean(name, self.registry.names()))
        return plugin

    # ------------------------------------------------------------------------------------
    # state shortcuts (Lightning's names)
    # ------------------------------------------------------------------------------------

    @property
    def current_epoch(self) -> int:
        """The epoch being trained (counts from 0); after ``fit``, the number of epochs run (Lightning 2.x), or
        the last one's index after a seed-era run (Lightning 0.9; see ``LoopState.seed_era``)."""
        state = self.state
        return state.epoch - state.current_epoch_offset

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far."""
        return self.state.global_step

    @property
    def should_stop(self) -> bool:
        """Set to ``True`` (by any plugin or callback) to stop after the current batch."""
        return self.state.should_stop

    @should_stop.setter
    def should_stop(self, value: bool) -> None:
        self.state.should_stop = bool(value)

    @property
    def callback_metrics(self) -> Dict[str, Any]:
        """Every metric monitors can read (``val_loss``, logged values), name -> tensor."""
        return self.state.callback_metrics

    @property
    def logged_metrics(self) -> Dict[str, Any]:
        """Metrics sent to loggers, name -> tensor."""
        return self.state.logged_metrics

    @property
    def progress_bar_metrics(self) -> Dict[str, Any]:
        """Metrics shown in the progress bar, name -> tensor."""
        return self.state.progress_bar_metrics

    @property
    def sanity_checking(self) -> bool:
        """True during the sanity-check validation."""
        return self.state.sanity_checking

    @property
    def training(self) -> bool:
        """True while ``fit`` trains (``state.stage`` is ``RunningStage.TRAINING``; not during validation inside it)."""
        return self.state.stage == RunningStage.TRAINING

    @property
    def validating(self) -> bool:
        """True while a validation runs (inside ``fit`` or ``validate()``; not the sanity check)."""
        return self.state.stage == RunningStage.VALIDATING

    @property
    def predicting(self) -> bool:
        """True while ``predict()`` runs."""
        return self.state.stage == RunningStage.PREDICTING

    @property
    def evaluating(self) -> bool:
        """True while a validation or test runs."""
        stage = self.state.stage
        return stage is not None and stage.evaluating

    @property
    def is_global_zero(self) -> bool:
        """True in the process of global rank 0."""
        return self.global_rank == 0

    @property
    def model(self) -> Any:
        """The module being run (alias of ``lightning_module``)."""
        return self.lightning_module

    @property
    def results(self) -> ResultCollection:
        """Where ``self.log`` writes: the training collection, or the evaluation one during validation/test."""
        return self.train_results if self.state.phase.startswith("train") else self.eval_results

    @property
    def logger(self) -> Any:
        """The logger; with several, ``combined_logger`` if set (0.8/0.9), else the first; ``None`` without one."""
        loggers = self.loggers
        if len(loggers) > 1 and self.combined_logger is not None:
            return self.combined_logger
        return loggers[0] if loggers else None

    @property
    def log_dir(self) -> str:
        """Directory of the first logger's files, else ``default_root_dir``."""
        logger = self.logger
        return getattr(logger, "log_dir", None) or self.default_root_dir

    @property
    def checkpoint_callback(self) -> Any:
        """The first ModelCheckpoint-like callback (has ``best_model_path``), or ``None``."""
        return next((c for c in self.callbacks if hasattr(c, "best_model_path")), None)

    @property
    def checkpoint_callbacks(self) -> List[Any]:
        """Every ModelCheckpoint-like callback (has ``best_model_path``), in registration order."""
        return [c for c in self.callbacks if hasattr(c, "best_model_path")]

    @property
    def early_stopping_callbacks(self) -> List[Any]:
        """Every EarlyStopping-like callback (has ``wait_count``), in registration order."""
        return [c for c in self.callbacks if hasattr(c, "wait_count")]

    @property
    def is_last_batch(self) -> bool:
        """Whether the training batch being run (or the last one run) is its epoch's last (Lightning 2.x)."""
        return self.fit_loop.epoch_loop.batch_progress.is_last_batch

    @property
    def enable_validation(self) -> bool:
        """Whether this ``fit`` validates (Lightning 2.x's name of :attr:`has_validation`)."""
        return self.has_validation

    @property
    def progress_bar_callback(self) -> Any:
        """The first progress-bar callback (has ``standard_metrics``), or ``None`` when no bar is shown."""
        return next((c for c in self.callbacks if callable(getattr(c, "standard_metrics", None))), None)

    @property
    def running_loss(self) -> Any:
        """Seed era (0.8/0.9): the running training loss the progress bar shows. ``.mean()`` and ``.last()``
        give a tensor, or ``None`` before the first loss (always ``None`` without a progress bar)."""
        running = getattr(self.progress_bar_callback, "running_loss", None)
        return running if running is not None else _NoRunningLoss()

    @property
    def early_stopping_callback(self) -> Any:
        """The first EarlyStopping-like callback (has ``wait_count``), or ``None``."""
        return next((c for c in self.callbacks if hasattr(c, "wait_count")), None)

    @property
    def has_validation(self) -> bool:
        """True when this run validates (a ``validation_step`` and some validation data)."""
        module = self.lightning_module
        return module is not None and callable(getattr(module, "validation_step", None)) and self.limit_val_batches != 0

    # ------------------------------------------------------------------------------------
    # entry points
    # ------------------------------------------------------------------------------------

    def fit(
        self,
        model: Any,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Any = None,
        ckpt_path: Optional[str] = None,
        train_dataloader: Any = None,
    ) -> Optional[int]:
        """Train ``model``; validation runs as configured. ``ckpt_path`` resumes from a checkpoint.

        Returns None, as Lightning 2.x does; after a run that used an API only 0.8/0.9 had (``LoopState.seed_era``)
        it returns ``1``, 0.9's mark of a finished fit (``assert trainer.fit(model) == 1``).
        """
        if train_dataloader is not None:  # seed-era keyword
            train_dataloaders = train_dataloader
        if _looks_like_datamodule(train_dataloaders) and datamodule is None:
            datamodule, train_dataloaders = train_dataloaders, None
        self.dataloaders_given = {"train": train_dataloaders, "val": val_dataloaders}
        self.train_dataloader = None  # loaded by this fit (early if estimated_stepping_batches asks)
        self.ckpt_path = ckpt_path if ckpt_path is not None else self.resume_from_checkpoint
        self._run(model, datamodule, "fit", self._fit_body)
        return 1 if self.state.seed_era else None

    def validate(self, model: Any = None, dataloaders: Any = None, ckpt_path: Optional[str] = None,
                 datamodule: Any = None, verbose: bool = True) -> List[Dict[str, float]]:
        """Run one validation epoch; return ``[{metric: value}]`` per dataloader (printed as a table if ``verbose``)."""
        return self._evaluate(model, dataloaders, ckpt_path, datamodule, "validate", verbose)

    def test(self, model: Any = None, dataloaders: Any = None, ckpt_path: Optional[str] = None,
             datamodule: Any = None, verbose: bool = True, test_dataloaders: Any = None) -> List[Dict[str, float]]:
        """Run the test loop; return ``[{metric: value}]`` per dataloader (printed as a table if ``verbose``)."""
        return self._evaluate(model, dataloaders if dataloaders is not None else test_dataloaders,
                              ckpt_path, datamodule, "test", verbose)

    def predict(self, model: Any = None, dataloaders: Any = None, datamodule: Any = None,
                ckpt_path: Optional[str] = None, return_predictions: Optional[bool] = None) -> Any:
        """Run ``predict_step`` over the data; return the outputs (a list, or a list per dataloader).

        ``return_predictions=False`` keeps no outputs (what a ``BasePredictionWriter`` writing them to
        disk wants on a large dataset) and returns ``None``; ``None`` (the default) keeps them.
        """
        self.state.return_predictions = return_predictions is None or bool(return_predictions)
        return self._evaluate(model, dataloaders, ckpt_path, datamodule, "predict")

    # ------------------------------------------------------------------------------------
    # running
    # ------------------------------------------------------------------------------------

    def _evaluate(self, model: Any, dataloaders: Any, ckpt_path: Optional[str], datamodule: Any, stage: str,
                  verbose: bool = False) -> Any:
        if _looks_like_datamodule(dataloaders) and datamodule is None:
            datamodule, dataloaders = dataloaders, None
        self.model_given = model is not None
        model = model if model is not None else self.lightning_module
        if model is None:
            raise MisconfigurationException(f"trainer.{stage}() needs a model: pass trainer.{stage}(model, ...).")
        self.dataloaders_given = {STAGE_LOADERS[stage]: dataloaders}
        self.ckpt_path = ckpt_path
        self._run(model, datamodule if datamodule is not None else self.datamodule, stage,
                  lambda: self._evaluate_body(stage))
        if verbose and stage != "predict" and self.is_global_zero:
            table = format_eval_results(stage, self.run_results)
            if table:
                print(table)
        return self.run_results

    def _run(self, model: Any, datamodule: Any, stage: str, body: Any) -> None:
        from hookloop.engine.module import LightningModule

        if not isinstance(model, LightningModule):
            raise MisconfigurationException(
                f"Trainer.{'fit' if stage == 'fit' else stage}() expects a LightningModule, got {type(model).__name__}."
            )
        self.lightning_module = model
        self.datamodule = datamodule
        model.trainer = self
        if datamodule is not None:
            datamodule.trainer = self
        state = self.state
        state.fn = TrainerFn(stage)
        state.status = TrainerStatus.RUNNING
        state.running = True
        state.phase = ""  # the loop sets it once it starts; state.stage derives from both
        state.should_stop = False
        self.run_results = None
        # The module's hooks join for this run and stay until the next run replaces them, so that what is
        # fired between runs (trainer.save_checkpoint() after fit: on_save_checkpoint) reaches the module too.
        module_plugin = self.hooks.module_plugin(self, model) if self.hooks.module_plugin is not None else None
        with self.registry.batch():
            if self.registry.has_plugin(MODULE_PLUGIN_NAME):
                self.registry.remove(MODULE_PLUGIN_NAME)
            if module_plugin is not None:
                self.registry.add(module_plugin, MODULE_PLUGIN_NAME, "module",
                                  origin=f"{type(model).__qualname__} (the LightningModule)")
        try:
            launched = self.hooks.launch(self, body) if self.hooks.launch is not None else None
            if launched is None:
                body()
        except MisconfigurationException as exc:
            state.status = TrainerStatus.INTERRUPTED
            # A configuration error names its culprit; the engine's own frames would only bury it.
            raise exc.with_traceback(_without_engine_frames(exc.__traceback__))
        except BaseException:
            state.status = TrainerStatus.INTERRUPTED
            raise
        else:
            state.status = TrainerStatus.FINISHED
        finally:
            state.running = False

    def _guarded(self, stage: str, work: Any) -> None:
        """Run ``work`` between setup and teardown; on error run ``on_exception`` everywhere and re-raise."""
        module = self.lightning_module
        hooks = self.hooks
        try:
            if hooks.setup_environment is not None:
                hooks.setup_environment(self, module, stage)
            if hooks.prepare_data is not None:
                hooks.prepare_data(self, module)
            if hooks.setup is not None:
                hooks.setup(self, module, stage)
            if self.hooks.configure_model is not None:
                self.hooks.configure_model(self, module, stage)
            work()
        except BaseException as exc:
            self._handle_exception(exc)
            raise
        else:
            if self.hooks.finalize_logging is not None:
                self.hooks.finalize_logging(self, "success")
        finally:
            self._teardown(stage, module)

    def _teardown(self, stage: str, module: Any) -> None:
        if self.hooks.teardown is None:
            return
        failing = sys.exc_info()[0] is not None
        try:
            self.hooks.teardown(self, module, stage)
        except Exception as exc:
            if not failing:
                raise
            # The run already failed: report teardown's error, keep the original one.
            print(f"[hookloop] teardown failed after an error: {exc!r}", file=sys.stderr)

    def run_stage(self, stage: str) -> None:
        """Run the body of ``stage`` (``"fit"``, ``"validate"``, ``"test"``, ``"predict"``) in this process.

        This is what the function handed to the ``launch`` hook does; a launcher that starts the
        processes itself (``ddp_spawn``) calls it in each, with the trainer and its model rebuilt there.
        """
        if stage == "fit":
            self._fit_body()
        else:
            self._evaluate_body(stage)

    def _fit_body(self) -> None:
        def work() -> None:
            module = self.lightning_module
            hooks = self.hooks
            if hooks.on_fit_start is not None:
                hooks.on_fit_start(self, module)
            if hooks.on_pretrain_routine_start is not None:
                hooks.on_pretrain_routine_start(self, module)
            self.state.phase = "train_epoch_start"
            FitLoop(self).run()
            if self.hooks.on_fit_end is not None:
                self.hooks.on_fit_end(self, module)

        self._guarded("fit", work)

    def _evaluate_body(self, stage: str) -> None:
        def work() -> None:
            kind = STAGE_LOADERS[stage]
            flag = f"limit_{kind}_batches"
            if is_zero_limit(getattr(self, flag)):
                # As in Lightning: no batch to run, so no data is asked for and no hook of the run fires.
                setattr(self, f"num_{kind}_batches", [])
                self.run_results = []
                return
            loaders = self.load_dataloaders(kind)
            if not loaders:
                name = {"val": "val_dataloader", "test": "test_dataloader", "predict": "predict_dataloader"}[kind]
                raise MisconfigurationException(
                    f"trainer.{stage}() found no data: define `{name}()` on the module or datamodule, "
                    f"or pass `trainer.{stage}(model, dataloaders=...)`."
                )
            setattr(self, f"{kind}_dataloaders", loaders)
            limits = [num_batches(dl, getattr(self, flag), flag) for dl in loaders]
            setattr(self, f"num_{kind}_batches", limits)  # e.g. the progress bar's total
            self.eval_results.reset()
            outputs = run_evaluation(self, stage, loaders, limits)
            if stage == "predict":
                self.run_results = (outputs[0] if len(outputs) == 1 else outputs) if outputs else None
            else:
                self.run_results = _results_per_dataloader(self.eval_results, len(loaders))

        self._guarded(stage, work)

    def load_dataloaders(self, kind: str) -> List[Any]:
        """Ask ``get_dataloader`` and ``process_dataloader`` for the ``kind`` loaders (``train``, ``val``, ...).

        Training takes one loader; several (a dict or list of them, or a ``CombinedLoader``) become one
        ``CombinedLoader`` whose batches hold a batch of each (``max_size_cycle`` unless given one). The
        other kinds return their loaders in order (a dict's values; a ``CombinedLoader('sequential')``'s).
        ``process_dataloader`` sees each loader on its own.
        """
        module = self.lightning_module
        loaders = self.hooks.get_dataloader(self, module, kind)
        if loaders is None:
            return []
        for loader in _each_loader(loaders):
            _check_iterable(self, loader, kind)
        process = self.hooks.process_dataloader

        def processed(dataloaders: List[Any]) -> List[Any]:
            return [process(self, module, dl, kind) if process is not None else dl for dl in dataloaders]

        if kind == "train":
            combined = combine_train_loaders(loaders)
            if combined is not None:
                combined.flattened = processed(combined.flattened)
                return [combined]
            if isinstance(loaders, (list, tuple)):
                return processed(list(loaders))
            return processed([loaders])
        return processed(evaluation_loaders(loaders))

    def _handle_exception(self, exc: BaseException) -> None:
        self.state.status = TrainerStatus.INTERRUPTED  # before on_exception, as in Lightning
        self.state.interrupted = isinstance(exc, KeyboardInterrupt)
        # A MisconfigurationException names its culprit itself; others get the plugin that raised.
        # A plugin that ran a hook's work outside its own frame (the optimization plugin's direct
        # ``training_step``) may have named the culprit on the exception already.
        culprit = None if isinstance(exc, MisconfigurationException) else (
            getattr(exc, "_engine_culprit", None) or self.registry.culprit(exc))
        if culprit is not None and hasattr(exc, "add_note") and not getattr(exc, "_engine_noted", False):
            plugin, hook = culprit
            try:
                exc.add_note(f"[hookloop] raised in `{hook}` of plugin {plugin!r}.")
                exc._engine_noted = True  # type: ignore[attr-defined]
            except Exception:  # best effort: an exception refusing notes is re-raised as it is
                pass
        module = self.lightning_module
        # Every on_exception implementation runs, even if one of them fails.
        for impl in self.registry.implementations("on_exception"):
            args = {"trainer": self, "pl_module": module, "exception": exc}
            try:
                impl.function(*[args[a] for a in impl.argnames])
            except Exception as inner:  # report, but keep the original error
                print(f"[hookloop] on_exception of plugin {impl.plugin_name!r} failed: {inner!r}", file=sys.stderr)
        if self.state.interrupted and self.hooks.on_keyboard_interrupt is not None:
            self.hooks.on_keyboard_interrupt(self, module)
        status = "interrupted" if self.state.interrupted else "failed"
        if self.hooks.finalize_logging is not None:
            try:
                self.hooks.finalize_logging(self, status)
            except Exception as inner:
                print(f"[hookloop] finalize_logging failed: {inner!r}", file=sys.stderr)

    def save_checkpoint(self, filepath: str, weights_only: bool = False) -> None:
        """Save a checkpoint of the current run to ``filepath`` (through the checkpoint plugin)."""
        saver = self.hooks.save_checkpoint
        if saver is None or saver(self, filepath, weights_only) is None:
            raise PluginError("No plugin saves checkpoints (the built-in 'checkpoint_io' plugin is disabled).")

    # ------------------------------------------------------------------------------------
    # argparse (seed-era)
    # ------------------------------------------------------------------------------------

    @classmethod
    def add_argparse_args(cls, parent_parser: Any, **kwargs: Any) -> Any:
        """Add one ``--flag`` per ``Trainer`` argument to ``parent_parser`` and return it."""
        from hookloop.engine.argparse_support import add_argparse_args

        return add_argparse_args(cls, parent_parser, **kwargs)

    @classmethod
    def from_argparse_args(cls, args: Any, **overrides: Any) -> "Trainer":
        """Build a Trainer from an ``argparse.Namespace`` (unknown keys ignored), ``overrides`` winning."""
        from hookloop.engine.argparse_support import from_argparse_args

        return from_argparse_args(cls, args, **overrides)

    @classmethod
    def parse_argparser(cls, arg_parser: Any) -> Any:
        """Parse the command line with ``arg_parser``; bare boolean flags become ``True``."""
        from hookloop.engine.argparse_support import parse_argparser

        return parse_argparser(cls, arg_parser)

    @classmethod
    def get_init_arguments_and_types(cls) -> List[Tuple[str, Tuple[Any, ...], Any]]:
        """``(name, types, default)`` of every ``Trainer`` argument (Lightning 0.9's name)."""
        from hookloop.engine.argparse_support import init_arguments_and_types

        return init_arguments_and_types(cls)

    @classmethod
    def default_attributes(cls) -> Dict[str, Any]:
        """Every ``Trainer.__init__`` argument with its default value."""
        from hookloop.engine.argparse_support import default_attributes

        return default_attributes(cls)


def _check_log_every_n_steps(log_every_n_steps: Any, row_log_interval: Any) -> int:
    """The step-logging interval (``row_log_interval``, the seed-era name, wins): an int >= 0."""
    flag = "log_every_n_steps" if row_log_interval is None else "row_log_interval"
    value = log_every_n_steps if row_log_interval is None else row_log_interval
    check_int_flag(flag, value, 0, " (0 turns step logging off)")
    return value


def _check_flags(max_epochs: Any, min_epochs: Any, max_steps: Any, min_steps: Any, check_val_every_n_epoch: Any,
                 num_sanity_val_steps: Any, reload_dataloaders_every_n_epochs: Any, limits: Dict[str, Any],
                 val_check_interval: Any, deterministic: Any) -> None:
    """Refuse flag values no run can use, naming the flag (``max_epochs=-5`` would train forever).

    As in Lightning, ``-1`` is the only negative ``max_epochs``/``max_steps`` (no limit).
    """
    check_int_flag("max_epochs", max_epochs, -1, "; -1 means no limit", none_ok=True)
    check_int_flag("min_epochs", min_epochs, 0, none_ok=True)
    check_int_flag("max_steps", max_steps, -1, "; -1 means no limit", none_ok=True)
    check_int_flag("min_steps", min_steps, 0, none_ok=True)
    check_int_flag("check_val_every_n_epoch", check_val_every_n_epoch, 1,
                   " (None: validation is paced by val_check_interval alone)", none_ok=True)
    check_int_flag("num_sanity_val_steps", num_sanity_val_steps, -1, "; -1 runs every validation batch, 0 none",
                   none_ok=True)
    check_int_flag("reload_dataloaders_every_n_epochs", reload_dataloaders_every_n_epochs, 0, " (0: never)")
    for flag, value in limits.items():
        check_limit(flag, value)
    check_val_check_interval(val_check_interval)
    if deterministic not in (None, True, False, "warn"):
        raise FlagError("deterministic", f"Trainer(deterministic={deterministic!r}): pass True, False, None or 'warn'.")


_LOADER_ARGUMENTS = {"train": "train_dataloaders", "val": "val_dataloaders"}


def _each_loader(loaders: Any) -> List[Any]:
    """The single loaders in what a ``*_dataloader()`` returned: a loader, a dict or list of them, a CombinedLoader."""
    if isinstance(loaders, CombinedLoader):
        return loaders.flattened
    if isinstance(loaders, dict):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    return [loaders]


def _check_iterable(trainer: "Trainer", loader: Any, kind: str) -> None:
    """Raise naming where ``loader`` came from unless it is an iterable of batches (it has ``__iter__``).

    A map-style ``Dataset`` has none: Python would iterate it item by item through ``__getitem__``,
    training on single samples, so it is refused with the ``DataLoader`` to wrap it in.
    """
    if hasattr(type(loader), "__iter__"):
        return
    method = LOADER_METHODS[kind]
    stage = str(trainer.state.fn)
    if trainer.dataloaders_given.get(kind) is not None:
        source = f"trainer.{stage}({_LOADER_ARGUMENTS.get(kind, 'dataloaders') if stage == 'fit' else 'dataloaders'}=...)"
    else:
        from hookloop.engine.datamodule import LightningDataModule

        datamodule = trainer.datamodule  # the built-in get_dataloader asks it first, when it defines the hook
        defines = datamodule is not None and getattr(type(datamodule), method, None) not in (
            None, getattr(LightningDataModule, method))
        owner = datamodule if defines else trainer.lightning_module
        source = f"`{type(owner).__name__}.{method}()`"
    from torch.utils.data import Dataset

    hint = ("it is a Dataset, not a DataLoader: wrap it, DataLoader(dataset, batch_size=...)"
            if isinstance(loader, Dataset) or hasattr(loader, "__getitem__")
            else "give a torch.utils.data.DataLoader (or any iterable of batches)")
    text = repr(loader)
    shown = f" {text}" if len(text) <= 60 and not text.startswith("<") else ""
    raise MisconfigurationException(
        f"The {kind} data from {source} is {'an' if type(loader).__name__[0] in 'aeiouAEIOU' else 'a'} "
        f"{type(loader).__name__}{shown}, which is not iterable: {hint}."
    )


def _plugin_name(plugin: Any, registry: PluginRegistry) -> str:
    base = getattr(plugin, "name", None) if isinstance(getattr(plugin, "name", None), str) else None
    if base is None:
        base = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    name, n = base, 1
    while registry.get_plugin(name) is not None or name in registry.names():
        n += 1
        name = f"{base}-{n}"
    return name


def _without_engine_frames(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """``tb`` without the frames of hookloop's own modules and pluggy's (user frames are kept)."""
    kept = []
    while tb is not None:
        if not str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_INTERNAL_MODULES):
            kept.append(tb)
        tb = tb.tb_next
    result = None
    for entry in reversed(kept):
        result = TracebackType(result, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return result


def _looks_like_datamodule(obj: Any) -> bool:
    from hookloop.engine.datamodule import LightningDataModule

    return isinstance(obj, LightningDataModule)


class _NoRunningLoss:
    """``trainer.running_loss`` without a progress bar: nothing is kept."""

    def mean(self) -> None:
        """No loss is kept: ``None``."""
        return None

    def last(self) -> None:
        """No loss is kept: ``None``."""
        return None


def _results_per_dataloader(results: ResultCollection, n_loaders: int) -> List[Dict[str, float]]:
    """``validate()``/``test()``'s return value: one dict per dataloader, as in Lightning.

    Holds what went to loggers at the run's end (``name_epoch`` for a value also logged per
    step; not ``logger=False`` values, which monitors still see in ``callback_metrics``).
    Dataloader ``i`` gets the names logged for it (``.../dataloader_idx_i``) and every name
    logged without a dataloader suffix (epoch-end values).
    """
    per_loader = []
    for i in range(n_loaders):
        own = f"{DATALOADER_SUFFIX}{i}"
        per_loader.append({results.returned[k]: float(v) for k, v in results.produced.items()
                           if k in results.returned and (DATALOADER_SUFFIX not in k or k.endswith(own))})
    return per_loader
