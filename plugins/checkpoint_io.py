"""Built-in ``checkpoint_io``: writes checkpoints atomically and restores runs exactly.

A checkpoint is a dict that ``torch.load(weights_only=True)`` reads back (tensors, numbers,
strings, lists, dicts). Keys:

``hookloop_version``, ``epoch``, ``global_step``, ``state_dict``, ``optimizer_states``,
``lr_schedulers``, ``loop`` (the position: epoch and batch to resume at, the loop state,
the generator states at the start of the interrupted epoch, and, for a checkpoint taken
between batches that accumulate gradients, those gradients), ``rng`` (generator states at
save time), ``callbacks`` (every plugin's ``state_dict()``, by ``state_key``),
``hyper_parameters``; plugins add their own parts in ``on_save_checkpoint``.

Writing: a temporary file in the target directory, flushed and fsynced, then renamed over
the target, so a crash mid-save leaves the previous file intact. Restoring (``fit(ckpt_path=...)``,
``Trainer(resume_from_checkpoint=...)``, ``'last'``) happens after the optimizers are built;
the epoch then continues at the next batch with the generators as they were.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import itertools
import os
import pathlib
import pickle
import re
import socket
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.metric_state import module_metric_states, restore_module_metric_states
from hookloop.plugins.module_adapter import overrides_hook
from hookloop.plugins.step_settings import accumulating
from hookloop.plugins.resume_data import capture_rng, find_unsafe, restore_rng, resumed_iterator, to_safe

#: File name (in ``default_root_dir``) of the checkpoint saved when a signal interrupts training.
INTERRUPTED_NAME = "interrupted.ckpt"
#: Keys every hookloop checkpoint has (a file without them is not one).
REQUIRED_KEYS = ("state_dict",)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the model; the message names the file and the problem.

    ``path`` is the file. ``flag`` is set (to ``"ckpt_path"``) when the file is the one a run was
    asked to resume from or evaluate, so that a command line can report it as a bad argument.
    """

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path
        self.flag: Optional[str] = None


class CheckpointSaveError(CheckpointError, OSError):
    """Writing a checkpoint failed (disk full, quota, file-size limit...): the message names the file and why.

    An ``OSError`` too, with the failed write's ``errno``; the file at ``path`` is left as it was.
    """

    def __init__(self, message: str, path: str, code: Optional[int] = None) -> None:
        CheckpointError.__init__(self, message, path)
        self.errno = code
        self.filename = path

    def __str__(self) -> str:
        return str(self.args[0])


# ---------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------

#: Why a write failed, by ``errno``, and what to do, in words a user acts on.
_WRITE_FAILURES = {
    errno.ENOSPC: ("the disk is full", "free space there"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space there or raise the quota"),
    errno.EFBIG: ("the file is larger than this process may write (a file-size limit such as `ulimit -f`, "
                  "or the filesystem's largest file)", "raise the limit"),
    errno.EROFS: ("the filesystem is read-only", "make it writable"),
    errno.EACCES: ("permission is denied", "make the directory writable"),
    errno.EPERM: ("the operation is not permitted", "make the directory writable"),
    errno.EIO: ("an input/output error occurred (a failing disk or network filesystem?)", "check the disk"),
}


def atomic_save(obj: Any, filepath: str) -> None:
    """``torch.save(obj)`` to ``filepath`` through a fsynced temporary file and an atomic rename.

    The file gets the permissions ``torch.save`` gives a new file (``0o666`` less the umask), so
    a checkpoint is as readable to the group as the rest of the run's output. Temporary files
    that killed saves left in the directory are removed first (:func:`remove_stale_temporaries`).
    A failed write raises :class:`CheckpointSaveError` naming the file and the reason (a full
    disk...); ``filepath`` then still holds its previous content, and no temporary file is left.
    """
    directory = os.path.dirname(os.path.abspath(filepath))
    tmp: Optional[str] = None
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_temporaries(directory)  # also gives back the space they took
        fd, tmp = _create_temporary(directory, os.path.basename(filepath))
        with os.fdopen(fd, "wb") as f:
            _hold_lock(f.fileno())  # tells other processes' clean-ups that this file is being written
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, filepath)
            tmp = None
    except BaseException as exc:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass
        failure = _os_error(exc) if isinstance(exc, Exception) else None
        if failure is None or isinstance(exc, CheckpointSaveError):
            raise
        raise CheckpointSaveError(_write_failure_message(filepath, failure), os.fspath(filepath),
                                  failure.errno) from exc
    _fsync_dir(directory)


def _os_error(exc: BaseException) -> Optional[OSError]:
    """The ``OSError`` behind ``exc``: itself, or the one torch's writer hid behind its own error.

    On a full disk ``torch.save`` raises ``RuntimeError: [enforce fail ...] unexpected pos``, with
    the file object's ``OSError`` as its context.
    """
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 10:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _write_failure_message(filepath: Any, failure: OSError) -> str:
    path = os.fspath(filepath)
    reason, advice = _WRITE_FAILURES.get(failure.errno or 0, ("the write failed", "fix that"))
    detail = f"[Errno {failure.errno}] {failure.strerror or os.strerror(failure.errno or 0)}"
    if os.path.exists(path):
        kept = f"The previous {os.path.basename(path)!r} is unchanged and no partial file is left"
    else:
        kept = "No partial file is left"
    return (f"Cannot write checkpoint {path!r}: {reason} ({detail}). {kept}. To go on, {advice} or save "
            "elsewhere (ModelCheckpoint(dirpath=...)), then resume from the last checkpoint (fit(ckpt_path=...)).")


#: Distinguishes the temporary files of one process (several trainers may save at once).
_temporary_numbers = itertools.count()
#: This machine, as written into temporary names (a directory may be shared by several machines).
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "localhost"
#: ``.<name>.<pid>.<n>@<host>.tmp``; names written before the host was added lack ``@<host>``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<n>\d+)(?:@(?P<host>[A-Za-z0-9-]+))?\.tmp")


def _create_temporary(directory: str, name: str) -> Tuple[int, str]:
    """Create ``directory/.name.<pid>.<n>@<host>.tmp`` exclusively; ``(fd, path)``.

    Unlike ``tempfile.mkstemp`` (mode ``0o600``), the mode is ``0o666`` less the umask, as for
    any file ``torch.save`` creates. A name left behind by a killed process is skipped.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        path = os.path.join(directory, f".{name}.{os.getpid()}.{next(_temporary_numbers)}@{_HOST}.tmp")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue


def remove_stale_temporaries(directory: str) -> List[str]:
    """Delete the temporary files that saves killed mid-write left in ``directory``; return their paths.

    A temporary file is stale when the process named in it, on this machine, is gone and no
    process holds its lock (a save holds one while it writes). Files of this process, of live
    processes and of other machines (a shared filesystem: their writers may be alive) are kept.
    POSIX only; elsewhere nothing is removed.
    """
    removed: List[str] = []
    if os.name != "posix":
        return removed
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None or (match["host"] or _HOST) != _HOST:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_alive(pid):
            continue
        path = os.path.join(directory, name)
        if _locked(path):
            continue
        try:
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _hold_lock(fd: int) -> None:
    """Take an exclusive ``flock`` on the file being written (released when it is closed)."""
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):  # no flock here: clean-ups then go by the process id alone
        pass


def _locked(path: str) -> bool:
    """True if some process holds ``path``'s lock (it is being written)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # cannot look: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # this filesystem has no flock: the dead process id decides
    finally:
        os.close(fd)
    return False


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint_file(path: Any, map_location: Any = None) -> Dict[str, Any]:
    """Read a hookloop checkpoint safely (``weights_only=True``); raise :class:`CheckpointError` naming what is wrong.

    A file pickling objects that could run code (foreign globals) is refused as such; one that is
    no pickle at all (random bytes, a damaged copy) is called corrupt. A checkpoint written by a
    newer hookloop loads with a warning naming both versions.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"Checkpoint {path!r} does not exist.", path)
    if os.path.isdir(path):
        raise CheckpointError(f"Checkpoint {path!r} is a directory, not a checkpoint file.", path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        imports = _REFUSED_GLOBAL.findall(text) or _pickle_globals(path)
        foreign = None if imports is None else sorted({g for g in imports if not g.startswith(_SAFE_GLOBALS)})
        if foreign:
            raise CheckpointError(
                f"Checkpoint {path!r} was refused: it contains pickled objects that could run code when "
                f"loaded ({', '.join(foreign)}), and hookloop loads checkpoints with torch.load(weights_only=True). "
                "Only load it with weights_only=False if you trust its origin.", path
            ) from exc
        if foreign is not None:
            what = ("is not a torch checkpoint: it is a plain pickle (pickle.dump, not torch.save or "
                    "trainer.save_checkpoint)")
            hint = "Write checkpoints with trainer.save_checkpoint(path)."
        else:
            what, hint = "is corrupt or not a checkpoint", "Was it damaged in a copy, or is it another kind of file?"
        raise CheckpointError(
            f"Checkpoint {path!r} ({os.path.getsize(path)} bytes) {what}; torch cannot read it "
            f"({_first_line(text.split('WeightsUnpickler error:')[-1])}). {hint}", path
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, IndexError... for damaged files
        size = os.path.getsize(path)
        raise CheckpointError(
            f"Checkpoint {path!r} ({size} bytes) is truncated or corrupt and cannot be read "
            f"({type(exc).__name__}: {_first_line(str(exc))}).", path
        ) from exc
    if not isinstance(checkpoint, dict) or not all(k in checkpoint for k in REQUIRED_KEYS):
        found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"Checkpoint {path!r} is not a hookloop checkpoint: it has no {list(REQUIRED_KEYS)} (found {found}).", path
        )
    _warn_if_newer(path, checkpoint.get("hookloop_version"))
    return checkpoint


def _first_line(text: str) -> str:
    """The first non-empty line of an error message (torch's run over many lines)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


#: What torch's weights-only unpickler says when it meets an import (a global) it does not allow.
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
#: Imports torch's own checkpoints make (tensors, ordered dicts, bytes): no foreign code.
_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def _pickle_globals(path: str) -> Optional[List[str]]:
    """The globals (``module.name``) the pickle(s) in ``path`` import; ``None`` if it holds no valid pickle.

    Read with :mod:`pickletools`, which executes nothing: random bytes are no pickle stream. A
    zip archive (torch's format) is read at its ``data.pkl``; legacy torch files hold several
    pickles followed by raw bytes, so reading stops at the first thing that is not one.
    """
    import io
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(member) if member is not None else b""
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except Exception:  # a damaged archive
        return None
    stream = io.BytesIO(data)
    found: List[str] = []
    complete = 0
    try:
        while stream.tell() < len(data):
            strings: List[str] = []
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
            complete += 1
    except Exception:
        if not complete:
            return None
    return found


def _warn_if_newer(path: str, saved: Any) -> None:
    """Warn when ``saved`` (the checkpoint's ``hookloop_version``) is above this hookloop's version."""
    from hookloop.engine import __version__

    if isinstance(saved, str) and _version_key(saved) > _version_key(__version__):
        warnings.warn(
            f"Checkpoint {path!r} was saved by hookloop {saved}, newer than this hookloop {__version__}: "
            "it may hold entries this version ignores or misreads. Upgrade hookloop if loading or "
            "resuming it goes wrong.", UserWarning, stacklevel=3)


def _version_key(version: str) -> Tuple[int, ...]:
    """``'0.10.2'`` -> ``(0, 10, 2)``: the leading numeric release (pre-release tags are not ranked)."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def load_weights(module: torch.nn.Module, state_dict: Dict[str, Any], path: str, strict: bool = True) -> None:
    """``module.load_state_dict`` with an error naming every missing, unexpected and mis-shaped key."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})"
              for k, v in state_dict.items()
              if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    problems = []
    if strict and missing:
        problems.append(f"missing in the checkpoint: {', '.join(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected in the checkpoint: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"different shapes: {', '.join(shapes)}")
    if problems:
        raise CheckpointError(
            f"Checkpoint {path!r} does not match {type(module).__name__}: " + "; ".join(problems)
            + ". Is it a checkpoint of another model (or of other hyperparameters)?", path
        )
    module.load_state_dict(state_dict, strict=strict)


# ---------------------------------------------------------------------------------------
# the plugin
# ---------------------------------------------------------------------------------------


class CheckpointIO:
    """Builds, writes, removes and restores checkpoints; makes a resumed epoch continue at the next batch."""

    def __init__(self) -> None:
        #: Generator states captured when the current training epoch's iterator was created.
        self._epoch_rng: Optional[Dict[str, Any]] = None
        #: The epoch whose batches are running (``None`` between epochs).
        self._open_epoch: Optional[int] = None
        #: Set by a restore: ``(epoch_rng, rng, epoch_metrics, metric_states)`` used by the first epoch iterated after it.
        self._pending: Optional[Tuple[Any, Any, Any, Any]] = None
        #: A fit's checkpoint and its path, between restoring the module and callbacks (set-up) and the
        #: training state (fit start).
        self._training_state: Optional[Tuple[Dict[str, Any], str]] = None
        self._warned_accumulation = False

    # ---- saving ------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def save_checkpoint(self, trainer: Any, filepath: str, weights_only: bool) -> str:
        """Build the checkpoint dict (firing ``on_save_checkpoint``) and write it atomically on rank zero."""
        if trainer.lightning_module is None:
            raise MisconfigurationException(
                f"trainer.save_checkpoint({os.fspath(filepath)!r}) needs a model: call it during or after trainer.fit().")
        checkpoint = self.dump_checkpoint(trainer, weights_only)
        if trainer.is_global_zero:
            atomic_save(checkpoint, os.fspath(filepath))
        return os.fspath(filepath)

    @hookimpl(trylast=True)
    def remove_checkpoint(self, trainer: Any, filepath: str) -> bool:
        """Delete ``filepath`` on global rank zero (where checkpoints are written); a missing file is no error."""
        if trainer.is_global_zero:
            try:
                os.remove(os.fspath(filepath))
            except FileNotFoundError:
                pass
        return True

    def dump_checkpoint(self, trainer: Any, weights_only: bool = False) -> Dict[str, Any]:
        """The checkpoint dict of the run's current state."""
        from hookloop.engine import __version__

        module = trainer.lightning_module
        state = trainer.state
        epoch, batch = self._resume_position(trainer)
        checkpoint: Dict[str, Any] = {
            "hookloop_version": __version__,
            "epoch": state.epoch,
            "global_step": state.global_step,
            "state_dict": module.state_dict(),
            "loop": {"state": state.state_dict(), "resume_epoch": epoch, "resume_batch": batch,
                     "epoch_rng": self._epoch_rng if batch else None,
                     "epoch_metrics": _epoch_metrics(trainer) if batch else {},
                     "metric_states": module_metric_states(module) if batch else {}},
        }
        if batch and not weights_only and accumulating(trainer, module):
            grads = self._accumulated_grads(trainer, module)
            if grads is not None:
                checkpoint["loop"]["accumulated_grads"] = grads
        _dump_hparams(checkpoint, module, "")
        datamodule = trainer.datamodule
        if datamodule is not None:
            # As Lightning 2.x: its hyperparameters (LightningDataModule.load_from_checkpoint rebuilds it from
            # them) and, when it has any, its state_dict() under its class's name.
            _dump_hparams(checkpoint, datamodule, "datamodule_")
            dm_state = datamodule.state_dict() if callable(getattr(datamodule, "state_dict", None)) else None
            if dm_state:
                checkpoint[type(datamodule).__qualname__] = dm_state
        if not weights_only:
            checkpoint["optimizer_states"] = [opt.state_dict() for opt in trainer.optimizers]
            checkpoint["lr_schedulers"] = [_scheduler(cfg).state_dict() for cfg in trainer.lr_scheduler_configs]
            checkpoint["rng"] = capture_rng()
            checkpoint["callbacks"] = {key: plugin.state_dict() for key, plugin in _stateful_plugins(trainer)}
            # Monitors (checkpoint ranking, plateau schedulers) read these before the next validation.
            checkpoint["callback_metrics"] = {
                k: torch.as_tensor(v).detach().cpu() for k, v in state.callback_metrics.items()
                if isinstance(v, (torch.Tensor, int, float))}
            if trainer.hooks.on_save_checkpoint is not None:
                trainer.hooks.on_save_checkpoint(trainer, module, checkpoint)
        unsafe = find_unsafe(checkpoint, "checkpoint")
        if unsafe is not None:
            # Refuse before writing: a file that cannot be loaded safely must not replace a good one.
            raise CheckpointError(
                f"Cannot save a checkpoint: {unsafe} is an object torch.load(weights_only=True) would refuse. "
                "Store plain data there (tensors, numbers, strings, lists, dicts), e.g. in the "
                "state_dict()/on_save_checkpoint of the plugin that put it there."
            )
        return checkpoint

    def _accumulated_grads(self, trainer: Any, module: Any) -> Optional[Dict[str, torch.Tensor]]:
        """The gradients accumulated so far by batches that did not step the optimizer, by parameter name.

        A checkpoint taken between such batches (a mid-epoch validation, a signal) needs them for the
        resumed run to step with the same gradients. Under DDP each process holds its own until the
        step synchronises them, and only rank zero writes the file: they are left out, with a warning.
        """
        if trainer.world_size > 1:
            if not self._warned_accumulation:
                self._warned_accumulation = True
                warnings.warn(
                    "A checkpoint was taken in the middle of gradient accumulation (accumulate_grad_batches="
                    f"{trainer.accumulate_grad_batches}) under DDP: each process's partly accumulated gradients are "
                    "not saved, so a run resumed from it restarts that accumulation and is not bitwise identical. "
                    "Validate or save at batches that step the optimizer (val_check_interval a multiple of it).")
            return None
        return {name: p.grad.detach() for name, p in module.named_parameters() if p.grad is not None}

    def _resume_position(self, trainer: Any) -> Tuple[int, int]:
        """``(epoch, batch)`` a run restored from a checkpoint taken now continues at."""
        state = trainer.state
        if self._open_epoch is None or self._open_epoch != state.epoch:
            return state.epoch, 0  # between epochs (after the loop advanced, or before it began)
        if state.phase == "train_epoch_end":
            if _cut_short_by_max_steps(trainer):
                # As in Lightning: a fit resumed with a larger max_steps goes on with this epoch's next batch.
                return state.epoch, state.batch_idx + 1
            return state.epoch + 1, 0
        if state.phase.startswith(("train", "validate")):  # in the batch loop, or a validation inside it
            return state.epoch, state.batch_idx + 1
        return state.epoch, 0

    # ---- iterating (exact resume) ------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def iterate_dataloader(self, trainer: Any, pl_module: Any, dataloader: Any, stage: str, start_batch: int) -> Any:
        """Training epochs: remember the generator states at epoch start; a resumed epoch skips at the sampler."""
        if stage != "train":
            return None
        self._open_epoch = trainer.state.epoch
        pending, self._pending = self._pending, None
        if pending is not None and start_batch:
            epoch_rng, rng, metrics, metric_states = pending
            self._epoch_rng = epoch_rng
            # After on_train_epoch_start reset them: the epoch's running self.log reductions and
            # the module's torchmetrics objects go on from where the killed run was.
            _restore_epoch_metrics(trainer, metrics)
            restore_module_metric_states(pl_module, metric_states)
            return resumed_iterator(dataloader, start_batch, epoch_rng, rng)
        if pending is not None and pending[1] is not None:
            restore_rng(pending[1])
        self._epoch_rng = capture_rng()
        return iter(dataloader)

    # ---- restoring ---------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def configure_model(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Restore ``trainer.ckpt_path``'s module and callbacks, before the model is placed and optimized.

        Lightning's order: ``on_load_checkpoint`` (the module's first), the weights, then (fitting) the
        callbacks' ``load_state_dict``. Optimizer, scheduler and loop states follow at fit start
        (:meth:`on_fit_start`), once ``configure_optimizers`` has run.
        """
        self._open_epoch = None
        self._pending = None
        self._training_state = None
        if trainer.ckpt_path is None and stage != "fit" and not trainer.model_given:
            trainer.ckpt_path = self._best_after_fit(trainer, stage)
        path = self.resolve_ckpt_path(trainer, trainer.ckpt_path, stage)
        if path is None:
            if stage == "fit":
                trainer.state.restored = False
            return
        trainer.ckpt_path = path
        try:
            # On the CPU: generator states must stay there; load_state_dict copies weights to their devices.
            checkpoint = load_checkpoint_file(path, map_location="cpu")
            self.restore_module_and_callbacks(trainer, pl_module, checkpoint, path, stage)
        except CheckpointError as exc:
            exc.flag = "ckpt_path"  # the file the run was asked for (a command line reports --ckpt_path)
            raise
        if stage == "fit":
            self._training_state = (checkpoint, path)

    @hookimpl(trylast=True)
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """A resumed fit: put back the optimizers, schedulers and the loop's position (after every ``on_fit_start``)."""
        pending, self._training_state = self._training_state, None
        if pending is None:
            return
        checkpoint, path = pending
        try:
            self.restore_training(trainer, pl_module, checkpoint, path)
        except CheckpointError as exc:
            exc.flag = "ckpt_path"
            raise

    def restore_module_and_callbacks(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any], path: str,
                                     stage: str) -> None:
        """The module's ``on_load_checkpoint``, the weights and, fitting, the callbacks' and plugins'
        ``on_load_checkpoint`` and every stateful one's ``load_state_dict``: Lightning 2.x's order.

        The module's hook fires first so that it can migrate the checkpoint (rename weight keys, fill
        in new entries) before anything is read from it; the callbacks' see the module's loaded
        weights (an averaging callback may copy them), and only when fitting, as in Lightning.
        """
        load_hooks = trainer.hooks.on_load_checkpoint is not None
        arguments = dict(trainer=trainer, pl_module=pl_module, checkpoint=checkpoint)
        if load_hooks:
            trainer.registry.subset_caller("on_load_checkpoint", _module_tier)(**arguments)
        load_weights(pl_module, checkpoint["state_dict"], path, strict=getattr(pl_module, "strict_loading", True))
        datamodule = trainer.datamodule
        if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
            datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])  # every stage, as in Lightning
        if stage != "fit":
            return
        if checkpoint.get("optimizer_states") is None:
            raise CheckpointError(
                f"Checkpoint {path!r} holds weights only (saved with weights_only=True) and cannot resume "
                "training. Load it with Model.load_from_checkpoint(path) and start a new fit instead.", path
            )
        if load_hooks:
            trainer.registry.subset_caller("on_load_checkpoint", lambda record: not _module_tier(record))(**arguments)
        saved_plugins = checkpoint.get("callbacks", {})
        for key, plugin in _stateful_plugins(trainer):
            if key in saved_plugins:
                plugin.load_state_dict(saved_plugins[key])

    def _best_after_fit(self, trainer: Any, stage: str) -> Optional[str]:
        """``'best'`` for ``validate``/``test``/``predict`` without a model after a fit that ranked a best file.

        As in Lightning (0.8 on, and 2.x): ``trainer.test()`` after ``fit`` evaluates the best model
        of the fit, not the last weights; passing a model, or ``ckpt_path``, decides otherwise. The
        decision is the same on every rank (the ranking is kept on all of them, the file may be on
        rank zero's disk only), and a best file that is gone is an error naming it.
        """
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        if not best:
            return None
        if trainer.is_global_zero:
            print(f"trainer.{stage}() without a model evaluates the best checkpoint of the fit, {best} "
                  f"(as Lightning does); pass ckpt_path='last' or a path, or the model, to choose otherwise.")
        return "best"

    def resolve_ckpt_path(self, trainer: Any, ckpt_path: Any, stage: str) -> Optional[str]:
        """A file path for ``ckpt_path`` (``None``, a path, ``'last'`` or ``'best'``)."""
        if ckpt_path is None:
            return None
        ckpt_path = os.fspath(ckpt_path)
        checkpointers = [c for c in trainer.callbacks if hasattr(c, "best_model_path")]
        if ckpt_path == "best":
            best = next((c.best_model_path for c in checkpointers if c.best_model_path), None)
            if best is None:
                raise MisconfigurationException(
                    "ckpt_path='best' but no ModelCheckpoint has a best model yet; pass a path instead.")
            return best
        if ckpt_path == "last":
            candidates: List[str] = []
            for c in checkpointers:
                more = c.last_candidates() if callable(getattr(c, "last_candidates", None)) else []
                candidates += [p for p in (getattr(c, "last_model_path", ""), *more) if p]
            candidates.append(os.path.join(trainer.default_root_dir, INTERRUPTED_NAME))
            existing = [p for p in candidates if os.path.isfile(p)]
            if not existing:
                warnings.warn(f"ckpt_path='last' is set, but no last checkpoint was found (looked at "
                              f"{sorted(set(candidates))}); training starts from scratch.")
                return None
            return max(existing, key=os.path.getmtime)
        return ckpt_path

    def restore_training(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any], path: str) -> None:
        """Put the training state back: optimizers, schedulers, loop position, accumulated gradients, generators.

        The module and the callbacks were restored at set-up (:meth:`restore_module_and_callbacks`).
        """
        saved = checkpoint["optimizer_states"]
        if len(saved) != len(trainer.optimizers):
            raise CheckpointError(f"Checkpoint {path!r} has {len(saved)} optimizer states but configure_optimizers "
                                  f"built {len(trainer.optimizers)} optimizers.", path)
        for optimizer, state in zip(trainer.optimizers, saved):
            optimizer.load_state_dict(state)
        schedulers = checkpoint.get("lr_schedulers", [])
        for cfg, state in zip(trainer.lr_scheduler_configs, schedulers):
            _scheduler(cfg).load_state_dict(state)
        loop = checkpoint.get("loop", {})
        state = trainer.state
        state.load_state_dict(loop.get("state", {}))
        state.epoch = int(loop.get("resume_epoch", checkpoint.get("epoch", 0)))
        state.global_step = int(checkpoint.get("global_step", state.global_step))
        state.start_batch = int(loop.get("resume_batch", 0))
        state.batch_idx = max(state.start_batch - 1, 0)
        state.callback_metrics.update(checkpoint.get("callback_metrics", {}))
        grads = loop.get("accumulated_grads")
        if grads:  # taken between batches that accumulate: the next one adds to these, as it would have
            for name, parameter in pl_module.named_parameters():
                if name in grads:
                    parameter.grad = grads[name].to(device=parameter.device, dtype=parameter.dtype)
        state.restored = True
        self._pending = (loop.get("epoch_rng"), checkpoint.get("rng"), loop.get("epoch_metrics", {}),
                         loop.get("metric_states", {}))


def _cut_short_by_max_steps(trainer: Any) -> bool:
    """True when ``max_steps`` ended the epoch before its last batch."""
    state = trainer.state
    max_steps = trainer.max_steps
    return (max_steps is not None and max_steps >= 0 and state.global_step >= max_steps
            and not state.skip_rest_of_epoch and state.batch_idx + 1 < trainer.num_training_batches)


def _epoch_metrics(trainer: Any) -> Dict[str, Any]:
    """The running epoch reductions of ``self.log`` values in training (plain data)."""
    results = getattr(trainer, "train_results", None)
    if results is None:
        return {}
    # A torchmetrics object keeps its own running state (saved apart: module_metric_states); its entry goes without it.
    return {name: {k: v for k, v in dataclasses.asdict(metric).items() if k != "metric_object"}
            for name, metric in results.metrics.items() if metric.metric_object is None}


def _restore_epoch_metrics(trainer: Any, saved: Dict[str, Any]) -> None:
    results = getattr(trainer, "train_results", None)
    if results is None or not saved:
        return
    from hookloop.engine.results import LoggedMetric

    for name, values in saved.items():
        results.metrics[name] = LoggedMetric(**values)


def _scheduler(config: Any) -> Any:
    """The scheduler object of a scheduler config (or the scheduler itself)."""
    return getattr(config, "scheduler", config)


def _module_tier(record: Any) -> bool:
    """Whether a registry record is the LightningModule's own hooks (the ``module`` tier)."""
    return record.tier == "module"


def _stateful_plugins(trainer: Any) -> List[Tuple[str, Any]]:
    """``(state_key, plugin)`` for every registered plugin or callback with ``state_dict``/``load_state_dict``."""
    found = []
    for record in trainer.registry.records():
        plugin = record.plugin
        if isinstance(plugin, torch.nn.Module) or isinstance(plugin, type) or record.tier == "module":
            continue
        if callable(getattr(plugin, "state_dict", None)) and callable(getattr(plugin, "load_state_dict", None)):
            key = getattr(plugin, "state_key", None)
            found.append((key if isinstance(key, str) else record.name, plugin))
    return found


def _dump_hparams(checkpoint: Dict[str, Any], owner: Any, prefix: str) -> None:
    """``owner``'s hyperparameters into ``checkpoint[prefix + 'hyper_parameters']`` as plain data (what is not is
    left out, with a warning), with ``hparams_paths`` and, seed era, ``hparams_name``/``hparams_type`` beside."""
    hparams = dict(owner.hparams) if getattr(owner, "hparams", None) else {}
    if prefix and not hparams:
        return  # a datamodule without hyperparameters adds nothing (as in Lightning)
    safe = to_safe(hparams)
    if safe is None and hparams:
        # Key by key: a None value is kept; only what cannot be stored safely is left out.
        converted = {k: to_safe(v) for k, v in hparams.items()}
        safe = {k: sv for k, sv in converted.items() if sv is not None or hparams[k] is None}
        warnings.warn(f"Hyperparameters {sorted(set(hparams) - set(safe))} are not plain data and are left out of the "
                      f"checkpoint ({type(owner).__name__}'s; it must load with torch.load(weights_only=True)).")
    checkpoint[f"{prefix}hyper_parameters"] = safe or {}
    paths = sorted(k for k, v in hparams.items() if isinstance(v, os.PathLike))
    if paths:  # stored as strings (plain data); load_from_checkpoint makes them paths again
        checkpoint[f"{prefix}hparams_paths"] = paths
    assigned = getattr(owner, "hparams_assigned", None)
    if assigned is not None:  # seed era, as Lightning 0.8 stored it: which argument, and of which type
        checkpoint[f"{prefix}hparams_name"], checkpoint[f"{prefix}hparams_type"] = "hparams", assigned


def read_hparams_file(hparams_file: Any) -> Dict[str, Any]:
    """The hyperparameters in a ``.yaml``/``.yml`` mapping or a ``.csv`` with ``key,value`` rows (values parsed as
    Python literals where they are one, as 0.8's ``tags_csv``)."""
    import ast
    import csv

    file = os.fspath(hparams_file)
    extension = os.path.splitext(file)[1].lower()
    if extension not in (".yaml", ".yml", ".csv"):
        raise CheckpointError(f"hparams_file={file!r}: give a .yaml, .yml or .csv file.", file)
    if not os.path.isfile(file):
        raise CheckpointError(f"hparams_file={file!r} does not exist.", file)
    with open(file, encoding="utf-8", newline="") as fh:
        if extension == ".csv":
            values: Any = {}
            for row in csv.DictReader(fh):
                try:
                    values[row["key"]] = ast.literal_eval(row["value"])
                except (ValueError, SyntaxError):
                    values[row["key"]] = row["value"]
                except KeyError:
                    raise CheckpointError(f"hparams_file={file!r}: a .csv needs the columns 'key' and 'value'.",
                                          file) from None
        else:
            from hookloop.plugins.optional_import import load

            values = load("yaml", "load_from_checkpoint(hparams_file=...)", "pyyaml").safe_load(fh)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CheckpointError(f"hparams_file={file!r} holds a {type(values).__name__}, not a mapping of "
                              "hyperparameters.", file)
    return values


def _build_from_hparams(cls: type, checkpoint: Dict[str, Any], path: str, prefix: str, hparams_file: Any,
                        overrides: Dict[str, Any]) -> Any:
    """``cls(**hyperparameters)`` from ``checkpoint[prefix + 'hyper_parameters']`` (or ``hparams_file``), the
    ``overrides`` winning; an error naming the file and the arguments when they do not fit."""
    import inspect

    hparams = dict(checkpoint.get(f"{prefix}hyper_parameters") or {})
    if hparams_file is not None:
        hparams = read_hparams_file(hparams_file)
    for key in checkpoint.get(f"{prefix}hparams_paths", ()):
        if isinstance(hparams.get(key), str):
            hparams[key] = pathlib.Path(hparams[key])
    params = inspect.signature(cls.__init__).parameters
    name = checkpoint.get(f"{prefix}hparams_name")
    if name in params and name not in overrides:
        # Seed era: every hyperparameter goes into the one ``hparams`` argument (overrides too,
        # unless they are arguments of their own), as the object the module was built with.
        hparams.update({k: v for k, v in overrides.items() if k not in params})
        container = argparse.Namespace(**hparams) if checkpoint.get(f"{prefix}hparams_type") == "Namespace" else hparams
        hparams = {k: v for k, v in overrides.items() if k in params}
        hparams[name] = container
    else:
        hparams.update(overrides)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            hparams = {k: v for k, v in hparams.items() if k in params}
    try:
        return cls(**hparams)
    except TypeError as exc:
        raise CheckpointError(
            f"Cannot build {cls.__name__} from checkpoint {path!r} with hyperparameters {sorted(hparams)}: {exc}. "
            "Call save_hyperparameters() in __init__, or pass the missing arguments to load_from_checkpoint.", path
        ) from exc


def load_module_from_checkpoint(cls: type, checkpoint_path: Any, map_location: Any = None, strict: bool = True,
                                hparams_file: Any = None, **overrides: Any) -> Any:
    """Build ``cls`` from the checkpoint's saved hyperparameters (``overrides`` winning) and load its weights.

    ``hparams_file`` (0.8/0.9, also in 2.x): a ``.yaml``/``.yml`` file (a logger's ``hparams.yaml``) or a 0.8
    ``.csv`` of ``key,value`` rows whose hyperparameters replace the checkpoint's; ``overrides`` still win.
    A ``LightningDataModule`` class is built from the datamodule's hyperparameters and gets its saved state.
    """
    from hookloop.engine.datamodule import LightningDataModule

    path = os.fspath(checkpoint_path)
    checkpoint = load_checkpoint_file(path, map_location=map_location)
    if isinstance(cls, type) and issubclass(cls, LightningDataModule):
        datamodule = _build_from_hparams(cls, checkpoint, path, "datamodule_", hparams_file, overrides)
        if cls.__qualname__ in checkpoint:
            datamodule.load_state_dict(checkpoint[cls.__qualname__])
        return datamodule
    module = _build_from_hparams(cls, checkpoint, path, "", hparams_file, overrides)
    if overrides_hook(module, "configure_model"):
        module.configure_model()  # layers it builds lazily must exist before their weights load (as in Lightning)
    module.on_load_checkpoint(checkpoint)  # before the weights: it may migrate them
    load_weights(module, checkpoint["state_dict"], path, strict=strict)
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        module.to(map_location)
    module.eval()
    return module
