"""Built-in ``distributed``: DistributedDataParallel on ``torch.distributed`` (``gloo`` on CPU, ``nccl`` on GPU).

Registered only for a multi-process strategy (``strategy='ddp'|'ddp_spawn'``, several devices
or nodes) or when an external launcher (torchrun, SLURM) started this process. What it does,
hook by hook:

* ``launch`` — ``ddp``: a script started as ``python script.py`` re-runs itself once per extra
  local rank (the children get torchrun's variables); ``ddp_spawn``: the trainer and model are
  pickled into ``torch.multiprocessing`` spawned processes; under torchrun/SLURM the
  processes already exist and the body runs here.
* ``setup_environment`` — reads the ranks (:mod:`plugins.environments`), joins the process group
  and starts the :class:`~plugins.distributed_watchdog.Watchdog` (failed, killed and stalled ranks).
* ``on_train_start``, ``on_*_start``, ``on_*_batch_start`` (evaluation), ``teardown`` — mark the
  main loop's progress for the watchdog (:mod:`plugins.distributed_progress`); nothing per
  training batch.
* ``configure_model`` — wraps the module in DistributedDataParallel (``trainer.strategy_model``)
  around a tiny module whose ``forward`` is ``training_step``, so DDP's gradient hooks fire.
* ``process_dataloader`` — inserts a ``DistributedSampler``; ``set_epoch`` every epoch.
* ``make_strategy`` — ``trainer.strategy`` is a ``DDPStrategy`` (:mod:`plugins.strategies`).
* ``barrier``/``broadcast``/``reduce_metric``/``all_gather`` — the collectives; validation metrics and
  ``should_stop`` are made equal on every rank so that all ranks stop together.
"""
from __future__ import annotations

import atexit
import importlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import time
import types
import warnings
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from hookloop.engine import hookimpl
from hookloop.engine.combined_loader import CombinedLoader
from hookloop.engine.errors import MisconfigurationException
from hookloop.engine.rank_zero import rank_zero_only
from hookloop.engine.strategy import BROADCAST_NONE
from hookloop.plugins.device import DeviceConfig
from hookloop.plugins.distributed_sampler import distributed_loader
from hookloop.plugins.distributed_progress import LoopProgress
from hookloop.plugins.distributed_watchdog import ChildMonitor, Watchdog, before_forced_exit, parent_watch, \
    seconds_from_env
from hookloop.plugins.environments import (LAUNCHED_ENV, ClusterEnvironment, TorchElasticEnvironment, detect_environment,
                                  find_free_port)
from hookloop.plugins.strategies import DDPStrategy

#: Seconds a collective (and the rendezvous) may wait before torch.distributed gives up.
TIMEOUT_ENV = "HOOKLOOP_DDP_TIMEOUT"
_PARENT_PID_ENV = "HOOKLOOP_PARENT_PID"
#: How long a leaving rank releases the GIL after leaving its process group (see ``shutdown``).
_GLOO_SETTLE_S = 0.05
_REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
               "min": dist.ReduceOp.MIN}


class _TrainingStep(nn.Module):
    """What DDP wraps: ``forward`` runs the module's ``training_step`` (DDP hooks into forward/backward)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module.training_step(*args)


class DistributedPlugin:
    """Multi-process training with DistributedDataParallel; see the module docstring."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.environment: Optional[ClusterEnvironment] = None
        self.watchdog: Optional[Watchdog] = None
        #: This process's main-loop position, sampled by the watchdog thread.
        self.progress = LoopProgress()
        self._children: List[subprocess.Popen] = []
        self._monitor: Optional[ChildMonitor] = None
        self._shut_down = False
        self._warned = False

    def __getstate__(self) -> Dict[str, Any]:  # threads and processes stay in the parent (ddp_spawn)
        state = dict(self.__dict__)
        state.update(watchdog=None, _children=[], _monitor=None, environment=None)
        return state

    @property
    def backend(self) -> str:
        """The process group's backend: ``nccl`` on CUDA, else ``gloo``."""
        return "nccl" if self.config.accelerator == "cuda" else "gloo"

    @hookimpl
    def make_strategy(self, trainer: Any) -> DDPStrategy:
        """``trainer.strategy``: a ``DDPStrategy`` (``start_method='spawn'`` for ``ddp_spawn``, as in Lightning 2.x)."""
        cfg = self.config
        return DDPStrategy(trainer, [cfg.device_for(i) for i in range(cfg.processes_per_node)],
                           start_method="spawn" if cfg.strategy == "ddp_spawn" else "popen",
                           process_group_backend=self.backend, find_unused_parameters=cfg.find_unused_parameters)

    # ---- launching ----------------------------------------------------------------------------
    @hookimpl
    def launch(self, trainer: Any, function: Callable[[], Any]) -> Optional[bool]:
        """Start the other processes (unless a launcher did), then run ``function`` here."""
        cfg = self.config
        env = detect_environment(cfg.processes_per_node, cfg.num_nodes)
        self.environment = env
        if env.creates_processes_externally:
            function()
            return True
        if cfg.strategy == "ddp_spawn":
            self._spawn(trainer)
            return True
        self._launch_script_copies()
        self.environment = detect_environment(cfg.processes_per_node, cfg.num_nodes)
        function()
        return True

    def _launch_script_copies(self) -> None:
        """Rank 0 of this node stays here; local ranks 1..N-1 re-run the same command line."""
        cfg = self.config
        command = _script_command()
        node_rank = int(os.environ.get("NODE_RANK", "0"))
        if cfg.num_nodes > 1 and not ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ):
            raise MisconfigurationException(
                f"num_nodes={cfg.num_nodes} with hookloop's launcher needs MASTER_ADDR, MASTER_PORT and NODE_RANK "
                "set on every node (or start the job with torchrun or srun)."
            )
        address = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = os.environ.get("MASTER_PORT") or str(find_free_port())
        n = cfg.processes_per_node
        common = {"MASTER_ADDR": address, "MASTER_PORT": port, "WORLD_SIZE": str(cfg.world_size),
                  "LOCAL_WORLD_SIZE": str(n), "GROUP_RANK": str(node_rank), "NODE_RANK": str(node_rank),
                  LAUNCHED_ENV: "1", _PARENT_PID_ENV: str(os.getpid())}
        ranks = []
        for local in range(1, n):
            env = dict(os.environ, **common, LOCAL_RANK=str(local), RANK=str(node_rank * n + local))
            self._children.append(subprocess.Popen(command, env=env))
            ranks.append(node_rank * n + local)
        # This process becomes local rank 0: later stages (test after fit) find the same variables.
        os.environ.update(common, LOCAL_RANK="0", RANK=str(node_rank * n))
        os.environ.pop(_PARENT_PID_ENV, None)
        self._monitor = ChildMonitor(node_rank * n, self._children, ranks, on_failure=self._child_failed)
        self._monitor.start()
        before_forced_exit(self._monitor.end_children)  # a watchdog ending this process ends the children too
        atexit.register(self._wait_for_children)

    def _child_failed(self, message: str) -> None:
        """A child exited non-zero: if the job already knows why (a stall, a reported failure), say that."""
        if self.watchdog is not None:
            self.watchdog.exit_if_job_ended()

    def _wait_for_children(self) -> None:
        self.shutdown()
        for proc in self._children:
            proc.wait()
        if self._monitor is not None:
            self._monitor.stop()
        if any(proc.returncode for proc in self._children):
            os._exit(1)

    def _spawn(self, trainer: Any) -> None:
        """``ddp_spawn``: pickle the trainer and model into N fresh processes; bring rank 0's results back."""
        cfg = self.config
        payload = dumps_for_spawn(trainer)
        address = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = int(os.environ.get("MASTER_PORT") or find_free_port())
        node_rank = int(os.environ.get("NODE_RANK", "0"))
        with tempfile.TemporaryDirectory(prefix="hookloop-spawn-") as tmp:
            result_file = os.path.join(tmp, "rank0.pt")
            import torch.multiprocessing as mp

            mp.start_processes(_spawned_main, args=(payload, cfg.processes_per_node, cfg.world_size, node_rank,
                                                    address, port, result_file),
                               nprocs=cfg.processes_per_node, join=True, start_method="spawn")
            if os.path.exists(result_file):
                _restore_results(trainer, torch.load(result_file, weights_only=False))

    # ---- process group --------------------------------------------------------------------------
    @hookimpl
    def setup_environment(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Set the trainer's ranks and join the process group (once per process)."""
        env = self.environment or detect_environment(self.config.processes_per_node, self.config.num_nodes)
        self.environment = env
        self.progress.begin_stage(trainer.state)
        trainer.global_rank = env.global_rank()
        trainer.local_rank = env.local_rank()
        trainer.node_rank = env.node_rank()
        trainer.world_size = env.world_size()
        rank_zero_only.rank = trainer.global_rank  # decides for functions wrapped without a trainer
        if env.creates_processes_externally and trainer.world_size != self.config.world_size and \
                self.config.world_size > 1 and not self._warned:
            self._warned = True
            warnings.warn(
                f"The Trainer asks for {self.config.world_size} processes (devices x num_nodes), but "
                f"{type(env).__name__} started {trainer.world_size}; training with the launcher's "
                f"{trainer.world_size}. Match --nproc_per_node/--ntasks-per-node to `devices`.", stacklevel=2)
        if dist.is_available() and not dist.is_initialized():
            address, port = env.main_address, env.main_port
            os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
            parent = os.environ.get(_PARENT_PID_ENV)
            if parent and isinstance(env, TorchElasticEnvironment) and env.launched_by_hookloop:
                parent_watch(int(parent), trainer.global_rank)
            backend = self.backend
            timeout = timedelta(seconds=seconds_from_env(TIMEOUT_ENV, 1800.0))
            watchdog = None
            if trainer.world_size > 1 and os.environ.get("HOOKLOOP_DDP_WATCHDOG", "1") != "0":
                agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
                # Built before the group forms: a bad limit in the environment fails here, on every rank.
                watchdog = Watchdog(address, port, trainer.global_rank, trainer.world_size,
                                    store_host=trainer.global_rank == 0 and not agent_store, progress=self.progress)
            dist.init_process_group(backend, init_method="env://", rank=trainer.global_rank,
                                    world_size=trainer.world_size, timeout=timeout)
            if watchdog is not None:
                self.watchdog = watchdog
                watchdog.start()
            if not self._children:  # the launching process shuts down in _wait_for_children
                atexit.register(self.shutdown)

    def shutdown(self) -> None:
        """End of this process's part of the job: tell the watchdogs, then leave the process group.

        Leaving explicitly matters: gloo's threads must not be running when the interpreter exits.
        """
        if self._shut_down:
            return
        self._shut_down = True
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog.finish()
        if dist.is_initialized() and not (watchdog is not None and watchdog.failed_here):
            if watchdog is not None:
                watchdog.wait_until_others_closed()  # global rank 0 leaves last
            dist.destroy_process_group()
            # A gloo worker thread may still be releasing the last collective's tensors, which
            # needs the GIL; if the interpreter is finalizing by then, the thread is force-exited
            # inside C++ and the process aborts ("terminate called without an active exception").
            # Sleeping hands it the GIL while the interpreter is whole.
            time.sleep(_GLOO_SETTLE_S)
            if watchdog is not None:
                watchdog.closed()

    @hookimpl
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Tell the other ranks that this one failed, so they stop instead of waiting for it."""
        if self.watchdog is not None and not isinstance(exception, KeyboardInterrupt):
            self.watchdog.report_failure(exception)

    # ---- model ------------------------------------------------------------------------------------
    @hookimpl
    def configure_model(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Wrap the module in DistributedDataParallel for training (sync BatchNorm if asked)."""
        if stage != "fit" or not dist.is_initialized():
            return
        if trainer.sync_batchnorm:
            nn.SyncBatchNorm.convert_sync_batchnorm(pl_module)
        device = trainer.root_device
        device_ids = [device.index] if device is not None and device.type == "cuda" else None
        trainer.strategy_model = nn.parallel.DistributedDataParallel(
            _TrainingStep(pl_module), device_ids=device_ids,
            find_unused_parameters=self.config.find_unused_parameters,
        )

    @hookimpl
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Drop the DDP wrapper (the process group stays for the script's next stage)."""
        trainer.strategy_model = None
        self.progress.end_stage()

    # ---- progress marks for the watchdog (see plugins/distributed_progress.py) -------------------
    @hookimpl
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """The first training batch is warm-up again (compilation, DDP's first bucket rebuild): not timed."""
        self.progress.begin_training()

    @hookimpl
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """A validation run starts: no batch of it has run yet."""
        self.progress.begin_evaluation()

    @hookimpl
    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        """A test run starts: no batch of it has run yet."""
        self.progress.begin_evaluation()

    @hookimpl
    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """A predict run starts: no batch of it has run yet."""
        self.progress.begin_evaluation()

    # The evaluation loop writes no position of its own that a thread could tell apart batch from
    # batch; these marks cost one call per evaluation batch (training batches need none).
    @hookimpl
    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int) -> None:
        """Progress mark: this validation batch runs."""
        self.progress.eval_batch(batch_idx, dataloader_idx)

    @hookimpl
    def on_test_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                            dataloader_idx: int) -> None:
        """Progress mark: this test batch runs."""
        self.progress.eval_batch(batch_idx, dataloader_idx)

    @hookimpl
    def on_predict_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                               dataloader_idx: int) -> None:
        """Progress mark: this predict batch runs."""
        self.progress.eval_batch(batch_idx, dataloader_idx)

    # ---- data -------------------------------------------------------------------------------------
    @hookimpl
    def process_dataloader(self, trainer: Any, pl_module: Any, dataloader: Any, stage: str) -> Any:
        """Give each rank its share of the data (``None``: leave the loader to the next plugin)."""
        if trainer.world_size <= 1 or not trainer.use_distributed_sampler or stage == "predict":
            return None
        return distributed_loader(dataloader, stage, trainer.world_size, trainer.global_rank)

    @hookimpl
    def on_train_epoch_start(self, trainer: Any) -> None:
        """Reshuffle each epoch: ``set_epoch`` on the training sampler (of every loader of a ``CombinedLoader``)."""
        loader = trainer.train_dataloader
        for each in loader.flattened if isinstance(loader, CombinedLoader) else [loader]:
            sampler = getattr(each, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(trainer.current_epoch)

    # ---- collectives --------------------------------------------------------------------------------
    @hookimpl
    def barrier(self, trainer: Any, name: str) -> Optional[bool]:
        """``torch.distributed.barrier``."""
        if not dist.is_initialized():
            return None
        dist.barrier()
        return True

    @hookimpl
    def broadcast(self, trainer: Any, obj: Any, src: int) -> Any:
        """``obj`` as held by rank ``src`` (any picklable object)."""
        if not dist.is_initialized():
            return None
        holder = [obj]
        dist.broadcast_object_list(holder, src)
        return BROADCAST_NONE if holder[0] is None else holder[0]

    @hookimpl
    def reduce_metric(self, trainer: Any, value: Any, reduce_fx: str) -> Any:
        """All-reduce a logged tensor (``sync_dist=True``): mean, sum, max or min over ranks."""
        if not dist.is_initialized():
            return None
        tensor = _collective_tensor(value, trainer)
        dist.all_reduce(tensor, _REDUCE_OPS[reduce_fx])
        if reduce_fx == "mean":
            tensor = tensor / dist.get_world_size()
        if not isinstance(value, torch.Tensor):
            return tensor
        # A sum, max or min of integers stays integral (the collective ran in float).
        keep = value.dtype if reduce_fx != "mean" or value.is_floating_point() else tensor.dtype
        return tensor.to(device=value.device, dtype=keep)

    @hookimpl
    def all_gather(self, trainer: Any, tensor: Any, sync_grads: bool) -> Any:
        """Every rank's ``tensor`` stacked along a new first dimension (through autograd with ``sync_grads``)."""
        if not dist.is_initialized():
            return None
        device = trainer.root_device if self.backend == "nccl" else torch.device("cpu")
        local = tensor.contiguous().to(device)  # non-contiguous inputs gather wrong (pytorch#73515)
        if sync_grads:
            from torch.distributed.nn.functional import all_gather as differentiable_all_gather

            gathered = list(differentiable_all_gather(local))
        else:
            gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, local.detach())
        return torch.stack(gathered).to(tensor.device)

    # ---- same decisions on every rank ------------------------------------------------------------
    @hookimpl(specname="on_validation_end", tryfirst=True)
    def equalize_validation_metrics(self, trainer: Any) -> None:
        """Average the validation run's epoch metrics over ranks before monitors read them."""
        if not trainer.sanity_checking:
            _equalize_eval_metrics(trainer)

    @hookimpl(specname="on_test_end", tryfirst=True)
    def equalize_test_metrics(self, trainer: Any) -> None:
        """Average the test run's epoch metrics over ranks: ``trainer.test()`` returns the same everywhere."""
        _equalize_eval_metrics(trainer)

    @hookimpl(specname="on_validation_end", trylast=True)
    def agree_on_stop_after_validation(self, trainer: Any) -> None:
        """Stop every rank if any rank was asked to stop (e.g. by EarlyStopping)."""
        _agree_on_stop(trainer)

    @hookimpl(specname="on_train_epoch_end", trylast=True)
    def agree_on_stop_after_epoch(self, trainer: Any) -> None:
        """Stop every rank if any rank was asked to stop at the epoch's end."""
        _agree_on_stop(trainer)


def _equalize_eval_metrics(trainer: Any) -> None:
    """Each rank evaluated its shard: average the epoch values (sync_dist ones are already equal)."""
    if not dist.is_initialized():
        return
    results = trainer.eval_results
    produced = results.produced
    local = sorted(k for k, v in produced.items() if isinstance(v, torch.Tensor) and v.numel() == 1)
    everyone: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, local)
    keys = [k for k in local if all(k in other for other in everyone)]
    if not keys:
        return
    stacked = torch.stack([produced[k].detach().float().reshape(()).cpu() for k in keys])
    stacked = _collective_tensor(stacked, trainer)
    dist.all_reduce(stacked, dist.ReduceOp.SUM)
    stacked = (stacked / dist.get_world_size()).cpu()
    metrics = trainer.state.callback_metrics
    for key, value in zip(keys, stacked):
        produced[key] = value
        # Also under the name validate()/test() return it as (``name_epoch`` when logged per step too).
        for name in {key, results.returned.get(key, key)}:
            if name in metrics:
                metrics[name] = value


def _agree_on_stop(trainer: Any) -> None:
    if not dist.is_initialized():
        return
    flag = _collective_tensor(torch.tensor(1.0 if trainer.should_stop else 0.0), trainer)
    dist.all_reduce(flag, dist.ReduceOp.MAX)
    trainer.should_stop = bool(flag.item())


def _collective_tensor(value: Any, trainer: Any) -> torch.Tensor:
    """A float copy of ``value`` on the device the process group's backend works on."""
    tensor = value.detach().clone().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = trainer.root_device
    return tensor.to(device)


def _script_command() -> List[str]:
    """The command line that started this process, to start it again for another rank."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return [sys.executable, "-m", name, *sys.argv[1:]]
    script = sys.argv[0] if sys.argv else ""
    if not script or script == "-c" or not os.path.exists(script):
        raise MisconfigurationException(
            "strategy='ddp' starts the other processes by re-running your script, but this process was not "
            f"started from a script file (sys.argv[0]={script!r}, e.g. a notebook or `python -c`). "
            "Use strategy='ddp_spawn', or run a script (or torchrun)."
        )
    return [sys.executable, os.path.abspath(script), *sys.argv[1:]]


# ---------------------------------------------------------------------------------------------
# ddp_spawn: pickling the trainer, the spawned processes' entry point, results back to the parent
# ---------------------------------------------------------------------------------------------


class _SpawnPickler(pickle.Pickler):
    """Pickles a trainer: its plugin registry is rebuilt from its records, modules by import name."""

    def reducer_override(self, obj: Any) -> Any:
        from hookloop.engine.registry import PluginRegistry

        if isinstance(obj, PluginRegistry):
            return _rebuild_registry, ([(r.name, r.plugin, r.tier, r.origin) for r in obj.records()],)
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        return NotImplemented


def _rebuild_registry(records: List[Any]) -> Any:
    from hookloop.engine.registry import PluginRegistry

    registry = PluginRegistry()
    with registry.batch():
        for name, plugin, tier, origin in records:
            registry.add(plugin, name, tier, origin)
    return registry


def _pickle(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _SpawnPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def dumps_for_spawn(trainer: Any) -> bytes:
    """The trainer (with its model) as bytes for spawned processes; a clear error names what cannot be pickled."""
    try:
        return _pickle(trainer)
    except Exception as exc:
        culprit = find_unpicklable(trainer.lightning_module, "model")
        if culprit is None and trainer.datamodule is not None:
            culprit = find_unpicklable(trainer.datamodule, "datamodule")
        where = f"`{culprit[0]}` ({culprit[1]})" if culprit else "an object the trainer holds"
        raise MisconfigurationException(
            f"strategy='ddp_spawn' pickles the trainer and model to start each process, but {where} cannot be "
            f"pickled: {type(exc).__name__}: {exc}. Create it in `setup()` instead of `__init__`, or use "
            "strategy='ddp', which re-runs the script and pickles nothing."
        ) from exc


def find_unpicklable(obj: Any, path: str, depth: int = 4) -> Optional[tuple]:
    """``(attribute path, type name)`` of the first attribute of ``obj`` that does not pickle, or ``None``."""
    try:
        _pickle(obj)
        return None
    except Exception:
        pass
    if depth == 0:
        return path, type(obj).__name__
    children: Dict[str, Any] = {}
    if isinstance(obj, nn.Module):
        children.update(obj._modules)
        children.update(obj._parameters)
        children.update(obj._buffers)
    if hasattr(obj, "__dict__"):
        children.update({k: v for k, v in vars(obj).items()
                         if k not in ("_modules", "_parameters", "_buffers", "_trainer", "trainer")})
    elif isinstance(obj, dict):
        children.update({str(k): v for k, v in obj.items()})
    elif isinstance(obj, (list, tuple)):
        children.update({f"[{i}]": v for i, v in enumerate(obj)})
    for name, child in children.items():
        sub = f"{path}{name}" if name.startswith("[") else f"{path}.{name}"
        found = find_unpicklable(child, sub, depth - 1)
        if found is not None:
            return found
    return path, type(obj).__name__


def _spawned_main(local_rank: int, payload: bytes, per_node: int, world_size: int, node_rank: int,
                  address: str, port: int, result_file: str) -> None:
    """Entry point of each ``ddp_spawn`` process: rebuild the trainer and run the stage's body."""
    os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(per_node), LOCAL_RANK=str(local_rank), GROUP_RANK=str(node_rank),
                      NODE_RANK=str(node_rank), RANK=str(node_rank * per_node + local_rank))
    os.environ[LAUNCHED_ENV] = "1"
    trainer = pickle.loads(payload)
    stage = trainer.state.fn.value
    trainer.lightning_module.trainer = trainer  # modules do not pickle their trainer reference
    if trainer.datamodule is not None:
        trainer.datamodule.trainer = trainer
    plugin = next((p for p in (r.plugin for r in trainer.registry.records()) if isinstance(p, DistributedPlugin)),
                  None)
    trainer.run_stage(stage)
    if trainer.global_rank == 0:
        checkpoint = trainer.checkpoint_callback
        torch.save({
            "state_dict": trainer.lightning_module.state_dict(),
            "callback_metrics": dict(trainer.state.callback_metrics),
            "logged_metrics": dict(trainer.state.logged_metrics),
            "results": trainer.run_results,
            "best_model_path": getattr(checkpoint, "best_model_path", None),
            "epoch": trainer.state.epoch,
            "global_step": trainer.state.global_step,
        }, result_file)
    if plugin is not None:
        plugin.shutdown()
    # Nothing is left to do in this process, and interpreter finalization is where a gloo thread
    # still holding Python objects aborts it (see DistributedPlugin.shutdown): leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _restore_results(trainer: Any, results: Dict[str, Any]) -> None:
    """In the ``ddp_spawn`` parent: rank 0's weights, metrics and results."""
    trainer.lightning_module.load_state_dict(results["state_dict"])
    trainer.state.callback_metrics.update(results["callback_metrics"])
    trainer.state.logged_metrics.update(results["logged_metrics"])
    trainer.run_results = results["results"]
    trainer.state.epoch = results["epoch"]
    trainer.state.global_step = results["global_step"]
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and results.get("best_model_path"):
        checkpoint.best_model_path = results["best_model_path"]


def distributed_plugins(trainer: Any) -> List[Any]:
    """``[('distributed', plugin)]`` for a multi-process strategy or under torchrun/SLURM, else ``[]``.

    Resolving the device flags here also makes a bad flag an error when the Trainer is built.
    """
    from hookloop.plugins.device import resolve_devices

    config = resolve_devices(trainer)
    if not config.distributed:
        return []
    return [("distributed", DistributedPlugin(config))]
