"""Dataset tracing split across ranks or ``--shard`` processes, each writing its own part.

Usage::

    facts = load_knowns("known_1000.json")
    visited = traced_prefix(adapter, facts, 50, ("subject",))        # the facts a one-process run with --n 50 visits
    part = trace_share(adapter, visited, Shard(1, 2), "out/knowns", corrupts=("subject",))  # parts/1-of-2/traces.jsonl
    run = merged_trace(visited, "out/knowns", model=adapter.name, settings=part.settings)  # None until all parts are done

The facts to trace are the same as in one process: with ``max_traced`` every rank
first finds (one cheap forward pass per fact) the prefix of the dataset holding the
first ``max_traced`` correctly predicted facts; the prefix is then dealt round-robin.
Each record is the one a single process writes (a fact's noise depends on the seed
alone), and the merge orders them as a single process would.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factscope.datasets.knowns import KnownFact
from factscope.localize.tracing_dataset import JSONL_NAME, DatasetTrace, _load_done, greedy_matches, trace_dataset
from factscope.models.adapter import ModelAdapter
from factscope.parallel.ranks import Shard, shard_indices
from factscope.tokens import EmptyRelationError, SubjectNotFoundError, position_groups, require_relation_tokens

PARTS = "parts"


def _traceable(adapter: ModelAdapter, fact: KnownFact, corrupts: Sequence[str]) -> bool:
    """Whether some perspective of ``fact`` can be traced (its subject is found; relation: tokens follow it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a repeated subject: the trace itself warns
        try:
            groups = position_groups(adapter.tokenizer, fact.prompt, fact.subject)
        except SubjectNotFoundError:
            return False
    for corrupt in corrupts:
        try:
            if corrupt == "relation":
                require_relation_tokens(groups)
            return True
        except EmptyRelationError:
            continue
    return False


def traced_prefix(adapter: ModelAdapter, facts: Sequence[KnownFact], max_traced: int | None,
                  corrupts: Sequence[str]) -> list[KnownFact]:
    """The facts a one-process run visits: all, or up to the ``max_traced``-th one it traces."""
    if max_traced is None:
        return list(facts)
    traced = 0
    for position, fact in enumerate(facts):
        traced += greedy_matches(adapter, fact)[0] and _traceable(adapter, fact, corrupts)
        if traced >= max_traced:
            return list(facts[: position + 1])
    return list(facts)


def trace_share(adapter: ModelAdapter, visited: Sequence[KnownFact], shard: Shard, out_dir: str | Path, *,
                progress: bool = True, **settings: Any) -> DatasetTrace:
    """Trace this shard's share of ``visited`` into ``out_dir/parts/K-of-N`` (resumable); ``trace_dataset``'s settings."""
    mine = [visited[i] for i in shard_indices(len(visited), shard)]
    return trace_dataset(adapter, mine, out_dir=Path(out_dir) / PARTS / shard.name, progress=progress, **settings)


def merged_trace(visited: Sequence[KnownFact], out_dir: str | Path, *, model: str,
                 settings: dict[str, Any]) -> DatasetTrace | None:
    """All parts' records as one summarised ``DatasetTrace``, or ``None`` while a fact of ``visited`` is missing."""
    order = {fact.known_id: i for i, fact in enumerate(visited)}
    records: dict[tuple[Any, str], dict[str, Any]] = {}
    for path in sorted((Path(out_dir) / PARTS).glob(f"*/{JSONL_NAME}")):
        done, skipped = _load_done(path)
        for item in done + skipped:
            records.setdefault((item["known_id"], item["corrupt"]), item)
    corrupts = list(settings["corrupts"])
    for fact in visited:
        if (fact.known_id, "*") not in records and any((fact.known_id, c) not in records for c in corrupts):
            return None
    rank = {"*": -1, **{c: i for i, c in enumerate(corrupts)}}
    ordered = sorted(records.values(), key=lambda r: (order.get(r["known_id"], len(order)), rank.get(r["corrupt"], 99)))
    run = DatasetTrace(model=model, settings=settings)
    run.records = [r for r in ordered if not r.get("skipped")]
    run.skipped = [r for r in ordered if r.get("skipped")]
    run.summarise()
    return run


__all__ = ["PARTS", "merged_trace", "trace_share", "traced_prefix"]
