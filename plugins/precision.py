"""Built-in ``precision``: float64 runs and mixed precision (bf16 autocast, fp16 autocast + GradScaler).

``Trainer(precision=...)`` takes ``32`` (default: the registered plugin is a :class:`Precision`
whose only hook makes it ``trainer.precision_plugin``; nothing per batch), ``64``, ``'bf16-mixed'``
or ``'16-mixed'`` (seed-era ``16``; Lightning 2.x strings such as ``'32-true'`` work too). What
each does:

* ``64``: the module is converted with ``.double()``, floating tensors in every batch become
  float64, and tensors created inside a step default to float64.
* ``'bf16-mixed'``: ``training_step`` and the evaluation steps run under
  ``torch.autocast(device, torch.bfloat16)`` (CPU or CUDA); weights and optimizer state stay fp32.
* ``'16-mixed'``: float16 autocast plus a ``GradScaler`` (the loss is scaled before backward,
  gradients are unscaled before ``on_before_optimizer_step`` and clipping, and steps with
  inf/NaN gradients are skipped). Needs CUDA; on a CPU use ``'bf16-mixed'``. The scaler's
  state is saved in checkpoints under ``'native_amp_scaling_state'``.

The optimization plugin asks the active precision (``trainer.precision_plugin``, or
:data:`FULL_PRECISION` when none is registered) to scale the loss and to step optimizers.
``trainer.precision_plugin`` is a :class:`Precision` (32), :class:`DoublePrecision` (64) or
:class:`MixedPrecision` (16/bf16), Lightning's classes. To run fp16 with a GradScaler on another
device (e.g. to test on a CPU), register ``MixedPrecision('16-mixed', device='cpu')`` (also called
``MixedPrecisionPlugin``) with ``Trainer(plugins=[...])``.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Dict, Iterator, Optional, Union

import torch

from hookloop.engine import hookimpl
from hookloop.engine.apply import apply_to_tensors
from hookloop.engine.errors import FlagError, MisconfigurationException

#: Checkpoint key of the GradScaler state (the seed era's name, kept for compatibility).
SCALER_STATE_KEY = "native_amp_scaling_state"

_ALIASES = {
    "32": "32-true", "32-true": "32-true",
    "64": "64-true", "64-true": "64-true",
    "16": "16-mixed", "16-mixed": "16-mixed",
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
}


def normalize_precision(value: Union[int, str, None]) -> str:
    """The Lightning 2.x name of a ``precision`` flag (``16`` -> ``'16-mixed'``); raises for unknown values."""
    key = "32" if value is None else str(value).strip().lower()
    if key not in _ALIASES:
        raise FlagError(
            "precision", f"Trainer(precision={value!r}) is not supported; choose 32 (default), 64, 'bf16-mixed' "
            "or '16-mixed' (the seed-era 16)."
        )
    return _ALIASES[key]


def _takes_closure(optimizer: Any) -> bool:
    try:
        return "closure" in inspect.signature(optimizer.step).parameters
    except (TypeError, ValueError):
        return True


class Precision:
    """Full (fp32) precision: no autocast, no loss scaling. The base of every precision plugin.

    The optimization plugin calls :meth:`pre_backward` on every loss before backward and
    :meth:`optimizer_step` for every optimizer step that is not on its fp32 fast path.
    """

    precision: str = "32-true"
    scaler: Optional[Any] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.precision!r})"

    def pre_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """Return the tensor to call backward on (the loss itself in full precision)."""
        return loss

    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], after_closure: Callable[[], None]) -> Any:
        """Step ``optimizer``: ``closure`` computes the gradients, ``after_closure`` fires
        ``on_before_optimizer_step`` and clips. The optimizer calls the closure itself (LBFGS may call it often)."""
        def closure_then_hooks() -> Any:
            result = closure()
            after_closure()
            return result

        if _takes_closure(optimizer):
            return optimizer.step(closure=closure_then_hooks)
        closure_then_hooks()
        return optimizer.step()

    @hookimpl(trylast=True)
    def make_precision_plugin(self, trainer: Any) -> "Precision":
        """This precision is ``trainer.precision_plugin``."""
        return self


#: The precision used when no precision plugin is registered.
FULL_PRECISION = Precision()


class PrecisionPlugin(Precision):
    """A registered precision: converts the module/batches or runs steps under autocast, and scales losses.

    Args:
        precision: ``'64-true'``, ``'bf16-mixed'`` or ``'16-mixed'`` (any alias :func:`normalize_precision` knows).
        device: the autocast/GradScaler device type; default: the trainer's root device. Only
            ``'16-mixed'`` on a non-CUDA device needs it (the flag alone refuses CPUs).
        scaler: a ``torch.amp.GradScaler`` to use for ``'16-mixed'`` (default: a new one).
    """

    def __init__(self, precision: Union[int, str], device: Optional[str] = None, scaler: Optional[Any] = None) -> None:
        self.precision = normalize_precision(precision)
        if self.precision == "32-true":
            raise MisconfigurationException("PrecisionPlugin is for 64, 'bf16-mixed' or '16-mixed'; 32 needs no plugin.")
        self.device = device
        self.scaler = scaler
        self._explicit_device = device is not None
        self._pending_scaler_state: Optional[Dict[str, Any]] = None
        hooks = {"make_precision_plugin", "configure_model", "training_step", "evaluation_step"}
        if self.precision == "64-true":
            hooks.add("transfer_batch_to_device")
        if self.precision == "16-mixed":
            hooks.update({"on_save_checkpoint", "on_load_checkpoint"})
        #: Register only the hooks this precision needs.
        self.__engine_hooks__ = hooks

    # ---- set-up ---------------------------------------------------------------------------
    @hookimpl
    def configure_model(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Check the device, convert the module (64) and build the GradScaler (16)."""
        others = [p for p in trainer.registry.get_plugins() if isinstance(p, PrecisionPlugin) and p is not self]
        if others:
            raise MisconfigurationException(
                f"Two precision plugins are registered ({self!r} and {others[0]!r}). Pass either "
                "Trainer(precision=...) or a precision plugin in Trainer(plugins=[...]), not both."
            )
        root = getattr(trainer, "root_device", None)
        device = self.device if self._explicit_device else (root.type if root is not None else "cpu")
        self.device = device
        if self.precision == "16-mixed":
            if device != "cuda" and not self._explicit_device:
                raise FlagError(
                    "precision", f"Trainer(precision='16-mixed') needs a CUDA GPU (float16 autocast with a GradScaler), but this "
                    f"run is on {device!r}. On a CPU use precision='bf16-mixed' instead."
                )
            if self.scaler is None:
                self.scaler = torch.amp.GradScaler(device)
            if self._pending_scaler_state is not None:
                self.scaler.load_state_dict(self._pending_scaler_state)
                self._pending_scaler_state = None
        if self.precision == "64-true":
            pl_module.double()

    # ---- the step's forward ---------------------------------------------------------------
    @contextlib.contextmanager
    def forward_context(self) -> Iterator[None]:
        """The context a step's forward runs in: autocast for mixed precision, float64 default dtype for 64."""
        if self.precision == "64-true":
            previous = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                yield
            finally:
                torch.set_default_dtype(previous)
            return
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        with torch.autocast(device_type=self.device or "cpu", dtype=dtype):
            yield

    @hookimpl(wrapper=True)
    def training_step(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, optimizer_idx: Optional[int]) -> Any:
        """Run ``training_step`` inside :meth:`forward_context`."""
        with self.forward_context():
            return (yield)

    @hookimpl(wrapper=True)
    def evaluation_step(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int,
                        stage: str) -> Any:
        """Run validation/test/predict steps inside :meth:`forward_context`."""
        with self.forward_context():
            return (yield)

    @hookimpl(wrapper=True)
    def transfer_batch_to_device(self, trainer: Any, pl_module: Any, batch: Any, device: Any, dataloader_idx: int) -> Any:
        """For 64: floating tensors of the moved batch become float64."""
        moved = yield
        if moved is None:  # nothing needed moving (CPU training without a GPU): convert the batch itself
            moved = batch
        return apply_to_tensors(moved, lambda t: t.double() if t.is_floating_point() else t)

    # ---- backward and step ------------------------------------------------------------------
    def pre_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """Scale the loss with the GradScaler ('16-mixed'); otherwise return it unchanged."""
        scaler = self.scaler
        return scaler.scale(loss) if scaler is not None else loss

    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], after_closure: Callable[[], None]) -> Any:
        """With a GradScaler: gradients, unscale, hooks and clipping, then ``scaler.step`` and ``scaler.update``."""
        scaler = self.scaler
        if scaler is None:
            return super().optimizer_step(optimizer, closure, after_closure)
        if isinstance(optimizer, torch.optim.LBFGS):
            raise MisconfigurationException(
                "precision='16-mixed' (GradScaler) cannot drive LBFGS, which re-evaluates its closure; "
                "use precision 32 or 'bf16-mixed' with LBFGS."
            )
        result = closure()
        scaler.unscale_(optimizer)  # hooks and clipping see true gradients
        after_closure()
        scaler.step(optimizer)  # skipped when the gradients hold inf/NaN
        scaler.update()
        return result

    # ---- checkpoints ------------------------------------------------------------------------
    @hookimpl
    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any]) -> None:
        """Store the GradScaler's state (scale, growth tracker) under ``'native_amp_scaling_state'``."""
        if self.scaler is not None:
            checkpoint[SCALER_STATE_KEY] = self.scaler.state_dict()

    @hookimpl
    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: Dict[str, Any]) -> None:
        """Restore the GradScaler's state (now, or when the scaler is built)."""
        state = checkpoint.get(SCALER_STATE_KEY)
        if state is None:
            return
        if self.scaler is not None:
            self.scaler.load_state_dict(state)
        else:
            self._pending_scaler_state = dict(state)


class MixedPrecision(PrecisionPlugin):
    """``'16-mixed'`` or ``'bf16-mixed'`` (Lightning's ``MixedPrecision``; 1.x: ``MixedPrecisionPlugin``)."""

    def __init__(self, precision: Union[int, str], device: Optional[str] = None, scaler: Optional[Any] = None) -> None:
        super().__init__(precision, device, scaler)
        if self.precision not in ("16-mixed", "bf16-mixed"):
            raise MisconfigurationException(
                f"MixedPrecision({precision!r}): pass '16-mixed' or 'bf16-mixed' (64 is DoublePrecision()).")


class DoublePrecision(PrecisionPlugin):
    """``precision=64``: the module and float batches in float64 (Lightning's ``DoublePrecision``)."""

    def __init__(self) -> None:
        super().__init__("64-true")


#: Lightning 1.x's name.
MixedPrecisionPlugin = MixedPrecision


def precision_plugin_for(trainer: Any) -> Precision:
    """The built-in precision plugin ``trainer.precision`` asks for (a plain :class:`Precision` for 32)."""
    name = normalize_precision(trainer.precision)
    if name == "32-true":
        return Precision()
    return DoublePrecision() if name == "64-true" else MixedPrecision(name)
