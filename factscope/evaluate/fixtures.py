"""Small hand-made cases and a hand-made editor for tests, benchmarks and demos.

Usage::

    records = tiny_counterfact_records()          # COUNTERFACT-format dicts in the tiny tokenizer's words
    path = write_json(records, tmp_path / "cf.json")
    editor = random_delta_editor(scale=0.5)       # (adapter, requests) -> rank-one WeightDelta

The random editor is no editing method: it adds a seeded rank-one change to one MLP
weight per request, so runner tests can tell an edited model from an unedited one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from factscope.datasets.supplements import case_seed
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.request import EditRequest
from factscope.io_utils import atomic_write_text
from factscope.models.adapter import ModelAdapter

_FACTS = [
    # subject, relation, template, true, new, neighbour subjects
    ("Danielle Darrieux", "P103", "The mother tongue of {} is", "French", "English", ["Marie Curie", "Albert Einstein"]),
    ("Lionel Messi", "P641", "{} plays", "football", "basketball", ["Michael Jordan"]),
    ("Toyota", "P17", "{} is headquartered in", "Japan", "Germany", ["Windows", "Apple"]),
    ("Michael Jordan", "P641", "{} plays", "basketball", "football", ["Lionel Messi"]),
    ("Marie Curie", "P19", "{} was born in", "Warsaw", "Paris", ["Albert Einstein"]),
    ("Berlin", "P17", "{} is a city in", "Germany", "Italy", ["Paris", "Rome"]),
]


def tiny_counterfact_records() -> list[dict[str, Any]]:
    """Six COUNTERFACT-format records written in the words the tiny test tokenizer knows."""
    records = []
    for i, (subject, rel, template, true, new, neighbours) in enumerate(_FACTS):
        records.append(
            {
                "case_id": 100 + i,
                "requested_rewrite": {
                    "prompt": template,
                    "relation_id": rel,
                    "subject": subject,
                    "target_true": {"str": true},
                    "target_new": {"str": new},
                },
                "paraphrase_prompts": [f"The city of Paris. {template.format(subject)}", f"He is a native speaker. {template.format(subject)}"],
                "neighborhood_prompts": [template.format(s) for s in neighbours],
                "attribute_prompts": [f"{s} is in" for s in neighbours],
                "generation_prompts": [f"{subject} is", f"{subject} was born in"],
            }
        )
    return records


def write_json(records: Any, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(records, indent=1))
    return path


def random_delta_editor(scale: float = 0.5, layer: int = 1, delay: float = 0.0):  # type: ignore[no-untyped-def]
    """A seeded rank-one change to the MLP down-projection of ``layer`` per request."""

    def edit(adapter: ModelAdapter, requests: list[EditRequest]) -> WeightDelta:
        for request in requests:
            request.validate(adapter)
        if delay:
            time.sleep(delay)
        entries = []
        weight = adapter.weight("mlp_key", layer).matrix
        for request in requests:
            gen = torch.Generator().manual_seed(case_seed(f"{request.case_id}-{request.prompt}"))
            u = torch.randn(weight.shape[0], 1, generator=gen) * scale
            v = torch.randn(weight.shape[1], 1, generator=gen)
            entries.append(DeltaEntry("mlp_key", layer, u.to(weight.dtype), v.to(weight.dtype)))
        return WeightDelta(entries, {"editor": "random", "n_requests": len(requests)})

    return edit
