"""The CLI side of data-parallel runs: ``--shard``, torchrun ranks, and the merge at the end.

Usage::

    shard = shard_or_exit(shard_option)                   # exit 2 on "3/2" or --shard under torchrun
    ranks, model = join_ranks(shard, model, threads)      # process group, this rank's GPU or CPU threads
    finish(ranks, out)                                    # rank 0 (or the last --shard) merges the parts
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli.common import ModelSpec, fail, set_threads
from factscope.parallel.ranks import Ranks, Shard, ShardError, resolve_shard

ShardOption = Annotated[Optional[str], typer.Option(
    "--shard", help="K/N: do share K (0-based) of N of the cases in out/parts/K-of-N; merge with `factscope merge`. "
    "Under torchrun the rank and world size choose the share.")]


def shard_or_exit(option: Optional[str]) -> Shard:
    """This process's share (``--shard`` or torchrun's RANK/WORLD_SIZE); exit 2 on a bad value."""
    try:
        return resolve_shard(option)
    except ShardError as err:
        fail(str(err))
        raise


def join_ranks(shard: Shard, model: ModelSpec, threads: Optional[int]) -> tuple[Ranks, ModelSpec]:
    """Join torchrun's process group (if any); the model spec with this rank's own GPU filled in."""
    ranks = Ranks.start(shard, device_map=model.device_map, threads=threads)
    if not ranks.distributed:
        set_threads(threads)
    if ranks.device is not None and model.device is None and model.device_map is None:
        model = dataclasses.replace(model, device=ranks.device)
    return ranks, model


def finish(ranks: Ranks, out: Path) -> None:
    """Merge the parts into ``out/results.jsonl`` once every case is done: rank 0 after a barrier, or any --shard."""
    from factscope.evaluate.parts import done_pairs, merge_parts, planned
    from factscope.evaluate.runlog import RunLog
    from factscope.io_utils import LockedError

    if ranks.shard.whole:
        return
    ranks.barrier()
    if not ranks.main and ranks.distributed:
        return
    manifest = RunLog(out).manifest()
    if manifest is None or len(done_pairs(out)) < planned(manifest):
        typer.echo(f"{out}: shard {ranks.shard} done; other shards are still missing (merge later with: factscope merge {out})")
        return
    try:
        report = merge_parts(out)
    except LockedError:  # another shard finishing at the same moment merges
        return
    typer.echo(f"{out}: merged {report.records} record(s) of {report.parts} part file(s) into {out / 'results.jsonl'}")
