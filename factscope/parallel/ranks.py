"""Which share of the work this process does: ``--shard K/N``, or its rank under ``torchrun``.

Usage::

    shard = parse_shard("0/2")                  # Shard(index=0, count=2); "3/2" raises ShardError
    with Ranks.start(shard=None) as ranks:      # torchrun: RANK/WORLD_SIZE; else one process
        ranks.shard                             # Shard(RANK, WORLD_SIZE) under torchrun
        ranks.barrier()                         # no-op without a process group
        total = ranks.all_reduce_sum(torch.ones(2, dtype=torch.float64))

Under ``torchrun`` the process group uses NCCL when CUDA is available and gloo
otherwise; each rank gets its own GPU (``LOCAL_RANK``), or, on a CPU, an equal share
of the cores as torch threads. With ``device_map="auto"`` a rank is given a block of
the node's GPUs instead (``CUDA_VISIBLE_DEVICES``), so N ranks × k GPUs share a node.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

import torch

# Ranks finish their shares at different times; the last barrier waits for the slowest.
DEFAULT_TIMEOUT_S = 24 * 3600


class ShardError(ValueError):
    """A ``--shard`` value that names no share, or one that contradicts the launcher."""


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (0-based, like a torch rank)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: K must be 0..N-1 and N at least 1.")

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` → ``Shard(K, N)``; anything else raises :class:`ShardError`."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ShardError(f"--shard expects K/N (0-based K below N, e.g. 0/2), got {text!r}.")
    return Shard(int(match.group(1)), int(match.group(2)))


def launcher_shard() -> Shard | None:
    """``Shard(RANK, WORLD_SIZE)`` when started by torchrun with more than one process, else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Shard(int(os.environ.get("RANK", "0")), world)


def resolve_shard(option: str | None) -> Shard:
    """The share of this process from ``--shard`` and the launcher's environment (they may not both split)."""
    given = parse_shard(option) if option else None
    launched = launcher_shard()
    if given is not None and launched is not None and not given.whole:
        raise ShardError(f"--shard {given} under torchrun (WORLD_SIZE={launched.count}): use one or the other.")
    return launched or given or Shard()


def _local() -> tuple[int, int]:
    return int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def cpu_threads_share(cpus: int | None = None) -> int:
    """Torch threads for this rank: the node's cores split evenly between its local ranks."""
    _, local_world = _local()
    return max(1, (cpus or os.cpu_count() or 1) // max(1, local_world))


def gpu_block(n_gpus: int, local_rank: int, local_world: int) -> list[int]:
    """The node's GPUs this local rank owns: a contiguous block of ``n_gpus // local_world`` (at least one)."""
    per_rank = max(1, n_gpus // max(1, local_world))
    first = (local_rank * per_rank) % max(1, n_gpus)
    return list(range(first, min(n_gpus, first + per_rank)))


def restrict_visible_gpus(block: list[int]) -> None:
    """Show this process only ``block`` (indices into the GPUs it can see now); call before CUDA starts."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(max(block) + 1)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(names[i] for i in block)


@dataclass
class Ranks:
    """This process's place in a data-parallel run (a process group under torchrun)."""

    shard: Shard
    distributed: bool = False
    device: str | None = None  # the GPU this rank uses when it has one of its own

    @classmethod
    def start(cls, shard: Shard | None = None, *, device_map: str | None = None, threads: int | None = None,
              timeout_s: float | None = None) -> "Ranks":
        """Join the process group when launched by torchrun; pin this rank's GPU(s) or CPU threads."""
        launched = launcher_shard()
        if launched is None:
            if threads is not None:
                torch.set_num_threads(threads)
            return cls(shard or Shard())
        import torch.distributed as dist

        local_rank, local_world = _local()
        device = None
        # device_count() asks NVML and leaves CUDA unstarted (is_available() would start it and fix the visible set).
        n_gpus = torch.cuda.device_count()
        if n_gpus and device_map is not None:  # k GPUs per rank: this rank sees its block as cuda:0..k-1
            restrict_visible_gpus(gpu_block(n_gpus, local_rank, local_world))
        elif n_gpus:
            device = f"cuda:{local_rank % n_gpus}"
            torch.cuda.set_device(local_rank % n_gpus)
        torch.set_num_threads(threads or cpu_threads_share())
        timeout = datetime.timedelta(seconds=timeout_s or float(os.environ.get("FACTSCOPE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if n_gpus else "gloo", timeout=timeout)
        return cls(launched, distributed=True, device=device)

    @property
    def main(self) -> bool:
        """Rank 0 (or the only process): the one that writes shared files."""
        return self.shard.index == 0

    def _reduce_device(self) -> torch.device:
        import torch.distributed as dist

        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over ranks (a new tensor on ``tensor``'s device; dtype kept)."""
        if not self.distributed:
            return tensor.clone()
        import torch.distributed as dist

        work = tensor.to(self._reduce_device(), copy=True)
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.to(tensor.device)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._reduce_device())
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        """True on every rank when ``ok`` is true on every rank (so all ranks take the same branch)."""
        if not self.distributed:
            return ok
        return bool(self.all_reduce_sum(torch.tensor([0 if ok else 1], dtype=torch.int64)).item() == 0)

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.distributed = False

    def __enter__(self) -> "Ranks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shard_slices(n: int, shard: Shard, block: int = 1) -> Iterator[range]:
    """Blocks of ``block`` consecutive indices of ``range(n)`` dealt round-robin; those of ``shard``."""
    block = max(1, block)
    for k, start in enumerate(range(0, n, block)):
        if k % shard.count == shard.index:
            yield range(start, min(n, start + block))


def shard_indices(n: int, shard: Shard, block: int = 1) -> list[int]:
    """The indices of ``range(n)`` that ``shard`` owns (see :func:`shard_slices`); disjoint, covering."""
    return [i for r in shard_slices(n, shard, block) for i in r]
