"""Causal tracing over many known facts, averaged per position group (RETS Table 1, Fig. 2).

Usage::

    facts = load_knowns("../shared/data/knowns/known_1000.json", n=50)
    run = trace_dataset(adapter, facts, corrupts=("subject", "relation"), out_dir="out/trace")
    run.summary["relation"]["table"]["lr"]["mlp"]     # average IE at the last relation token
    run.summary["subject"]["grids"]["mlp"]            # [7 groups][layers] average IE

Only facts the model gets right are traced: the greedy next token must be the first
token of the attribute (``" " + attribute``); the others are skipped and counted.
Per-fact grids go to ``traces.jsonl`` as they are produced, so a rerun with the same
``out_dir`` resumes where it stopped. Aggregation: for each fact and position group the
IE is averaged over the group's tokens; the (group, layer) average is then taken over
the facts that have that group (a one-token subject has no ``ms``); the per-group
figure (Table 1) is that row's mean over layers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factscope.datasets.knowns import KnownFact
from factscope.localize.tracing import KINDS, TraceResult, trace_kinds
from factscope.models.adapter import ModelAdapter
from factscope.scoring import continuation_ids
from factscope.tokens import GROUP_NAMES, EmptyRelationError, SubjectNotFoundError

JSONL_NAME = "traces.jsonl"


def group_ie(result: TraceResult) -> dict[str, np.ndarray]:
    """Mean IE over each non-empty position group's tokens: ``{group: [layers]}``."""
    ie = result.ie.numpy()
    return {g: ie[idx].mean(axis=0) for g, idx in result.groups.items() if idx}


def aggregate(results: Sequence[TraceResult]) -> dict[str, Any]:
    """Average IE per (group, layer) and per group over facts (NaN / None where no fact has a group)."""
    if not results:
        raise ValueError("No traces to aggregate.")
    n_layers = results[0].n_layers
    sums = np.zeros((len(GROUP_NAMES), n_layers))
    counts = np.zeros(len(GROUP_NAMES), dtype=int)
    for result in results:
        for g, row in group_ie(result).items():
            k = GROUP_NAMES.index(g)
            sums[k] += row
            counts[k] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = sums / counts[:, None]
    per_group = {g: (float(np.mean(grid[k])) if counts[k] else None) for k, g in enumerate(GROUP_NAMES)}
    return {"groups": list(GROUP_NAMES), "grid": grid, "per_group": per_group, "counts": counts.tolist()}


def _json_grid(grid: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in grid]


@dataclass
class DatasetTrace:
    """Per-fact traces of a dataset run and their aggregates per perspective and kind."""

    model: str
    settings: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)  # one per (fact, perspective)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def results(self, corrupt: str, kind: str) -> list[TraceResult]:
        return [TraceResult.from_dict(r["traces"][kind]) for r in self.records
                if r["corrupt"] == corrupt and kind in r["traces"]]

    def summarise(self) -> dict[str, Any]:
        """Fill ``summary[corrupt]`` with grids, per-group table and peaks for every kind."""
        self.summary = {}
        for corrupt in self.settings["corrupts"]:
            per_kind: dict[str, Any] = {}
            for kind in self.settings["kinds"]:
                results = self.results(corrupt, kind)
                if results:
                    per_kind[kind] = aggregate(results)
            if not per_kind:
                continue
            table = {g: {k: agg["per_group"][g] for k, agg in per_kind.items()} for g in GROUP_NAMES}
            peaks = {}
            for kind, agg in per_kind.items():
                grid = np.nan_to_num(agg["grid"], nan=-np.inf)
                g, layer = np.unravel_index(int(np.argmax(grid)), grid.shape)
                peaks[kind] = {"group": GROUP_NAMES[g], "layer": int(layer), "aie": float(agg["grid"][g, layer])}
            n = len({r["known_id"] for r in self.records if r["corrupt"] == corrupt})
            self.summary[corrupt] = {
                "n_facts": n,
                "corrupted_groups": _corrupted_groups(corrupt, self.settings.get("relation_prefix", False)),
                "table": table,
                "peaks": peaks,
                "counts": {k: agg["counts"] for k, agg in per_kind.items()},
                "grids": {k: agg["grid"] for k, agg in per_kind.items()},
                "mean_clean_prob": float(np.mean([r["clean_prob"] for r in self.records if r["corrupt"] == corrupt])),
                "mean_corrupted_prob": float(
                    np.mean([r["corrupted_prob"] for r in self.records if r["corrupt"] == corrupt])
                ),
            }
        return self.summary

    def to_dict(self, *, with_records: bool = True) -> dict[str, Any]:
        summary = {
            c: {**s, "grids": {k: _json_grid(g) for k, g in s["grids"].items()}} for c, s in self.summary.items()
        }
        out = {
            "model": self.model,
            "settings": self.settings,
            "n_traced": {c: s["n_facts"] for c, s in self.summary.items()},
            "n_skipped": len(self.skipped),
            "n_skipped_wrong_prediction": sum(1 for s in self.skipped if s.get("reason") == "wrong prediction"),
            "skipped": self.skipped,
            "summary": summary,
        }
        if with_records:
            out["records"] = self.records
        return out


def _corrupted_groups(corrupt: str, relation_prefix: bool) -> list[str]:
    if corrupt == "subject":
        return ["fs", "ms", "ls"]
    return (["rp"] if relation_prefix else []) + ["fr", "mr", "lr"]


@torch.no_grad()
def greedy_matches(adapter: ModelAdapter, fact: KnownFact) -> tuple[bool, str]:
    """Whether the model's greedy next token is the attribute's first token; the greedy token."""
    ids = torch.tensor([adapter.tokenizer(fact.prompt)["input_ids"]], device=adapter.device)
    greedy = int(adapter.model(input_ids=ids, use_cache=False).logits[0, -1].argmax())
    wanted = continuation_ids(adapter.tokenizer, fact.prompt, fact.attribute)[0]
    return greedy == wanted, adapter.tokenizer.decode([greedy])


def _load_done(path: Path) -> tuple[list[dict], list[dict]]:
    records, skipped = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                (skipped if item.get("skipped") else records).append(item)
    return records, skipped


def trace_dataset(
    adapter: ModelAdapter,
    facts: Iterable[KnownFact],
    *,
    corrupts: Sequence[str] = ("subject", "relation"),
    kinds: Sequence[str] = KINDS,
    window: int = 10,
    samples: int = 10,
    noise: float = 3.0,
    noise_std: float | None = None,
    seed: int = 0,
    relation_prefix: bool = False,
    out_dir: str | Path | None = None,
    progress: bool = True,
    max_traced: int | None = None,
) -> DatasetTrace:
    """Trace correctly predicted facts from each perspective in ``corrupts``.

    ``max_traced`` stops once that many facts have been traced (facts are taken in order,
    wrongly predicted ones are skipped and counted).
    """
    from tqdm.auto import tqdm

    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"Unknown kind {kind!r}; expected some of {KINDS}.")
    facts = list(facts)
    settings = {"corrupts": list(corrupts), "kinds": list(kinds), "window": window, "samples": samples,
                "noise": noise, "noise_std": noise_std, "seed": seed, "relation_prefix": relation_prefix}
    run = DatasetTrace(model=adapter.name, settings=settings)
    jsonl = None
    done: set[tuple[int, str]] = set()
    if out_dir is not None:
        jsonl = Path(out_dir) / JSONL_NAME
        jsonl.parent.mkdir(parents=True, exist_ok=True)
        run.records, run.skipped = _load_done(jsonl)
        done = {(r["known_id"], r["corrupt"]) for r in run.records + run.skipped}

    def emit(item: dict) -> None:
        (run.skipped if item.get("skipped") else run.records).append(item)
        if jsonl is not None:
            with jsonl.open("a") as fh:
                fh.write(json.dumps(item) + "\n")

    bar = tqdm(facts, desc="tracing facts", unit="fact", disable=not progress)
    for fact in bar:
        if max_traced is not None and len({r["known_id"] for r in run.records}) >= max_traced:
            break
        todo = [c for c in corrupts if (fact.known_id, c) not in done]
        if not todo or (fact.known_id, "*") in done:
            continue
        correct, greedy = greedy_matches(adapter, fact)
        if not correct:
            emit({"known_id": fact.known_id, "corrupt": "*", "skipped": True, "reason": "wrong prediction",
                  "prompt": fact.prompt, "attribute": fact.attribute, "predicted": greedy})
            continue
        for corrupt in todo:
            try:
                traces = trace_kinds(adapter, fact.prompt, fact.subject, fact.attribute, kinds=kinds, corrupt=corrupt,
                                     window=window, samples=samples, noise=noise, noise_std=noise_std, seed=seed,
                                     relation_prefix=relation_prefix)
            except (EmptyRelationError, SubjectNotFoundError) as err:
                emit({"known_id": fact.known_id, "corrupt": corrupt, "skipped": True, "reason": str(err),
                      "prompt": fact.prompt, "attribute": fact.attribute})
                continue
            first = next(iter(traces.values()))
            emit({"known_id": fact.known_id, "corrupt": corrupt, "prompt": fact.prompt, "subject": fact.subject,
                  "attribute": fact.attribute, "relation_id": fact.relation_id, "clean_prob": first.clean_prob,
                  "corrupted_prob": first.corrupted_prob,
                  "traces": {kind: result.to_dict() for kind, result in traces.items()}})
        bar.set_postfix(traced=len({r["known_id"] for r in run.records}), skipped=len(run.skipped))
    run.summarise()
    return run
