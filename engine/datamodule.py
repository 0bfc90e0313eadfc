"""``LightningDataModule``: the data side of a run, reusable across models."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from hookloop.engine.apply import move_to_device
from hookloop.engine.datamodule_calls import has_called, wrap_subclass
from hookloop.engine.hparams import HyperparametersMixin


def _call_record(name: str, stage: Optional[str] = None) -> property:
    """A read-only flag: whether ``name(stage)`` (or ``name()``, for every stage) has run, by hand or by a trainer."""
    call = f"``{name}()``" if stage is None else f"``{name}({stage!r})`` (or ``{name}()``)"
    return property(lambda self: has_called(self, name, stage), doc=f"Whether {call} has run (0.9).")


class LightningDataModule(HyperparametersMixin):
    """Groups ``prepare_data``, ``setup`` and the ``*_dataloader`` methods of a data set.

    Pass it as ``trainer.fit(model, datamodule=dm)``; its dataloaders take precedence over
    the module's, and so do its ``transfer_batch_to_device``/``on_before_batch_transfer``/
    ``on_after_batch_transfer`` where it defines them. ``self.trainer`` is set while it is in use.
    ``self.save_hyperparameters()`` in ``__init__`` keeps its arguments in ``self.hparams``, as a module's.

    Lightning 0.9's datamodule API works too: ``train_transforms``/``val_transforms``/``test_transforms``,
    ``dims`` and ``size()``, the ``has_prepared_data``/``has_setup_fit``/``has_setup_test``... record,
    ``add_argparse_args``/``from_argparse_args``. A ``prepare_data()`` or ``setup(stage)`` called by hand is
    not repeated by the next run that would call it (see :mod:`hookloop.engine.datamodule_calls`).
    """

    prepare_data_per_node: bool = True
    #: The shape of one input (0.9): ``size()`` returns it. Set it in ``__init__`` or ``setup``.
    dims: Any = ()
    #: The transforms given to ``__init__`` (0.9), yours to apply in ``setup``; assignable.
    train_transforms: Any = None
    val_transforms: Any = None
    test_transforms: Any = None

    def __init__(self, train_transforms: Optional[Callable[..., Any]] = None,
                 val_transforms: Optional[Callable[..., Any]] = None,
                 test_transforms: Optional[Callable[..., Any]] = None,
                 dims: Optional[Tuple[int, ...]] = None) -> None:
        self.trainer: Optional[Any] = None
        self.train_transforms = train_transforms
        self.val_transforms = val_transforms
        self.test_transforms = test_transforms
        if dims is not None:
            self.dims = dims

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_subclass(cls)  # note calls of prepare_data/setup/teardown (the has_* record, calls made by hand)

    # ---- Lightning 0.9's datamodule attributes --------------------------------------------------
    def size(self, dim: Optional[int] = None) -> Union[Tuple[Any, ...], Any]:
        """``dims`` (the shape of one input), or its entry ``dim``."""
        return self.dims if dim is None else self.dims[dim]

    has_prepared_data = _call_record("prepare_data")
    has_setup_fit = _call_record("setup", "fit")
    has_setup_validate = _call_record("setup", "validate")
    has_setup_test = _call_record("setup", "test")
    has_setup_predict = _call_record("setup", "predict")
    has_teardown_fit = _call_record("teardown", "fit")
    has_teardown_validate = _call_record("teardown", "validate")
    has_teardown_test = _call_record("teardown", "test")
    has_teardown_predict = _call_record("teardown", "predict")

    # ---- argparse (0.9) ---------------------------------------------------------------------------
    @classmethod
    def add_argparse_args(cls, parent_parser: Any, **kwargs: Any) -> Any:
        """Add one ``--flag`` per ``__init__`` argument of this datamodule to ``parent_parser`` and return it."""
        from hookloop.engine.argparse_support import add_argparse_args

        return add_argparse_args(cls, parent_parser, **kwargs)

    @classmethod
    def from_argparse_args(cls, args: Any, **overrides: Any) -> "LightningDataModule":
        """Build this datamodule from an ``argparse.Namespace`` (keys it does not take are ignored), ``overrides``
        winning."""
        from hookloop.engine.argparse_support import from_argparse_args

        return from_argparse_args(cls, args, **overrides)

    @classmethod
    def get_init_arguments_and_types(cls) -> List[Tuple[str, Tuple[Any, ...], Any]]:
        """``(name, types, default)`` of each ``__init__`` argument (0.9); ``types`` lists a ``Union``'s members."""
        from hookloop.engine.argparse_support import init_arguments_and_types

        return init_arguments_and_types(cls)

    @classmethod
    def from_datasets(cls, train_dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None,
                      predict_dataset: Any = None, batch_size: int = 1, num_workers: int = 0,
                      **datamodule_kwargs: Any) -> "LightningDataModule":
        """A datamodule serving these datasets through ``DataLoader``s (Lightning's ``from_datasets``).

        Each ``*_dataset`` may be one dataset or a dict or list of them (several dataloaders). The
        training data is shuffled (an ``IterableDataset`` never is). ``batch_size`` and
        ``num_workers`` go to every ``DataLoader``, and to ``cls(...)`` too when its ``__init__``
        takes them; ``datamodule_kwargs`` go to ``cls(...)``.
        """
        def loaders(datasets: Any, shuffle: bool) -> Callable[[], Any]:
            def make(ds: Dataset) -> DataLoader:
                return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and not isinstance(ds, IterableDataset),
                                  num_workers=num_workers, pin_memory=torch.cuda.is_available())

            def dataloader() -> Any:
                if isinstance(datasets, Mapping):
                    return {name: make(ds) for name, ds in datasets.items()}
                if isinstance(datasets, (list, tuple)):
                    return [make(ds) for ds in datasets]
                return make(datasets)

            return dataloader

        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        special = {k: v for k, v in (("batch_size", batch_size), ("num_workers", num_workers))
                   if takes_any or k in params}
        datamodule = cls(**datamodule_kwargs, **special)
        for name, datasets, shuffle in (("train_dataloader", train_dataset, True), ("val_dataloader", val_dataset, False),
                                        ("test_dataloader", test_dataset, False),
                                        ("predict_dataloader", predict_dataset, False)):
            if datasets is not None:
                setattr(datamodule, name, loaders(datasets, shuffle))
        return datamodule

    def prepare_data(self) -> None:
        """Download or write data; called once per node (or job) before ``setup``."""

    def setup(self, stage: Optional[str] = None) -> None:
        """Build data sets for ``stage`` (``'fit'``, ``'validate'``, ``'test'``, ``'predict'``)."""

    def teardown(self, stage: Optional[str] = None) -> None:
        """Release what ``setup`` built."""

    def train_dataloader(self) -> Any:
        """Return the training dataloader (or a dict or list of them: each batch then holds one of each)."""
        raise NotImplementedError

    def val_dataloader(self) -> Any:
        """Return the validation dataloader(s)."""
        raise NotImplementedError

    def test_dataloader(self) -> Any:
        """Return the test dataloader(s)."""
        raise NotImplementedError

    def predict_dataloader(self) -> Any:
        """Return the predict dataloader(s)."""
        raise NotImplementedError

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int = 0) -> Any:
        """Move ``batch`` to ``device``; define it to move a custom batch type (it then replaces the module's)."""
        return move_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change ``batch`` before it moves to the device; defined here, it replaces the module's."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Change ``batch`` once it is on the device; defined here, it replaces the module's."""
        return batch

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             **overrides: Any) -> "LightningDataModule":
        """Build this datamodule from the hyperparameters a checkpoint saved for it (``overrides`` win) and give
        it the state it saved (Lightning 2.x)."""
        from hookloop.engine.builtins import provided  # the file format belongs to the plugin that writes it

        return provided().load_from_checkpoint(cls, checkpoint_path, map_location=map_location,
                                               hparams_file=hparams_file, **overrides)

    def state_dict(self) -> dict:
        """State saved in checkpoints, under the class's name (default: nothing); a resumed, validated or tested
        run gives it back to :meth:`load_state_dict` before its data is loaded."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state returned by :meth:`state_dict`."""
