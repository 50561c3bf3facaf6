"""The replay buffer's data structures (our Reverb), free of any transport.

``Table`` holds items under a sampler (``Uniform``/``Fifo``), a FIFO remover and a rate limiter
(``MinSize``/``SampleToInsertRatio``); ``checkpoint`` saves and restores tables atomically. The
gRPC service around them is :mod:`spiral.services.replay_service`.
"""

from spiral.replay.checkpoint import CheckpointResult, load_tables, restore_tables, save_tables
from spiral.replay.rate_limiters import MinSize, RateLimiter, RateLimiterInfo, SampleToInsertRatio, rate_limiter_from_config
from spiral.replay.selectors import Fifo, ItemSelector, Uniform, make_selector
from spiral.replay.table import ItemData, SampledItem, Table, TableInfo

__all__ = [
    "CheckpointResult",
    "Fifo",
    "ItemData",
    "ItemSelector",
    "MinSize",
    "RateLimiter",
    "RateLimiterInfo",
    "SampleToInsertRatio",
    "SampledItem",
    "Table",
    "TableInfo",
    "Uniform",
    "load_tables",
    "make_selector",
    "rate_limiter_from_config",
    "restore_tables",
    "save_tables",
]
