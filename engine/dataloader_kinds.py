"""The kinds of dataloaders a run uses, and where each comes from (one table for the engine and the plugins)."""
from typing import Dict

#: The kind of dataloader each stage runs on (``fit`` trains on ``train`` and validates on ``val``).
STAGE_LOADERS: Dict[str, str] = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}
#: The module's (or datamodule's) method that returns each kind of dataloader.
LOADER_METHODS: Dict[str, str] = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader",
                                  "predict": "predict_dataloader"}
