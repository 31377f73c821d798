"""The dataset lens split across ranks or ``--shard`` processes, each writing its own part.

Usage::

    settings = LensSettings(n=200).check(adapter)
    lens_share(adapter, facts, sets, settings, Shard(1, 2), "out/lens")   # out/lens/parts/1-of-2/lens_rows.json
    result = merged_lens(adapter, facts, sets, settings, "out/lens")      # None until every part is there

Every process prepares the same facts and draws the same random tokens (cheap); a shard
computes whole batches of the one-process run (blocks of ``batch_size`` facts dealt
round-robin), so its per-fact records are bit-identical to a single process's and the
merged result equals it. A part is written once, atomically; a rerun skips a finished part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from factscope.datasets import KnownFact
from factscope.io_utils import atomic_write_text
from factscope.localize.attributes import AttributeSets
from factscope.localize.lens_dataset import LensDatasetResult, LensPlan, LensSettings, lens_rows, summarise_rows
from factscope.models.adapter import ModelAdapter
from factscope.parallel.ranks import Shard, shard_indices

PARTS = "parts"
PART_NAME = "lens_rows.json"


class LensPartError(ValueError):
    """A part file that is unreadable or belongs to another run; the message names the file."""


def _identity(plan: LensPlan, settings: LensSettings) -> dict[str, Any]:
    return {"settings": json.loads(json.dumps(asdict(settings))),
            "known_ids": [p.fact.known_id for p in plan.prepared]}


def lens_share(adapter: ModelAdapter, facts: Sequence[KnownFact], attributes: AttributeSets, settings: LensSettings,
               shard: Shard, out_dir: str | Path, *, progress: bool = True) -> Path:
    """This shard's per-fact records in ``out_dir/parts/K-of-N/lens_rows.json`` (kept if already there)."""
    path = Path(out_dir) / PARTS / shard.name / PART_NAME
    plan = LensPlan.make(adapter, facts, attributes, settings)
    if path.is_file():
        _read_part(path, _identity(plan, settings))
        return path
    mine = shard_indices(len(plan.prepared), shard, block=settings.batch_size)
    rows = lens_rows(adapter, plan, attributes, settings, mine, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**_identity(plan, settings), "rows": {str(i): r for i, r in rows.items()}}))
    return path


def _read_part(path: Path, identity: dict[str, Any]) -> dict[int, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        rows = {int(i): r for i, r in data["rows"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise LensPartError(f"{path}: not a lens-dataset part file ({err}); delete it to recompute that shard.") from None
    if {k: data.get(k) for k in identity} != identity:
        raise LensPartError(f"{path}: written with other settings or facts than this run; delete the folder's "
                            f"{PARTS}/ or use another --out.")
    return rows


def merged_lens(adapter: ModelAdapter, facts: Sequence[KnownFact], attributes: AttributeSets, settings: LensSettings,
                out_dir: str | Path) -> LensDatasetResult | None:
    """The run's result from all parts, or ``None`` while some fact's record is missing."""
    plan = LensPlan.make(adapter, facts, attributes, settings)
    identity = _identity(plan, settings)
    rows: dict[int, dict[str, Any]] = {}
    for path in sorted((Path(out_dir) / PARTS).glob(f"*/{PART_NAME}")):
        rows.update(_read_part(path, identity))
    if any(i not in rows for i in range(len(plan.prepared))):
        return None
    ordered = [rows[i] for i in range(len(plan.prepared))]
    return summarise_rows(adapter.name, adapter.n_layers, ordered, plan.skipped, settings)


__all__ = ["LensPartError", "PARTS", "PART_NAME", "lens_share", "merged_lens"]
