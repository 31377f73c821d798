"""Data-parallel runs: shares of the cases per rank (torchrun) or per ``--shard K/N`` process.

Usage::

    from factscope.parallel import Ranks, Shard, parse_shard, shard_indices
    shard_indices(6, Shard(1, 2))        # [1, 3, 5]
"""

from factscope.parallel.ranks import (
    Ranks,
    Shard,
    ShardError,
    cpu_threads_share,
    gpu_block,
    launcher_shard,
    parse_shard,
    resolve_shard,
    shard_indices,
    shard_slices,
)

__all__ = ["Ranks", "Shard", "ShardError", "cpu_threads_share", "gpu_block", "launcher_shard", "parse_shard",
           "resolve_shard", "shard_indices", "shard_slices"]
