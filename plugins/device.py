"""Built-in ``device``: reads the device flags, picks the root device, moves the model and every batch there.

The flags of both eras resolve to one :class:`DeviceConfig` (:func:`resolve_devices`):
``gpus`` (seed-era: an int is a count, a list or ``'1, 2'`` names devices, ``-1`` is all),
``accelerator`` (``'cpu'``, ``'gpu'``/``'cuda'``, ``'mps'``, ``'auto'``), ``devices``,
``num_processes``, ``num_nodes`` and ``strategy``/``distributed_backend``. The distributed
plugin reads the same config to decide how many processes to start.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import torch

from hookloop.engine import hookimpl
from hookloop.engine.apply import move_to_device
from hookloop.engine.errors import FlagError
from hookloop.engine.module import LightningModule
from hookloop.plugins.accelerators import ACCELERATORS, Accelerator, MPSAccelerator
from hookloop.plugins.strategies import SingleDeviceStrategy

#: Strategy names accepted (2.x ``strategy`` and seed-era ``distributed_backend``) -> canonical name.
_STRATEGIES = {
    None: "auto", "auto": "auto", "single_device": "single", "single": "single",
    "ddp": "ddp", "ddp_spawn": "ddp_spawn", "ddp_cpu": "ddp_spawn",
    "ddp_find_unused_parameters_true": "ddp", "ddp_spawn_find_unused_parameters_true": "ddp_spawn",
    "dp": "dp",
}
_ACCELERATORS = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps", "auto": "auto"}


@dataclass
class DeviceConfig:
    """Where and how a run trains, resolved from the trainer's flags.

    Attributes:
        accelerator: ``'cpu'``, ``'cuda'`` or ``'mps'``.
        device_ids: Devices this node uses, one process each (CPU: ``[0, .., n-1]``).
        num_nodes: Number of nodes.
        strategy: ``'single'`` (one process), ``'dp'`` (one process, the model replicated over
            ``device_ids`` by DataParallel), ``'ddp'`` (script re-launched per rank) or ``'ddp_spawn'``.
        find_unused_parameters: Passed to DistributedDataParallel.
    """

    accelerator: str = "cpu"
    device_ids: List[int] = field(default_factory=lambda: [0])
    num_nodes: int = 1
    strategy: str = "single"
    find_unused_parameters: bool = False

    @property
    def processes_per_node(self) -> int:
        """Processes started on each node (one per device; one for DataParallel, whatever the devices)."""
        return 1 if self.strategy == "dp" else len(self.device_ids)

    @property
    def world_size(self) -> int:
        """Processes in the whole job."""
        return self.processes_per_node * self.num_nodes

    @property
    def distributed(self) -> bool:
        """True for a multi-process strategy."""
        return self.strategy in ("ddp", "ddp_spawn")

    def device_for(self, local_rank: int) -> torch.device:
        """The root device of the process with this local rank."""
        if self.accelerator == "cuda":
            return torch.device("cuda", self.device_ids[local_rank % len(self.device_ids)])
        if self.accelerator == "mps":
            return torch.device("mps")
        return torch.device("cpu")


def parse_gpu_ids(gpus: Any, flag: str = "gpus") -> Optional[List[int]]:
    """CUDA device ids asked for by a seed-era ``gpus`` value (or ``devices`` on a GPU accelerator).

    ``None``/``0``/``'0'``/``''``/``[]``: no GPU (``None``). An int ``n``/``'n'``: the first ``n``.
    A list, or a string with a comma (``'1, 2'``, ``'0,'``): those ids. ``-1``/``'-1'``: every one.
    Raises :class:`FlagError` naming the flag for anything else, and for ids
    this machine does not have.
    """
    if isinstance(gpus, bool):
        raise FlagError(flag, f"{flag}={gpus!r}: pass a number of GPUs, a list of ids, or -1 for all.")
    original = gpus
    if isinstance(gpus, str):
        text = gpus.strip()
        if text in ("", "0", "None", "none"):
            return None
        if "," in text:
            try:
                gpus = [int(part) for part in text.split(",") if part.strip()]
            except ValueError:
                raise FlagError(flag,
                    f"{flag}={original!r}: a string must be a count ('2'), -1, or comma-separated ids ('1, 2')."
                ) from None
        else:
            try:
                gpus = int(text)
            except ValueError:
                raise FlagError(flag,
                    f"{flag}={original!r}: a string must be a count ('2'), -1, or comma-separated ids ('1, 2')."
                ) from None
    if gpus is None:
        return None
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if isinstance(gpus, int):
        if gpus == 0:
            return None
        if gpus == -1:
            if available == 0:
                raise FlagError(flag,
                    f"{flag}={original!r} asks for every CUDA GPU, but this machine has none "
                    "(torch.cuda.is_available() is False). Use accelerator='cpu'."
                )
            return list(range(available))
        if gpus < 0:
            raise FlagError(flag, f"{flag}={original!r}: use a count > 0, a list of ids, or -1 for all.")
        ids = list(range(gpus))
    elif isinstance(gpus, (list, tuple)):
        if not gpus:
            return None
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in gpus):
            raise FlagError(flag, f"{flag}={original!r}: a list of GPU ids must hold ints >= 0.")
        ids = list(gpus)
        if len(set(ids)) != len(ids):
            raise FlagError(flag, f"{flag}={original!r} names a GPU twice.")
    else:
        raise FlagError(flag,
            f"{flag}={original!r} of type {type(original).__name__}: pass an int, a list of ids or a string."
        )
    missing = [i for i in ids if i >= available]
    if missing:
        exists = f"ids {list(range(available))}" if available else "none (torch.cuda.is_available() is False)"
        raise FlagError(flag,
            f"{flag}={original!r} asks for CUDA GPU(s) {ids}, but this machine has {available}: {exists}. "
            "Ask for GPUs that exist, or train on the CPU with accelerator='cpu'."
        )
    return ids


def _process_count(value: Any, flag: str) -> int:
    """Number of CPU processes from ``devices``/``num_processes`` (an int, a numeric string or a list)."""
    if value in (None, "auto"):
        return 1
    if isinstance(value, (list, tuple)):
        return max(1, len(value))
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FlagError(flag, f"{flag}={value!r}: on the CPU pass a number of processes >= 1.")
    return value


def resolve_devices(trainer: Any) -> DeviceConfig:
    """Resolve ``accelerator``, ``devices``, ``gpus``, ``num_processes``, ``num_nodes`` and ``strategy``."""
    raw_strategy = trainer.strategy_flag
    key = raw_strategy.lower() if isinstance(raw_strategy, str) else raw_strategy
    if key == "ddp2":
        raise FlagError(
            "strategy", f"strategy={raw_strategy!r} is not supported: use 'ddp' (one process per device), 'ddp_spawn' "
            "or 'dp'."
        )
    if key not in _STRATEGIES:
        raise FlagError(
            "strategy", f"strategy/distributed_backend={raw_strategy!r} is unknown; use one of 'auto', 'ddp', 'ddp_spawn', "
            "'dp' (seed-era: 'ddp', 'ddp_spawn', 'ddp_cpu', 'dp')."
        )
    strategy = _STRATEGIES[key]
    find_unused = isinstance(key, str) and key.endswith("find_unused_parameters_true")
    accel_flag = str(trainer.accelerator_flag or "auto").lower()
    if accel_flag not in _ACCELERATORS:
        raise FlagError(
            "accelerator",
            f"accelerator={trainer.accelerator_flag!r} is unknown; use 'cpu', 'gpu' (or 'cuda'), 'mps' or 'auto'."
        )
    accelerator = _ACCELERATORS[accel_flag]
    if key == "ddp_cpu":  # the seed's CPU-only multi-process backend
        accelerator = "cpu"

    gpu_ids = parse_gpu_ids(trainer.gpus, "gpus") if trainer.gpus is not None else None
    if gpu_ids is not None:
        if accelerator in ("cpu", "mps"):
            raise FlagError(
                "gpus", f"gpus={trainer.gpus!r} asks for CUDA GPUs but accelerator={trainer.accelerator_flag!r} "
                f"{'(distributed_backend=ddp_cpu) ' if key == 'ddp_cpu' else ''}asks for another device; pass one."
            )
        accelerator = "cuda"
    if accelerator == "auto":
        if torch.cuda.is_available():
            accelerator = "cuda"
        elif _mps_available():
            accelerator = "mps"
        else:
            accelerator = "cpu"

    devices = trainer.devices
    if accelerator == "cuda":
        if gpu_ids is None:
            if devices in (None, "auto"):
                devices = -1  # 2.x: 'auto' is every GPU of the machine
            gpu_ids = parse_gpu_ids(devices, "devices")
            if gpu_ids is None:
                raise FlagError("devices", f"devices={trainer.devices!r} with a GPU accelerator asks for no GPU.")
        ids = gpu_ids
    elif accelerator == "mps":
        if not _mps_available():
            raise FlagError("accelerator", "accelerator='mps' asks for Apple's MPS device, which this machine lacks.")
        if _process_count(devices, "devices") != 1:
            raise FlagError("devices", f"devices={devices!r}: the MPS accelerator has exactly one device.")
        ids = [0]
    else:
        count = _process_count(trainer.num_processes, "num_processes") if trainer.num_processes is not None else \
            _process_count(devices, "devices")
        ids = list(range(count))

    num_nodes = trainer.num_nodes or 1
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise FlagError("num_nodes", f"num_nodes={trainer.num_nodes!r}: pass an int >= 1.")
    if strategy == "dp":
        if num_nodes > 1:
            raise FlagError("num_nodes", f"num_nodes={num_nodes} with strategy={raw_strategy!r}: DataParallel runs in "
                                         "one process on one node; use 'ddp' across nodes.")
        if accelerator != "cuda":
            # As in 0.9: DataParallel without GPUs is one process on one device (the trainer warns once).
            return DeviceConfig(accelerator, [0], 1, "single", False)
        return DeviceConfig(accelerator, ids, 1, "dp", False)
    if strategy == "auto":
        from hookloop.plugins.environments import external_launcher_detected

        multi = len(ids) * num_nodes > 1 or external_launcher_detected()
        strategy = "ddp" if multi else "single"
    elif strategy == "single" and len(ids) * num_nodes > 1:
        raise FlagError(
            "strategy", f"strategy={raw_strategy!r} runs one process, but {len(ids)} device(s) x {num_nodes} node(s) were asked for."
        )
    return DeviceConfig(accelerator, ids, num_nodes, strategy, find_unused)


def _mps_available() -> bool:
    return MPSAccelerator.is_available()


def batches_may_need_moving(trainer: Any) -> bool:
    """False when every batch is certainly where training happens: CPU training on a machine with no GPU.

    Then the ``device`` plugin does not implement ``transfer_batch_to_device`` at all and the loop
    skips the hook (a module's own ``transfer_batch_to_device`` or ``on_*_batch_transfer`` still runs,
    through the module's adapter).
    """
    return resolve_devices(trainer).accelerator != "cpu" or torch.cuda.is_available() or _mps_available()


class DevicePlugin:
    """Placement. ``trainer.root_device`` is set in ``setup_environment`` (after ranks are known).

    ``moves_batches=False`` leaves ``transfer_batch_to_device`` unimplemented (see
    :func:`batches_may_need_moving`): nothing to move costs nothing per batch.
    """

    def __init__(self, moves_batches: bool = True) -> None:
        if not moves_batches:
            own = {name for name in dir(type(self)) if hasattr(getattr(type(self), name), "engine_impl")}
            self.__engine_hooks__ = own - {"transfer_batch_to_device"}
        #: torch's global flags as they were before ``setup_environment`` changed them (restored at teardown).
        self._flags_before: Optional[Tuple[bool, bool, bool, bool]] = None

    @hookimpl
    def setup_environment(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Pick the device from ``accelerator``/``devices``/``gpus``; apply ``deterministic``/``benchmark``."""
        if trainer.root_device is None:
            trainer.root_device = select_root_device(trainer)
        accelerator = trainer.accelerator
        if accelerator is not None and accelerator.device_type == trainer.root_device.type:
            accelerator.setup_device(trainer.root_device)  # CUDA: torch.cuda.set_device
        if trainer.deterministic or trainer.benchmark is not None:
            self._flags_before = (torch.are_deterministic_algorithms_enabled(),
                                  torch.is_deterministic_algorithms_warn_only_enabled(),
                                  torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        if trainer.deterministic:
            # Lightning's values: True (non-deterministic ops raise) or "warn" (they warn).
            torch.use_deterministic_algorithms(True, warn_only=trainer.deterministic == "warn")
            torch.backends.cudnn.deterministic = True
        if trainer.benchmark is not None:
            torch.backends.cudnn.benchmark = bool(trainer.benchmark)

    @hookimpl(trylast=True)
    def make_strategy(self, trainer: Any) -> Any:
        """``trainer.strategy`` of a one-process run: a ``SingleDeviceStrategy`` (the distributed plugin answers first)."""
        return SingleDeviceStrategy(trainer, select_root_device(trainer))

    @hookimpl(trylast=True)
    def make_accelerator(self, trainer: Any) -> Accelerator:
        """``trainer.accelerator``: the class of the resolved device kind (``CPUAccelerator``, ...)."""
        return ACCELERATORS[resolve_devices(trainer).accelerator]()

    @hookimpl
    def teardown(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Give torch's global determinism/benchmark flags back as they were before the run."""
        if self._flags_before is not None:
            enabled, warn_only, cudnn_deterministic, cudnn_benchmark = self._flags_before
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
            torch.backends.cudnn.deterministic = cudnn_deterministic
            torch.backends.cudnn.benchmark = cudnn_benchmark
            self._flags_before = None

    @hookimpl(tryfirst=True)
    def configure_model(self, trainer: Any, pl_module: LightningModule, stage: str) -> None:
        """Move the module to the root device before optimizers are built (and before any DDP wrap)."""
        pl_module.to(trainer.root_device)

    @hookimpl
    def transfer_batch_to_device(self, trainer: Any, pl_module: LightningModule, batch: Any, device: Any,
                                 dataloader_idx: int) -> Any:
        """A recursive ``.to(device)`` (a module's own ``transfer_batch_to_device`` runs before this, in its adapter)."""
        if device.type == "cpu" and isinstance(batch, (torch.Tensor, list, tuple)):
            # Already where it must be: skip the rebuild. Checked inline, with ``Tensor.is_cpu``
            # (no ``torch.device`` object built), since this runs on every batch.
            if isinstance(batch, torch.Tensor):
                if batch.is_cpu:
                    return batch
            else:
                for t in batch:
                    if not isinstance(t, torch.Tensor) or not t.is_cpu:
                        break
                else:
                    return batch
        return move_to_device(batch, device)


def select_root_device(trainer: Any) -> torch.device:
    """The device this process trains on: from the resolved flags and ``trainer.local_rank``."""
    return resolve_devices(trainer).device_for(trainer.local_rank)
