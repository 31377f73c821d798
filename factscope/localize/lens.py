"""Vocabulary lens: project per-layer hidden states at one position to the vocabulary.

Usage::

    result = vocab_lens(adapter, "Danielle Darrieux's mother tongue is", subject="Danielle Darrieux",
                        position="lr", k=10, object="French")
    for row in result.layers:
        print(row.layer, row.top_tokens[:3], row.object_rank)

Layer ``l`` is ``h^l``, the residual stream after decoder layer ``l`` (0-based). The
projection is ``adapter.project_to_vocab(h)`` — the model's own final norm and
unembedding, so the last layer reproduces the model's logits; ``raw=True`` skips the
final norm (the plain unembedding RETS used). Ranks are 1-based (rank 1 = top token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from factscope.hooks import Site, SiteTrace
from factscope.models.adapter import ModelAdapter
from factscope.scoring import continuation_ids, encode_prompts
from factscope.tokens import EmptyPromptError, position_groups, require_relation_tokens

POSITION_NAMES = ("last", "lr", "ls")


class PositionOutOfRangeError(IndexError):
    """A token index outside the prompt."""


def resolve_position(adapter: ModelAdapter, prompt: str, position: str | int = "last", subject: str | None = None) -> int:
    """Token index of ``position`` in ``prompt``: ``last``, ``lr``, ``ls`` (need ``subject``) or an int.

    Negative ints count from the end, as in Python.
    """
    if not prompt or not prompt.strip():
        raise EmptyPromptError("The prompt is empty.")
    n_tokens = len(adapter.tokenizer(prompt)["input_ids"])
    if n_tokens == 0:
        raise EmptyPromptError(f"Prompt {prompt!r} tokenizes to nothing.")
    if isinstance(position, str) and position.lstrip("-").isdigit():
        position = int(position)
    if isinstance(position, int):
        index = position + n_tokens if position < 0 else position
        if not 0 <= index < n_tokens:
            raise PositionOutOfRangeError(
                f"Position {position} is out of range for a prompt of {n_tokens} tokens "
                f"(valid: {-n_tokens}..{n_tokens - 1})."
            )
        return index
    if position == "last":
        return n_tokens - 1
    if position in ("lr", "ls"):
        if not subject:
            raise ValueError(f"Position {position!r} needs the subject (--subject).")
        groups = position_groups(adapter.tokenizer, prompt, subject)
        if position == "lr":
            require_relation_tokens(groups)
            return groups["lr"][0]
        return groups.last_subject
    raise ValueError(f"Unknown position {position!r}; expected one of {POSITION_NAMES} or a token index.")


def resid_sites(adapter: ModelAdapter) -> list[Site]:
    """``h^0 .. h^{L-1}``."""
    return [Site("resid", layer) for layer in range(adapter.n_layers)]


@torch.no_grad()
def hidden_states_at(
    adapter: ModelAdapter, prompts: Sequence[str], positions: Sequence[int], sites: Sequence[Site] | None = None
) -> torch.Tensor:
    """States of ``sites`` (default: every ``h^l``) at one token per prompt, in one batched forward.

    Returns ``[len(prompts), len(sites), d]`` (float32, on the model's device).
    """
    if len(prompts) != len(positions):
        raise ValueError("prompts and positions must have the same length.")
    sites = list(sites) if sites is not None else resid_sites(adapter)
    batch = encode_prompts(adapter.tokenizer, prompts, adapter.device)
    batch.pop("last_index")
    rows = torch.arange(len(prompts), device=adapter.device)
    pos = torch.as_tensor(list(positions), dtype=torch.long, device=adapter.device)
    with SiteTrace(adapter, read=sites, stop=True) as trace:
        adapter.model(**batch)
    return torch.stack([trace[s][rows, pos].float() for s in sites], dim=1)


def token_ranks(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``ids`` (``[...]``) in ``logits`` (``[..., vocab]``): 1 + #tokens scoring higher."""
    picked = logits.gather(-1, ids.unsqueeze(-1))
    return (logits > picked).sum(dim=-1) + 1


@dataclass
class LayerLens:
    """What one layer's state projects to."""

    layer: int
    top_ids: list[int]
    top_tokens: list[str]
    top_probs: list[float]
    object_rank: int | None = None
    object_prob: float | None = None
    attributes_rate: float | None = None


@dataclass
class LensResult:
    """Per-layer projections of one prompt at one position."""

    model: str
    prompt: str
    position: int
    position_token: str
    k: int
    raw: bool
    object: str | None = None
    object_id: int | None = None
    object_token: str | None = None
    relation_id: str | None = None
    layers: list[LayerLens] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def vocab_lens(
    adapter: ModelAdapter,
    prompt: str,
    *,
    subject: str | None = None,
    position: str | int = "last",
    k: int = 50,
    object: str | None = None,
    raw: bool = False,
    attribute_ids: frozenset[int] | None = None,
    relation_id: str | None = None,
) -> LensResult:
    """Top-k tokens (and the object's rank/probability, and AR if ``attribute_ids``) at every layer."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    index = resolve_position(adapter, prompt, position, subject)
    object_id = None
    if object is not None:
        object_id = continuation_ids(adapter.tokenizer, prompt, object)[0]
    states = hidden_states_at(adapter, [prompt], [index])[0]  # [L, d]
    logits = adapter.project_to_vocab(states.to(adapter.dtype), raw=raw).float()  # [L, V]
    probs = torch.softmax(logits, dim=-1)
    k_eff = min(k, logits.shape[-1])
    top = probs.topk(k_eff, dim=-1)
    ranks = token_ranks(logits, torch.full((logits.shape[0],), object_id)) if object_id is not None else None
    tok = adapter.tokenizer
    ids = tok(prompt)["input_ids"]
    result = LensResult(
        model=adapter.name,
        prompt=prompt,
        position=index,
        position_token=tok.decode([ids[index]]),
        k=k_eff,
        raw=raw,
        object=object,
        object_id=object_id,
        object_token=tok.decode([object_id]) if object_id is not None else None,
        relation_id=relation_id,
    )
    for layer in range(adapter.n_layers):
        top_ids = [int(i) for i in top.indices[layer]]
        row = LayerLens(
            layer=layer,
            top_ids=top_ids,
            top_tokens=[tok.decode([i]) for i in top_ids],
            top_probs=[float(p) for p in top.values[layer]],
        )
        if object_id is not None:
            row.object_rank = int(ranks[layer])  # type: ignore[index]
            row.object_prob = float(probs[layer, object_id])
        if attribute_ids is not None:
            row.attributes_rate = len(set(top_ids) & attribute_ids) / k_eff
        result.layers.append(row)
    return result
