"""``PyTorchProfiler`` (``Trainer(profiler="pytorch")``): ``torch.profiler`` around each stage, as Lightning 2.x's.

When a stage (fit, validate, test, predict) starts, a ``torch.profiler.profile`` starts; it steps after every
batch, and by default records batches 3 to 5 of the stage (``schedule(wait=1, warmup=1, active=3)``, once).
Their Chrome trace goes to the log directory (``{stage}-{filename}.<id>.pt.trace.json``, open it in
``chrome://tracing`` or Perfetto), and when the stage ends the table of operators (``key_averages()``) is
printed, and written to ``{dirpath}/{stage}-{filename}.txt`` when a filename is given. Every submodule's
forward is labelled with its name (``record_module_names``), and ``with trainer.profiler.profile("name"):``
labels a section of your own. Registered only when asked for; its per-batch cost is the profiler's step.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule, tensorboard_trace_handler

from hookloop.engine import hookimpl
from hookloop.engine.errors import MisconfigurationException
from hookloop.plugins.profiler import report_dir, write_report

#: ``torch.profiler.profile`` arguments a ``PyTorchProfiler`` passes on.
PROFILE_ARGUMENTS = ("activities", "schedule", "on_trace_ready", "record_shapes", "profile_memory", "with_stack",
                     "with_flops", "with_modules", "experimental_config", "acc_events")


class PyTorchProfiler:
    """Profile each stage with ``torch.profiler``; report the operators and export a Chrome trace.

    Args:
        dirpath: Directory of the report and the trace (default: the trainer's ``log_dir``).
        filename: Write each stage's table to ``{dirpath}/{stage}-{filename}.txt``; also names the trace files.
        group_by_input_shapes: Group the table's rows by input shapes too (needs ``record_shapes=True``).
        emit_nvtx: Emit NVTX ranges for ``nvprof``/Nsight instead of profiling (CUDA).
        export_to_chrome: Write the Chrome trace of the recorded steps.
        row_limit: Rows of the table (``-1``: all).
        sort_by_key: Column the table is sorted by (default ``cpu_time_total``, ``cuda_time_total`` with CUDA).
        record_module_names: Label each submodule's forward with its name.
        table_kwargs: More arguments of ``key_averages().table(...)``.
        profiler_kwargs: Arguments of ``torch.profiler.profile`` (``schedule=None`` records every step).
    """

    def __init__(self, dirpath: Optional[str] = None, filename: Optional[str] = None,
                 group_by_input_shapes: bool = False, emit_nvtx: bool = False, export_to_chrome: bool = True,
                 row_limit: int = 20, sort_by_key: Optional[str] = None, record_module_names: bool = True,
                 table_kwargs: Optional[Dict[str, Any]] = None, **profiler_kwargs: Any) -> None:
        unknown = sorted(set(profiler_kwargs) - set(PROFILE_ARGUMENTS))
        if unknown:
            raise MisconfigurationException(
                f"PyTorchProfiler({', '.join(f'{k}=...' for k in unknown)}): not arguments of torch.profiler.profile; "
                f"it takes {list(PROFILE_ARGUMENTS)}.")
        if group_by_input_shapes and not profiler_kwargs.get("record_shapes", False):
            raise MisconfigurationException(
                "PyTorchProfiler(group_by_input_shapes=True) needs record_shapes=True to know the shapes.")
        self.dirpath = dirpath
        self.filename = filename
        self._group_by_input_shapes = group_by_input_shapes
        self._emit_nvtx = emit_nvtx
        self._export_to_chrome = export_to_chrome
        self._row_limit = row_limit
        self._sort_by_key = sort_by_key
        self._record_module_names = record_module_names
        self._table_kwargs = dict(table_kwargs or {})
        self._profiler_kwargs = profiler_kwargs
        #: The last report printed.
        self.last_report = ""
        self._profiler: Optional[profile] = None
        self._running = False
        self._context: Any = None
        self._module_hooks: List[Any] = []

    # ---- Lightning's profiler API ----------------------------------------------------------
    @contextlib.contextmanager
    def profile(self, action_name: str) -> Iterator[None]:
        """Label the ``with`` block ``action_name`` in the trace and the table."""
        with record_function(action_name):
            yield

    def summary(self) -> str:
        """The table of operators the last profiled stage recorded (empty when nothing was recorded)."""
        profiler = self._profiler
        if profiler is None or self._emit_nvtx:
            return ""
        try:
            averages = profiler.key_averages(group_by_input_shape=self._group_by_input_shapes)
        except (AssertionError, RuntimeError):  # no step was recorded (a schedule whose window never opened)
            return ""
        sort_by = self._sort_by_key or ("cuda_time_total" if torch.cuda.is_available() else "cpu_time_total")
        return averages.table(sort_by=sort_by, row_limit=self._row_limit, **self._table_kwargs)

    def describe(self) -> None:
        """Print the table of the last profiled stage."""
        print(self.summary())

    # ---- hooks -----------------------------------------------------------------------------
    @hookimpl
    def on_init_end(self, trainer: Any) -> None:
        """Become ``trainer.profiler``."""
        trainer.profiler = self

    @hookimpl(tryfirst=True)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Start profiling the stage."""
        self._stop()
        if self._record_module_names:
            self._label_modules(pl_module)
        if self._emit_nvtx:
            self._context = torch.autograd.profiler.emit_nvtx()
            self._context.__enter__()
            return
        self._profiler = profile(**self._arguments(trainer, stage))
        self._profiler.__enter__()
        self._running = True

    def _arguments(self, trainer: Any, stage: str) -> Dict[str, Any]:
        kwargs = dict(self._profiler_kwargs)
        if "activities" not in kwargs:
            kwargs["activities"] = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        if "schedule" not in kwargs:
            kwargs["schedule"] = schedule(wait=1, warmup=1, active=3, repeat=1)
        if "on_trace_ready" not in kwargs and self._export_to_chrome:
            rank = f"-rank{trainer.global_rank}" if trainer.world_size > 1 else ""
            kwargs["on_trace_ready"] = tensorboard_trace_handler(
                report_dir(trainer, self.dirpath), worker_name=f"{stage}-{self.filename or 'pytorch-profiler'}{rank}")
        return {k: v for k, v in kwargs.items() if v is not None or k != "schedule"}

    def _label_modules(self, pl_module: Any) -> None:
        for name, module in pl_module.named_modules():
            if not name:
                continue
            label = f"[module] {name} ({type(module).__name__})"
            self._module_hooks.append(module.register_forward_pre_hook(_open_label(label)))
            self._module_hooks.append(module.register_forward_hook(_close_label))

    @hookimpl
    def on_train_batch_end(self, trainer: Any) -> None:
        """One training step done."""
        self._step()

    @hookimpl
    def on_validation_batch_end(self, trainer: Any) -> None:
        """One validation step done."""
        self._step()

    @hookimpl
    def on_test_batch_end(self, trainer: Any) -> None:
        """One test step done."""
        self._step()

    @hookimpl
    def on_predict_batch_end(self, trainer: Any) -> None:
        """One predict step done."""
        self._step()

    def _step(self) -> None:
        if self._running:
            self._profiler.step()

    @hookimpl(trylast=True)
    def teardown(self, trainer: Any, stage: str) -> None:
        """Stop profiling; print (and maybe write) the stage's table."""
        self._stop()
        report = self.summary()
        if report:
            self.last_report = f"PyTorchProfiler report — {stage}\n{report}"
            write_report(trainer, stage, self.last_report, self.dirpath, self.filename)

    def _stop(self) -> None:
        for handle in self._module_hooks:
            handle.remove()
        self._module_hooks = []
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None
        if self._running:
            self._running = False
            self._profiler.__exit__(None, None, None)


def _open_label(label: str) -> Any:
    def enter(module: Any, inputs: Any) -> None:
        _labels.append(record_function(label).__enter__())

    return enter


def _close_label(module: Any, inputs: Any, output: Any) -> None:
    if _labels:
        _labels.pop().__exit__(None, None, None)


#: Open module labels, innermost last (forwards nest).
_labels: List[Any] = []


__all__ = ["PyTorchProfiler"]
