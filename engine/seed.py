"""``seed_everything``: one seed for Python, NumPy and torch (CPU and CUDA)."""
from __future__ import annotations

import os
import random
from typing import Optional

import torch

#: Environment variable holding the global seed, read by worker processes and samplers.
SEED_ENV = "PL_GLOBAL_SEED"


def seed_everything(seed: Optional[int] = None, workers: bool = False) -> int:
    """Seed ``random``, NumPy (if installed) and torch, and export the seed as ``PL_GLOBAL_SEED``.

    With ``seed=None`` the value of ``PL_GLOBAL_SEED`` is used, else 0. ``workers=True``
    also sets ``PL_SEED_WORKERS=1`` so dataloader workers are seeded from it. Returns the seed.
    """
    if seed is None:
        seed = int(os.environ.get(SEED_ENV, 0))
    seed = int(seed)
    os.environ[SEED_ENV] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # NumPy is optional
        pass
    torch.manual_seed(seed)  # seeds every CUDA device too
    return seed
