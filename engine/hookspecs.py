"""The event catalogue: every event the engine emits, and every behaviour it asks of plugins.

This file is the engine's manual. Each hook below is a pluggy hookspec; its docstring says
when it fires, what its arguments are and what a return value means.

Two kinds of hooks live here:

* **Events** (notifications). Every implementation is called; return values are ignored
  unless the docstring says otherwise. Names and argument names follow Lightning 2.x's
  ``Callback`` API, so a Lightning callback works unchanged; the seed-era (0.8/0.9)
  ``on_epoch_*``/``on_batch_*``/``on_init_*`` events fire too.
* **Behaviour hooks** (``firstresult=True``). The loop *asks* them to do the work of a step;
  the first implementation that returns something other than ``None`` wins. Built-in
  plugins implement each of them. A plugin replaces one with ``@hookimpl(tryfirst=True)``
  or wraps one with ``@hookimpl(wrapper=True)``.

Arguments common to many hooks:

``trainer``
    the :class:`engine.Trainer`; its loop state is ``trainer.state``
    (``epoch``, ``global_step``, ``batch_idx``, ``should_stop``, metrics).
``pl_module``
    the :class:`engine.LightningModule` being run.
``stage``
    one of ``"fit"``, ``"validate"``, ``"test"``, ``"predict"``.

An implementation may take any subset of a hook's arguments, by name. The order in which
implementations are called is documented in :mod:`engine.registry` and printed by
``python -m engine plugins``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from hookloop.engine.markers import hookspec, user_hook

# ---------------------------------------------------------------------------------------
# Start-up and shutdown
# ---------------------------------------------------------------------------------------


@hookspec
@user_hook(module=False)
def on_init_start(trainer) -> None:
    """Seed-era: called at the start of ``Trainer.__init__``, after plugins are registered."""


@hookspec
@user_hook(module=False)
def on_init_end(trainer) -> None:
    """Seed-era: called at the end of ``Trainer.__init__``."""


@hookspec(firstresult=True)
def launch(trainer, function: Callable[[], Any]) -> Optional[bool]:
    """Behaviour: run ``function`` (the body of ``fit``/``validate``/``test``/``predict``).

    The built-in implementation runs it in this process. A distributed plugin may start
    other processes first and run it in each. ``function`` stores its results on the
    trainer. Return ``True`` once it has run (``None`` passes to the next implementation).
    """


@hookspec(firstresult=True)
def module_plugin(trainer, pl_module) -> Any:
    """Behaviour: return a plugin that forwards events to ``pl_module``'s own hooks.

    Called when a run starts; the returned object is registered (as ``lightning_module``)
    between entry-point plugins and built-ins in the call order, and stays registered after
    the run (``trainer.save_checkpoint()`` after ``fit`` reaches the module's
    ``on_save_checkpoint``) until the next run replaces it. The built-in implementation
    registers only the hooks the module overrides, and first of all (Lightning's first hook of a
    run) registers the callbacks ``pl_module.configure_callbacks()`` returns: after the trainer's
    callbacks in the call order, each replacing a registered callback of its type.
    """


@hookspec(firstresult=True)
def make_strategy(trainer) -> Any:
    """Behaviour: return the object ``trainer.strategy`` is (an :class:`engine.strategy.Strategy`).

    Asked once, the first time ``trainer.strategy`` is read. The device plugin answers with a
    ``SingleDeviceStrategy``, the distributed plugin (called first) with a ``DDPStrategy``.
    """


@hookspec(firstresult=True)
def make_accelerator(trainer) -> Any:
    """Behaviour: return the object ``trainer.accelerator`` is (``CPUAccelerator``, ``CUDAAccelerator``...).

    Asked once, the first time ``trainer.accelerator`` is read; the device plugin answers.
    """


@hookspec(firstresult=True)
def make_precision_plugin(trainer) -> Any:
    """Behaviour: return the object ``trainer.precision_plugin`` is (a ``Precision``, also at 32 bits).

    Asked once, the first time ``trainer.precision_plugin`` is read; the precision plugin answers
    with itself.
    """


@hookspec
def setup_environment(trainer, pl_module, stage: str) -> None:
    """Called first inside the launched function, in every process, before ``prepare_data``.

    Device and distributed plugins set up here: pick the root device, join the process
    group, set ``trainer.global_rank``/``local_rank``/``node_rank``/``world_size``.
    """


@hookspec
def prepare_data(trainer, pl_module) -> None:
    """Called once per node (``prepare_data_per_node=True``) or once per job, before ``setup``.

    Download or write data here; do not set state (other processes will not see it).
    """


@hookspec
@user_hook()
def setup(trainer, pl_module, stage: str) -> None:
    """Called at the start of ``fit``/``validate``/``test``/``predict`` in every process."""


@hookspec
@user_hook(callback=False)
def configure_model(trainer, pl_module, stage: str) -> None:
    """Called after ``setup``: build the model's layers, move it to its device, wrap it (DDP), build optimizers.

    The module's own ``configure_model()`` (Lightning 2.x: create layers lazily, once) runs first
    of all, so that every plugin sees the finished model; a checkpoint given as ``ckpt_path``
    is restored next (the module's ``on_load_checkpoint``, the weights, then, fitting, the callbacks'
    ``on_load_checkpoint`` and ``load_state_dict``),
    then the model is placed and the optimizers are built; a resumed fit's optimizer,
    scheduler and loop states are put back last. Implementations that need optimizers read
    ``trainer.optimizers`` after the optimization plugin (which runs here) has filled it.
    """


@hookspec
@user_hook()
def teardown(trainer, pl_module, stage: str) -> None:
    """Called at the end of ``fit``/``validate``/``test``/``predict`` in every process, also after an error."""


@hookspec
@user_hook()
def on_fit_start(trainer, pl_module) -> None:
    """Called at the very start of ``fit``, after ``setup``, in every process."""


@hookspec
@user_hook()
def on_fit_end(trainer, pl_module) -> None:
    """Called at the very end of ``fit``, before ``teardown``."""


@hookspec
@user_hook()
def on_pretrain_routine_start(trainer, pl_module) -> None:
    """Seed-era (0.9): before the pre-training routine (summary, restore, sanity check)."""


@hookspec
@user_hook()
def on_pretrain_routine_end(trainer, pl_module) -> None:
    """Seed-era (0.9): after the pre-training routine, just before ``on_train_start``."""


@hookspec
@user_hook(module=False)
def on_sanity_check_start(trainer, pl_module) -> None:
    """Called before the sanity-check validation (``num_sanity_val_steps`` batches)."""


@hookspec
@user_hook(module=False)
def on_sanity_check_end(trainer, pl_module) -> None:
    """Called after the sanity-check validation; its metrics are discarded."""


@hookspec
@user_hook()
def on_exception(trainer, pl_module, exception: BaseException) -> None:
    """Called when ``fit``/``validate``/``test``/``predict`` raises (Ctrl-C included).

    Runs in every implementation even if one of them raises; the original exception is
    re-raised afterwards. ``trainer.state.interrupted`` is ``True`` for ``KeyboardInterrupt``.
    """


@hookspec
@user_hook(module=False)
def on_keyboard_interrupt(trainer, pl_module) -> None:
    """Seed-era: called on Ctrl-C, after ``on_exception``."""


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def get_dataloader(trainer, pl_module, stage: str) -> Any:
    """Behaviour: return the dataloader(s) for ``stage``.

    ``stage`` is ``"train"``, ``"val"``, ``"test"`` or ``"predict"``. Return a single
    iterable, a list of them (several dataloaders) or ``[]`` when there is none. The
    built-in implementation takes, in order: loaders passed to ``fit``/``validate``/...,
    the datamodule's ``*_dataloader()``, then the module's.
    """


@hookspec(firstresult=True)
def process_dataloader(trainer, pl_module, dataloader: Any, stage: str) -> Any:
    """Behaviour: return ``dataloader`` ready for this run (e.g. with a ``DistributedSampler``).

    Called once per dataloader after ``get_dataloader``. The built-in implementation
    returns it unchanged.
    """


@hookspec(firstresult=True)
def iterate_dataloader(trainer, pl_module, dataloader: Any, stage: str, start_batch: int) -> Any:
    """Behaviour: return an iterator over one epoch of ``dataloader``'s batches.

    ``start_batch`` is the index of the first batch to produce (non-zero when an epoch is
    resumed from a checkpoint): batches before it must be skipped. The loop stops by itself
    after the limited number of batches. Called at the start of every epoch.
    """


@hookspec(firstresult=True)
def transfer_batch_to_device(trainer, pl_module, batch: Any, device: Any, dataloader_idx: int) -> Any:
    """Behaviour: return ``batch`` moved to ``device`` (the root device of this process).

    With no implementation the batch is used as it is: the built-in ``device`` plugin leaves this
    hook out when training on the CPU of a machine without a GPU. The module's adapter implements
    it when the module overrides ``transfer_batch_to_device``, ``on_before_batch_transfer`` or
    ``on_after_batch_transfer`` (Lightning's order: before, transfer, after).

    Called for every training and evaluation batch before its ``on_*_batch_start`` events, which
    see the batch on the device (Lightning 2.x's order).
    """


# ---------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------


@hookspec
@user_hook()
def on_train_start(trainer, pl_module) -> None:
    """Called once before the first training epoch."""


@hookspec
@user_hook()
def on_train_end(trainer, pl_module) -> None:
    """Called once after the last training epoch, before loggers are finalised."""


@hookspec
@user_hook()
def on_epoch_start(trainer, pl_module) -> None:
    """Seed-era: called at the very start of each training epoch, before ``on_train_epoch_start``."""


@hookspec
@user_hook()
def on_epoch_end(trainer, pl_module) -> None:
    """Seed-era: called at the very end of each training epoch, after ``on_train_epoch_end``."""


@hookspec
@user_hook()
def on_train_epoch_start(trainer, pl_module) -> None:
    """Called at the start of each training epoch, before its dataloader is iterated.

    Not called for an epoch resumed mid-way from a checkpoint (it started in the interrupted run), as
    in Lightning."""


@hookspec
@user_hook()
def on_train_epoch_end(trainer, pl_module) -> None:
    """Called at the end of each training epoch, after any end-of-epoch validation.

    The module's seed-era ``training_epoch_end(outputs)`` runs first (``tryfirst``), so
    every listener sees what it returned; the module's ``on_train_epoch_end()`` runs after
    the callbacks', and early stopping and checkpointing (``trylast``) run last.
    """


@hookspec
@user_hook(module=False)
def on_batch_start(trainer, pl_module) -> None:
    """Seed-era: called before each training batch, before ``on_train_batch_start`` (Lightning's order)."""


@hookspec
@user_hook()
def on_batch_end(trainer, pl_module) -> None:
    """Seed-era: called after each training batch, after ``on_train_batch_end``."""


@hookspec
@user_hook()
def on_train_batch_start(trainer, pl_module, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called before each training batch, after ``transfer_batch_to_device``: ``batch`` is on the device.

    The seed-era ``on_batch_start`` comes first. ``dataloader_idx`` is always 0 (fit trains on one dataloader); 2.x callbacks leave it out, 0.9/1.x
    ones take it.

    To skip the rest of the epoch (the module returning ``-1`` in Lightning), set
    ``trainer.state.skip_rest_of_epoch = True``: the loop tests it after this event, before the step.
    """


@hookspec
@user_hook()
def on_train_batch_end(trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called after each training batch with the step's ``outputs``, as Lightning 2.x passes them.

    ``dataloader_idx`` is always 0; 2.x callbacks leave it out. A 0.9 callback's
    ``on_train_batch_end(self, trainer, pl_module, batch, batch_idx, dataloader_idx)`` (no outputs) gets
    the arguments it names, and a 0.9 module's ``on_train_batch_end(self, batch, batch_idx, dataloader_idx)``
    gets the batch.

    A ``training_step`` that returned a loss tensor gives ``{'loss': loss.detach()}`` (the loss as
    returned, not divided by ``accumulate_grad_batches`` as Lightning's is); a dict
    is passed as returned; ``None`` (a skipped batch) gives ``None``; with several optimizers
    (seed-era ``optimizer_idx``) it is the list of the optimizers' outputs, each normalized
    the same way. ``trainer.state.global_step`` already counts this batch's optimizer step(s).
    """


@hookspec(firstresult=True)
def run_training_batch(trainer, pl_module, batch: Any, batch_idx: int) -> Any:
    """Behaviour: do all the work of one training batch and return its step output.

    The built-in optimization plugin runs, for each optimizer, in Lightning 2.x's order,
    ``training_step``, ``optimizer_zero_grad`` (first batch of an accumulation group), ``backward``
    and ``optimizer_step`` (with accumulation, clipping, the ``on_before_*`` events and, with
    ``truncated_bptt_steps``, once per time split), and counts ``trainer.state.global_step``.
    Replace it (``tryfirst=True``) for e.g. a two-step optimizer such as SAM.
    Return the step output (a loss tensor becomes ``{'loss': loss.detach()}`` when anyone
    listens to :func:`on_train_batch_end`; the built-in returns the bare tensor otherwise, which
    is what ``trainer.state.last_outputs`` then holds), or ``engine.markers.SKIPPED_BATCH`` when
    the step returned ``None`` (``on_train_batch_end`` then gets ``outputs=None``).
    """


@hookspec(firstresult=True)
def training_step(trainer, pl_module, batch: Any, batch_idx: int, optimizer_idx: Optional[int]) -> Any:
    """Behaviour: run the module's ``training_step`` and return its raw output.

    ``optimizer_idx`` is passed to the module only when it takes that argument (seed-era
    multi-optimizer style). ``None`` from the module means "skip this batch".

    **Direct form** (optional, for the hot path). A plugin whose implementation of this hook is
    a method may also define, in the same class, ``direct_training_step(self, trainer, pl_module)``
    returning ``finish`` or ``None``. ``finish`` says: for ``optimizer_idx=None``, this hook does
    nothing but call ``pl_module.training_step(batch, batch_idx)`` and pass its output, when that
    is not a tensor, through ``finish(output)``. When that implementation is the event's only one,
    so that ``trainer.hooks.training_step`` is the bound method itself (no other implementation,
    no wrapper, no profiler), the built-in optimization plugin's fast path does exactly that
    itself: one Python frame fewer per batch, the module's method still looked up at each call,
    and an error raised in it still reported as this hook's (``[hookloop] raised in
    `training_step` of plugin ...``). The built-in ``model_hooks`` offers it unless the module is
    wrapped (DDP, DataParallel: a strategy sets ``trainer.strategy_model`` in ``configure_model``), defines
    ``training_step_end`` or takes ``optimizer_idx``; a subclass that overrides ``training_step``
    alone does not inherit the offer. It is asked again at every rebuild of the dispatch (also
    one made by the step itself) and at ``on_train_start``.
    """


@hookspec(firstresult=True)
def backward(trainer, pl_module, loss: Any, optimizer: Any, optimizer_idx: Optional[int]) -> Any:
    """Behaviour: compute gradients of ``loss`` (already scaled for accumulation). Return ``True``."""


@hookspec(firstresult=True)
def optimizer_step(trainer, pl_module, optimizer: Any, optimizer_idx: int, closure: Callable[[], Any]) -> Any:
    """Behaviour: step ``optimizer``. Return ``True``.

    ``closure`` returns the step's loss; its first call reuses the gradients already
    computed, later calls (LBFGS) re-run ``training_step`` and backward. It may be ``None``
    (a plugin stepping without one). The built-in implementation calls the module's
    ``optimizer_step`` when overridden and, off the fp32 fast path, fires
    ``on_before_optimizer_step``, unscales (GradScaler) and clips inside the step.
    """


@hookspec(firstresult=True)
def optimizer_zero_grad(trainer, pl_module, optimizer: Any, optimizer_idx: int) -> Any:
    """Behaviour: clear ``optimizer``'s gradients. Return ``True``.

    Asked after :func:`on_before_zero_grad`, before backward on the first batch of an accumulation
    group. The built-in implementation calls the module's ``optimizer_zero_grad`` when overridden.
    """


@hookspec(firstresult=True)
@user_hook(callback=False)
def lr_scheduler_step(trainer, pl_module, scheduler: Any, metric: Any, optimizer_idx: Optional[int]) -> Any:
    """Behaviour: step one learning-rate ``scheduler``, when its config (``interval``, ``frequency``) says so.

    ``metric`` is the value of the config's ``monitor`` (a ReduceLROnPlateau-style scheduler),
    else ``None``; ``optimizer_idx`` is the index of the scheduler's optimizer (``None`` when
    unknown). Asked under automatic optimization after ``interval='step'`` schedulers' optimizer
    steps and at the end of the training epoch for ``interval='epoch'`` ones. The built-in
    implementation (optimization plugin) calls ``scheduler.step()``, or ``scheduler.step(metric)``
    when there is one.

    A module hook too, as in Lightning: a module defining ``lr_scheduler_step`` replaces the
    built-in (e.g. for a scheduler without ``step()``, or one stepped with the epoch). It is called
    in its era's signature: 2.x ``lr_scheduler_step(self, scheduler, metric)``, 1.x
    ``lr_scheduler_step(self, scheduler, optimizer_idx, metric)``.
    Return ``True`` once stepped (``None`` passes to the next implementation).
    """


@hookspec
def optimization_changed(trainer, attribute: str) -> None:
    """Called when ``trainer.<attribute>`` is assigned: ``"accumulate_grad_batches"``, ``"optimizers"`` or
    ``"lr_scheduler_configs"``.

    Lightning lets a callback reassign these during ``fit`` (a ``GradientAccumulationScheduler`` sets
    ``accumulate_grad_batches`` at each epoch's start; learning-rate finders and fine-tuning callbacks
    replace the optimizers or schedulers), and the new value takes effect from the next batch. The
    built-in optimization plugin builds its step variant again here, so no batch has to look.
    Assigning the same value again fires it too, and so does changing one of the two lists in place
    (``trainer.optimizers.append(opt)``, ``trainer.lr_scheduler_configs.clear()``).
    """


@hookspec
@user_hook()
def on_before_backward(trainer, pl_module, loss: Any) -> None:
    """Called before ``loss.backward()``."""


@hookspec
@user_hook()
def on_after_backward(trainer, pl_module) -> None:
    """Called after backward and before the optimizer step; gradients are populated."""


@hookspec
@user_hook()
def on_before_optimizer_step(trainer, pl_module, optimizer: Any) -> None:
    """Called before ``optimizer.step()``, after gradient accumulation and unscaling.

    As in Lightning, gradients are not clipped yet (clipping follows this event). Under
    manual optimization it fires inside every ``opt.step()``.
    """


@hookspec
@user_hook()
def on_before_zero_grad(trainer, pl_module, optimizer: Any) -> None:
    """Called just before the ``optimizer_zero_grad`` hook clears ``optimizer``'s gradients.

    In Lightning 2.x's order: under automatic optimization, on the first batch of each
    accumulation group, after ``training_step`` and before ``on_before_backward`` (the gradients of
    the previous step are still there); batches within a group zero nothing.
    """


# ---------------------------------------------------------------------------------------
# Validation, test and predict loops
# ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def evaluation_step(trainer, pl_module, batch: Any, batch_idx: int, dataloader_idx: int, stage: str) -> Any:
    """Behaviour: run ``validation_step``/``test_step``/``predict_step`` and return its output.

    ``stage`` is ``"validate"``, ``"test"`` or ``"predict"``. The loop has already put the
    model in ``eval()`` mode under ``torch.no_grad()``. Return ``None`` for "no output".
    """


@hookspec
@user_hook()
def on_validation_start(trainer, pl_module) -> None:
    """Called before a validation run (also the sanity check)."""


@hookspec
@user_hook()
def on_validation_end(trainer, pl_module) -> None:
    """Called after a validation run, after ``on_validation_epoch_end``."""


def _to_eval(module: Any) -> None:
    """``module.eval()``."""
    module.eval()


def _to_train(module: Any) -> None:
    """``module.train()``."""
    module.train()


def _clear_gradients(module: Any) -> None:
    """``module.zero_grad(set_to_none=True)``."""
    module.zero_grad(set_to_none=True)


@hookspec
@user_hook(callback=False, module_default=_clear_gradients)
def on_validation_model_zero_grad(trainer, pl_module) -> None:
    """Module hook: before each validation run inside ``fit`` (not the sanity check), before the module is put
    in eval mode. ``LightningModule``'s default clears the gradients (``zero_grad(set_to_none=True)``);
    the loop calls it when the module overrides it (gradients still accumulating are kept otherwise)."""


@hookspec
@user_hook(callback=False, module_default=_to_eval)
def on_validation_model_eval(trainer, pl_module) -> None:
    """Module behaviour hook: put the module in eval mode for a validation run, before ``on_validation_start``.

    ``LightningModule``'s default is ``self.eval()``; with no implementation the loop calls ``eval()``
    itself. Either way each submodule's mode is recorded first and restored after the run."""


@hookspec
@user_hook(callback=False, module_default=_to_train)
def on_validation_model_train(trainer, pl_module) -> None:
    """Module behaviour hook: after a validation run, after ``on_validation_end``: undo the eval mode.

    Called only when implemented (a module overriding it decides the modes, e.g. ``self.train()``);
    otherwise every submodule gets back the mode it had before the run (a frozen, eval-mode
    backbone stays in eval, as in Lightning 2.x)."""


@hookspec
@user_hook(callback=False, module_default=_to_eval)
def on_test_model_eval(trainer, pl_module) -> None:
    """Module behaviour hook: as :func:`on_validation_model_eval`, for a test run (before ``on_test_start``)."""


@hookspec
@user_hook(callback=False, module_default=_to_train)
def on_test_model_train(trainer, pl_module) -> None:
    """Module behaviour hook: as :func:`on_validation_model_train`, after a test run (after ``on_test_end``)."""


@hookspec
@user_hook(callback=False, module_default=_to_eval)
def on_predict_model_eval(trainer, pl_module) -> None:
    """Module behaviour hook: as :func:`on_validation_model_eval`, for a predict run (before ``on_predict_start``).

    There is no ``on_predict_model_train`` (as in Lightning): the modes are restored after the run."""


@hookspec
@user_hook(callback=False)
def on_pre_performance_check(trainer, pl_module) -> None:
    """Seed-era (0.9) module hook: before each validation or test run (the sanity check's too), before
    ``on_validation_start``/``on_test_start`` and before the module is put in ``eval()`` mode."""


@hookspec
@user_hook(callback=False)
def on_post_performance_check(trainer, pl_module) -> None:
    """Seed-era (0.9) module hook: after each validation or test run, after ``on_validation_end``/``on_test_end``
    and once the module's modes and the grad mode are restored."""


@hookspec
@user_hook()
def on_validation_epoch_start(trainer, pl_module) -> None:
    """Called before the first validation batch of a run."""


@hookspec
@user_hook()
def on_validation_epoch_end(trainer, pl_module) -> None:
    """Called after the last validation batch; the module's ``validation_epoch_end(outputs)`` runs first."""


@hookspec
@user_hook()
def on_validation_batch_start(trainer, pl_module, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called before each validation batch, after ``transfer_batch_to_device``: ``batch`` is on the device."""


@hookspec
@user_hook()
def on_validation_batch_end(trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called after each validation batch; ``outputs`` is what ``validation_step`` returned."""


@hookspec
@user_hook()
def on_test_start(trainer, pl_module) -> None:
    """Called before a test run."""


@hookspec
@user_hook()
def on_test_end(trainer, pl_module) -> None:
    """Called after a test run."""


@hookspec
@user_hook()
def on_test_epoch_start(trainer, pl_module) -> None:
    """Called before the first test batch."""


@hookspec
@user_hook()
def on_test_epoch_end(trainer, pl_module) -> None:
    """Called after the last test batch; the module's ``test_epoch_end(outputs)`` runs first."""


@hookspec
@user_hook()
def on_test_batch_start(trainer, pl_module, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called before each test batch, after ``transfer_batch_to_device``: ``batch`` is on the device."""


@hookspec
@user_hook()
def on_test_batch_end(trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called after each test batch; ``outputs`` is what ``test_step`` returned."""


@hookspec
@user_hook()
def on_predict_start(trainer, pl_module) -> None:
    """Called before a predict run."""


@hookspec
@user_hook()
def on_predict_end(trainer, pl_module) -> None:
    """Called after a predict run."""


@hookspec
@user_hook()
def on_predict_epoch_start(trainer, pl_module) -> None:
    """Called before the first predict batch."""


@hookspec
@user_hook()
def on_predict_epoch_end(trainer, pl_module) -> None:
    """Called after the last predict batch."""


@hookspec
@user_hook()
def on_predict_batch_start(trainer, pl_module, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called before each predict batch, after ``transfer_batch_to_device``: ``batch`` is on the device."""


@hookspec
@user_hook()
def on_predict_batch_end(trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
    """Called after each predict batch; ``outputs`` is what ``predict_step`` returned."""


# ---------------------------------------------------------------------------------------
# Metrics and logging
# ---------------------------------------------------------------------------------------


@hookspec
def log_metrics(trainer, metrics: Dict[str, float], step: int) -> None:
    """Write ``metrics`` (plain floats) at x-axis ``step``. Loggers implement this.

    Fired by the metrics plugin every ``log_every_n_steps`` training steps and at the end
    of every epoch, on global rank zero only.
    """


@hookspec
def log_hyperparams(trainer, params: Dict[str, Any]) -> None:
    """Write the module's hyperparameters (``save_hyperparameters()``). Fired once at fit start on rank zero."""


@hookspec
def finalize_logging(trainer, status: str) -> None:
    """Flush and close loggers; ``status`` is ``"success"``, ``"failed"`` or ``"interrupted"``."""


@hookspec(firstresult=True)
def reduce_metric(trainer, value: Any, reduce_fx: str) -> Any:
    """Behaviour: reduce a tensor across processes (``self.log(..., sync_dist=True)``).

    ``reduce_fx`` is ``"mean"``, ``"sum"``, ``"max"`` or ``"min"``. Single-process runs
    return ``value`` unchanged.
    """


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


@hookspec
@user_hook()
def on_save_checkpoint(trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
    """Called while a checkpoint dict is built; add your state to ``checkpoint`` in place.

    Store only what ``torch.load(weights_only=True)`` can read back: tensors, numbers,
    strings, and lists/tuples/dicts of them.
    """


@hookspec(firstresult=True)
def save_checkpoint(trainer, filepath: str, weights_only: bool) -> Any:
    """Behaviour: build the checkpoint dict (firing ``on_save_checkpoint``) and write it to ``filepath``.

    Return the path written. ``trainer.save_checkpoint(path)`` calls this.
    """


@hookspec(firstresult=True)
def remove_checkpoint(trainer, filepath: str) -> Any:
    """Behaviour: delete the checkpoint file ``filepath`` (on global rank zero). Return ``True``.

    ``trainer.strategy.remove_checkpoint(path)`` calls this; ``ModelCheckpoint`` removes the files
    that fall out of its top-k through it.
    """


@hookspec
@user_hook()
def on_load_checkpoint(trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
    """Called when a checkpoint is restored, in two parts as in Lightning 2.x: read your state back from
    ``checkpoint``, or migrate it in place (rename ``checkpoint['state_dict']`` keys of an older model version).

    It fires during ``configure_model``, after the module's own ``configure_model`` and before the
    model is placed and its optimizers are built. The module's hook runs first, before anything is
    read from the checkpoint; then the weights load; then, only when fitting, every callback's and
    plugin's hook (they see the loaded weights), followed by their ``load_state_dict``. The optimizer,
    scheduler and loop states are restored after every ``on_fit_start``."""


# ---------------------------------------------------------------------------------------
# Distributed helpers (behaviour hooks a strategy plugin implements)
# ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def barrier(trainer, name: str) -> Any:
    """Behaviour: wait until every process reaches this point. Return ``True``."""


@hookspec(firstresult=True)
def broadcast(trainer, obj: Any, src: int) -> Any:
    """Behaviour: return ``obj`` as held by process ``src``. Single-process runs return ``obj``.

    When process ``src`` holds ``None``, return ``engine.strategy.BROADCAST_NONE`` instead: a
    ``None`` answer means "not handled here" to pluggy, and the next plugin would answer with
    this process's own ``obj``. ``trainer.strategy.broadcast`` turns the marker back into ``None``.
    """


@hookspec(firstresult=True)
def all_gather(trainer, tensor: Any, sync_grads: bool) -> Any:
    """Behaviour: every process's ``tensor``, stacked along a new first dimension (``world_size`` long).

    Single-process runs return ``tensor`` unchanged (as Lightning's single-device strategy does).
    ``sync_grads=True``: gradients flow back through the gather. ``trainer.strategy.all_gather``
    and the module's ``self.all_gather`` call this.
    """


def event_names() -> List[str]:
    """Names of every hook declared in this module, in catalogue order."""
    import inspect
    import sys

    module = sys.modules[__name__]
    return [
        name
        for name, obj in vars(module).items()
        if inspect.isfunction(obj) and hasattr(obj, "engine_spec")
    ]


#: The behaviour (``firstresult``) hooks, for listings.
BEHAVIOUR_HOOKS = tuple(
    name for name in event_names() if globals()[name].engine_spec.get("firstresult")
)
