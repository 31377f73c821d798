"""Checkpoints of optimised values, so that a long batch edit resumes where it stopped.

Usage::

    with checkpoint_values("runs/memit-10k/values"):
        delta = edit(adapter, requests, editor="memit")   # interrupted? rerun: finished chunks load

MEMIT and PMET optimise values in chunks of ``value_chunk`` requests, and for
thousands of facts that is hours of work on a CPU. Inside ``checkpoint_values`` each
finished chunk is written to one safetensors file named by a hash of everything that
determines it (model fingerprint, the chunk's requests, layer, site kinds, context
prefixes, hyperparameters), so a rerun loads it instead of optimising again. A file
that is unreadable or does not match its key is ignored and the chunk recomputed.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from factscope.edit.cache_files import read_tagged, write_tagged
from factscope.edit.request import EditRequest

_ACTIVE: contextvars.ContextVar["ValueStore | None"] = contextvars.ContextVar("factscope_value_store", default=None)


def value_key(fingerprint: str, requests: Sequence[EditRequest], layer: int, kinds: Sequence[str],
              contexts: Sequence[str], hparams: dict[str, Any]) -> str:
    """A hash naming one chunk's value optimisation."""
    spec = {
        "model": fingerprint,
        "requests": [r.to_dict() for r in requests],
        "layer": int(layer),
        "kinds": list(kinds),
        "contexts": list(contexts),
        "hparams": hparams,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ValueStore:
    """A folder of per-chunk value files (see module docstring)."""

    folder: Path

    def path(self, key: str) -> Path:
        return self.folder / f"values-{key}.safetensors"

    def load(self, key: str, kinds: Sequence[str], n: int) -> dict[str, Any] | None:
        """``{"init", "delta", "nll", "steps"}`` of a finished chunk, or ``None``."""
        found = read_tagged(self.path(key), "value checkpoint")
        if found is None:
            return None
        tensors, meta = found
        init = {k: tensors.get(f"init.{k}") for k in kinds}
        delta = {k: tensors.get(f"delta.{k}") for k in kinds}
        parts = [*init.values(), *delta.values()]
        ok = (
            meta.get("key") == key
            and all(t is not None and t.dim() == 2 and t.shape[0] == n and bool(torch.isfinite(t).all()) for t in parts)
            and len(meta.get("nll", [])) == n
            and len(meta.get("steps", [])) == n
        )
        if not ok:
            warnings.warn(f"Value checkpoint {self.path(key)} does not match its key; recomputing.", stacklevel=2)
            return None
        return {"init": init, "delta": delta, "nll": meta["nll"], "steps": meta["steps"]}

    def save(self, key: str, init: dict[str, torch.Tensor], delta: dict[str, torch.Tensor],
             nll: list[float], steps: list[int]) -> None:
        """Write a finished chunk (atomically)."""
        tensors = {f"init.{k}": v for k, v in init.items()}
        tensors.update({f"delta.{k}": v for k, v in delta.items()})
        write_tagged(self.path(key), tensors, {"key": key, "nll": nll, "steps": steps})


@contextlib.contextmanager
def checkpoint_values(folder: str | Path) -> Iterator[ValueStore]:
    """Within this block, batch editors save and reuse each finished value chunk in ``folder``."""
    store = ValueStore(Path(folder))
    token = _ACTIVE.set(store)
    try:
        yield store
    finally:
        _ACTIVE.reset(token)


def active_store() -> ValueStore | None:
    """The store of the innermost :func:`checkpoint_values` block, if any."""
    return _ACTIVE.get()
