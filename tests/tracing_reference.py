"""Straightforward causal tracing, the way ROME's ``trace_with_patch`` does it.

Usage::

    plan = plan_trace(adapter, prompt, subject, None, TraceConfig(kind="mlp"))
    scores, clean_prob, corrupted_prob = reference_grid(adapter, plan)

One restoration per forward pass: the batch is ``[clean, corrupted × samples]``, noise is
added at the ``embed`` site of the corrupted rows, and the restored site(s) of the
corrupted rows are overwritten with row 0's values at one token. Severed tracing runs a
first pass without restoration to record the corrupted values it then freezes (ROME's
``trace_with_repatch``). Every (token, layer) is computed, none is skipped. This is the
yardstick the fast implementation is tested and benchmarked against.
"""

from __future__ import annotations

import torch

from factscope.hooks import Site, SiteTrace
from factscope.localize.tracing import TracePlan, window_layers


def _noise_edit(plan: TracePlan):
    positions = torch.tensor(plan.corrupted)

    def edit(_site, x):
        x = x.clone()
        x[1:, positions.to(x.device)] += plan.noise.to(x.device, x.dtype)
        return x

    return edit


def _copy_clean_row(token: int):
    def edit(_site, x):
        x = x.clone()
        x[1:, token] = x[0, token]
        return x

    return edit


def _freeze(token: int, frozen: torch.Tensor):
    def edit(_site, x):
        x = x.clone()
        x[1:, token] = frozen
        return x

    return edit


@torch.no_grad()
def reference_run(adapter, plan: TracePlan, edits: dict) -> torch.Tensor:
    """Probability of the target per batch row ``[1 + samples]`` with the given site edits."""
    batch = plan.input_ids.to(adapter.device).repeat(plan.config.samples + 1, 1)
    with SiteTrace(adapter, edit={"embed": _noise_edit(plan), **edits}):
        logits = adapter.model(input_ids=batch).logits
    return torch.softmax(logits[:, -1].float(), dim=-1)[:, plan.target_id]


@torch.no_grad()
def reference_grid(adapter, plan: TracePlan, kind: str = "state", window: int = 10, severed: str | None = None):
    """``(scores [T, L], clean_prob, corrupted_prob)`` computed one restoration at a time."""
    n, tokens = adapter.n_layers, plan.n_tokens
    base = reference_run(adapter, plan, {})
    clean_prob, corrupted_prob = float(base[0]), float(base[1:].mean())
    scores = torch.zeros(tokens, n)
    for token in range(tokens):
        for layer in range(n):
            if kind == "state":
                edits = {Site("resid", layer): _copy_clean_row(token)}
            else:
                edits = {Site(kind, l): _copy_clean_row(token) for l in window_layers(layer, window, n)}
            if severed:
                later = [Site(severed, l) for l in range(layer + 1, n)]
                batch = plan.input_ids.to(adapter.device).repeat(plan.config.samples + 1, 1)
                with SiteTrace(adapter, read=later, edit={"embed": _noise_edit(plan)}, clone=True) as first:
                    adapter.model(input_ids=batch)
                for site in later:
                    edits[site] = _freeze(token, first[site][1:, token])
            scores[token, layer] = float(reference_run(adapter, plan, edits)[1:].mean())
    return scores, clean_prob, corrupted_prob
