"""A run folder split into parts, one per rank or ``--shard``, and the merge of their records.

Usage::

    part = part_folder("runs/rome", Shard(1, 2))      # runs/rome/parts/1-of-2 (a run folder of its own)
    records = all_records("runs/rome")                # every finished case, from results.jsonl and all parts
    report = merge_parts("runs/rome")                 # writes runs/rome/results.jsonl: all of them, in order

Layout: ``out/manifest.json`` names the whole run (configuration and every case id);
each part ``out/parts/K-of-N/`` has its own manifest, ``results.jsonl``, lock and
``deltas/``, so ranks never write the same file. The records of a folder are the union
of ``out/results.jsonl`` and every part's (any N: a run resumed with another number of
ranks keeps what was done), one per (perspective, index), in the order a one-process
run writes them: perspective by perspective, cases in dataset order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factscope.evaluate.runlog import RESULTS, RunLog, read_results
from factscope.io_utils import FolderLock, atomic_writer
from factscope.parallel.ranks import Shard

PARTS = "parts"
_PERSPECTIVE_ORDER = {"entity": 0, "relation": 1}


def part_folder(out: str | Path, shard: Shard) -> Path:
    """Where ``shard`` writes: ``out`` itself for a whole run, else ``out/parts/K-of-N``."""
    out = Path(out)
    return out if shard.whole else out / PARTS / shard.name


def result_files(out: str | Path) -> list[Path]:
    """``out/results.jsonl`` and every part's, those that exist, the merged file first."""
    out = Path(out)
    parts = sorted((out / PARTS).glob(f"*/{RESULTS}")) if (out / PARTS).is_dir() else []
    return [p for p in [out / RESULTS, *parts] if p.is_file()]


def _key(record: dict[str, Any]) -> tuple[str, int]:
    return record["perspective"], int(record["index"])


def all_records(out: str | Path) -> list[dict[str, Any]]:
    """One record per (perspective, index) over the folder and its parts, in one-process order."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for path in result_files(out):
        for record in read_results(path):  # a part being written: its unfinished last line is left out
            seen.setdefault(_key(record), record)
    return sorted(seen.values(), key=lambda r: (_PERSPECTIVE_ORDER.get(r["perspective"], 9), r["perspective"], int(r["index"])))


def done_pairs(out: str | Path) -> set[tuple[str, int]]:
    """Finished (perspective, index) pairs anywhere in the folder."""
    return {_key(r) for path in result_files(out) for r in read_results(path)}


@dataclass
class MergeReport:
    folder: Path
    records: int
    planned: int
    parts: int

    @property
    def complete(self) -> bool:
        return self.records >= self.planned

    @property
    def missing(self) -> int:
        return max(0, self.planned - self.records)


def planned(manifest: dict[str, Any]) -> int:
    """Lines a complete run has: cases × perspectives."""
    perspective = manifest["config"].get("perspective", "entity")
    return len(manifest["case_ids"]) * (2 if perspective == "both" else 1)


def merge_parts(out: str | Path) -> MergeReport:
    """Rewrite ``out/results.jsonl`` as the union of all parts (atomically; the parts stay as they are)."""
    out = Path(out)
    manifest = RunLog(out).manifest()
    if manifest is None:
        raise FileNotFoundError(f"{out} is not a run folder (no manifest.json).")
    with FolderLock(out, "--out folder"):  # no one-process run appends to results.jsonl meanwhile
        records = all_records(out)
        with atomic_writer(out / RESULTS, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    n_parts = len([p for p in result_files(out) if p.parent != out])
    return MergeReport(out, len(records), planned(manifest), n_parts)


__all__ = ["MergeReport", "PARTS", "all_records", "done_pairs", "merge_parts", "part_folder", "planned", "result_files"]
