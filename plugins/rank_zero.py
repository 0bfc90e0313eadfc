"""Rank-zero helpers for plugins: the engine's own (:mod:`hookloop.engine.rank_zero`), under their older path.

Only global rank zero writes logs, draws bars and prints summaries; plugins ask :func:`is_rank_zero`
or wrap a method in :func:`rank_zero_only` instead of testing ranks themselves.
"""
from __future__ import annotations

from hookloop.engine.rank_zero import (env_rank, is_rank_zero, rank_zero_debug, rank_zero_deprecation, rank_zero_info,
                                       rank_zero_only, rank_zero_warn)

__all__ = ["is_rank_zero", "rank_zero_only", "env_rank", "rank_zero_debug", "rank_zero_info", "rank_zero_warn",
           "rank_zero_deprecation"]
