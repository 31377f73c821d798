"""Lookup tokens and activations read there (keys ``k``, current values), averaged over contexts.

Usage::

    rows = prompt_rows(adapter.tokenizer, request, contexts, lookup="subject_last")
    keys = site_at_lookup(adapter, requests, [Site("mlp_key", 7)], lookup="subject_last",
                          contexts=contexts)[Site("mlp_key", 7)]       # [n_requests, d_mlp]

Lookup modes: ``"subject_last"`` (ROME, MEMIT, PMET: the last subject token) and
``"last"`` (RETS: the last prompt token, which is the last relation token).
All prefixed prompts of all requests go through one batched forward pass that
stops right after the deepest site read; prompts are cut after their lookup token
because later tokens cannot influence it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from factscope.edit.contexts import BARE, fill_context
from factscope.edit.request import EditRequest
from factscope.hooks import Site, SiteTrace
from factscope.models.adapter import ModelAdapter
from factscope.models.batch import pad_batch, pad_id, pad_rows  # noqa: F401 - pad_rows: older import path
from factscope.models.forward import forward_inputs
from factscope.tokens import position_groups, require_relation_tokens

LOOKUPS = ("subject_last", "last")


@dataclass
class PromptRow:
    """One tokenized (context-prefixed) prompt and the index of its lookup token."""

    ids: list[int]
    lookup: int
    request: int  # index of the request this row belongs to
    context: int  # index of the context template (0 = bare prompt)


def lookup_index(tokenizer: Any, template: str, subject: str, lookup: str) -> tuple[list[int], int]:
    """Token ids of the filled template and the index of its lookup token."""
    if lookup not in LOOKUPS:
        raise ValueError(f"Unknown lookup {lookup!r}; expected one of {LOOKUPS}.")
    groups = position_groups(tokenizer, template, subject)
    if lookup == "subject_last":
        return groups.input_ids, groups.last_subject
    require_relation_tokens(groups)
    return groups.input_ids, groups.last_token


def prompt_rows(
    tokenizer: Any, requests: Sequence[EditRequest], contexts: Sequence[str], lookup: str,
    template: str | None = None,
) -> list[PromptRow]:
    """Rows for every (request, context) pair; ``template`` replaces each request's own prompt."""
    rows = []
    for r, request in enumerate(requests):
        for c, context in enumerate(contexts):
            ids, index = lookup_index(tokenizer, fill_context(context, template or request.prompt), request.subject, lookup)
            rows.append(PromptRow(ids, index, r, c))
    return rows


# Older import path of the padding helpers; the rule lives in factscope.models.batch.
pad_id_of = pad_id


@torch.no_grad()
def read_at_rows(adapter: ModelAdapter, rows: Sequence[PromptRow], sites: Sequence[Site], *, batch_size: int = 64) -> dict[Site, torch.Tensor]:
    """Activation of each site at each row's lookup token, ``[len(rows), d]`` (float32)."""
    sites = [Site.parse(s) for s in sites]
    out: dict[Site, list[torch.Tensor]] = {s: [] for s in sites}
    pad = pad_id(adapter.tokenizer)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = pad_batch([r.ids[: r.lookup + 1] for r in chunk], pad)
        with SiteTrace(adapter, read=sites, stop=True) as trace:
            adapter.model(**forward_inputs(adapter.model, batch, device=adapter.device))
        index = torch.tensor([r.lookup for r in chunk], device=adapter.device)
        row = torch.arange(len(chunk), device=adapter.device)
        for site in sites:
            out[site].append(trace[site][row, index].float().cpu())
    return {s: torch.cat(v) for s, v in out.items()}


def site_at_lookup(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    sites: Sequence[Site],
    *,
    lookup: str,
    contexts: Sequence[str] = (BARE,),
    template: str | None = None,
    batch_size: int = 64,
) -> dict[Site, torch.Tensor]:
    """Per request, the site activations at the lookup token averaged over ``contexts``: ``[n_requests, d]``."""
    rows = prompt_rows(adapter.tokenizer, requests, contexts, lookup, template)
    values = read_at_rows(adapter, rows, sites, batch_size=batch_size)
    owner = torch.tensor([r.request for r in rows])
    result = {}
    for site, tensor in values.items():
        summed = torch.zeros(len(requests), tensor.shape[1]).index_add_(0, owner, tensor)
        result[site] = summed / torch.bincount(owner, minlength=len(requests)).clamp(min=1).unsqueeze(1).float()
    return result
