"""Sequential editing: each edit is computed on the model with the previous ones applied.

Usage::

    parts = sequential_deltas(adapter, requests, lambda req: rome_edit(adapter, [req]))
    delta = edit_sequentially(adapter, requests, lambda req: rome_edit(adapter, [req]))  # concatenated

The model is unchanged afterwards (every temporary application is reverted in a
``finally``); applying the returned delta reproduces the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from factscope.edit.delta import WeightDelta, applied_in_turn
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter


def sequential_deltas(
    adapter: ModelAdapter, requests: Sequence[EditRequest], edit_one: Callable[[EditRequest], WeightDelta]
) -> list[WeightDelta]:
    """One delta per request, each computed after the previous ones were applied."""
    done: list[WeightDelta] = []
    with applied_in_turn(adapter) as apply:
        for index, request in enumerate(requests):
            delta = edit_one(request)
            if index < len(requests) - 1:  # the last one is not needed on the model
                apply(delta)
            done.append(delta)
    return done


def edit_sequentially(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    edit_one: Callable[[EditRequest], WeightDelta],
    metadata: dict[str, Any] | None = None,
) -> WeightDelta:
    """The deltas of :func:`sequential_deltas` concatenated (a single request returns its own delta)."""
    parts = sequential_deltas(adapter, requests, edit_one)
    if len(parts) == 1:
        return parts[0]
    meta = dict(metadata or {})
    meta["sequential"] = True
    meta["requests"] = [r.to_dict() for r in requests]
    meta["parts"] = [p.metadata for p in parts]
    return WeightDelta.concatenate(parts, meta)
