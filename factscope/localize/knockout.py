"""Knock-out of MLP / attention outputs at one position, and the attributes-rate decline (RETS Fig. 3b).

Usage::

    res = knockout_decline(adapter, "Vinson Massif is located in the continent of", position=-1,
                           attribute_ids=sets.ids("P30"), window=10)
    res.decline["mlp"][0]      # AR(clean) − AR(MLP zeroed at layers 0..9) at the evaluation layer

A knock-out zeroes ``m^l`` (kind ``"mlp"``) or ``a^l`` (kind ``"attn"``) at the given
token for every layer of a window ``[start, start + window)`` (clipped at the evaluation
layer) and reads ``h^{eval_layer}`` at the same token. One window per start layer.

Speed: zeroing a component at token ``p`` cannot change tokens before ``p`` (causal
attention), so by default the clean key/value cache of the prefix ``[0, p)`` is computed
once and every knock-out variant only runs the tokens from ``p`` on, all variants in one
batch. ``reuse_prefix=False`` runs the whole prompt per variant (the straightforward
method; tests check both agree).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from factscope.hooks import Site, SiteTrace, replace_positions
from factscope.localize.attributes import attributes_rate_batch
from factscope.localize.lens import PositionOutOfRangeError
from factscope.models.adapter import ModelAdapter
from factscope.models.prefix import PrefixCache

KNOCKOUT_KINDS = ("mlp", "attn")


@dataclass(frozen=True)
class Knockout:
    """Zero component ``kind`` (``mlp`` or ``attn``) at ``layers``; no layers = the clean run."""

    kind: str = "mlp"
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KNOCKOUT_KINDS:
            raise ValueError(f"Unknown knock-out kind {self.kind!r}; expected one of {KNOCKOUT_KINDS}.")


def window_layers(start: int, window: int, last_layer: int) -> tuple[int, ...]:
    """Layers ``start .. start+window-1``, clipped at ``last_layer`` (inclusive)."""
    return tuple(range(start, min(start + window, last_layer + 1)))


def _edits(knockouts: Sequence[Knockout], local_position: int) -> dict[Site, Any]:
    rows_by_site: dict[Site, list[int]] = {}
    for row, ko in enumerate(knockouts):
        for layer in ko.layers:
            rows_by_site.setdefault(Site(ko.kind, layer), []).append(row)
    edits = {}
    for site, rows in rows_by_site.items():
        edits[site] = replace_positions(
            torch.zeros(()), [local_position] * len(rows), batch_index=torch.tensor(rows, dtype=torch.long)
        )
    return edits


@torch.no_grad()
def knockout_states(
    adapter: ModelAdapter,
    prompt: str,
    position: int,
    knockouts: Sequence[Knockout],
    eval_layer: int,
    *,
    reuse_prefix: bool = True,
) -> torch.Tensor:
    """``h^{eval_layer}`` at ``position`` under each knock-out, ``[len(knockouts), d]`` (float32)."""
    adapter.check_layer(eval_layer)
    ids = list(adapter.tokenizer(prompt)["input_ids"])
    if not 0 <= position < len(ids):
        raise PositionOutOfRangeError(f"Position {position} is out of range for a prompt of {len(ids)} tokens.")
    if not knockouts:
        raise ValueError("knockout_states needs at least one knock-out (use Knockout() for the clean run).")
    for ko in knockouts:
        for layer in ko.layers:
            adapter.check_layer(layer)
    n = len(knockouts)
    device = adapter.device
    site = Site("resid", eval_layer)
    if reuse_prefix and position > 0:
        prefix = PrefixCache.build(adapter.model, torch.tensor([ids[:position]], device=device))
        prefix.repeat(n)
        inputs = prefix.inputs(torch.tensor([ids[position:]], device=device).expand(n, -1), reuse=True)
        local = 0
    else:
        inputs = {"input_ids": torch.tensor([ids], device=device).expand(n, -1), "use_cache": False}
        local = position
    with SiteTrace(adapter, read=[site], edit=_edits(knockouts, local), stop=True) as trace:
        adapter.model(**inputs)
    return trace[site][:, local].float()


@dataclass
class KnockoutResult:
    """AR at the evaluation layer, clean and with each window knocked out."""

    position: int
    eval_layer: int
    window: int
    k: int
    starts: list[int]
    ar_clean: float
    ar: dict[str, list[float]] = field(default_factory=dict)
    decline: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knockout_decline(
    adapter: ModelAdapter,
    prompt: str,
    position: int,
    attribute_ids: Iterable[int] | torch.Tensor,
    *,
    kinds: Sequence[str] = KNOCKOUT_KINDS,
    window: int = 10,
    eval_layer: int | None = None,
    starts: Sequence[int] | None = None,
    k: int = 50,
    raw: bool = False,
    reuse_prefix: bool = True,
) -> KnockoutResult:
    """AR decline at ``eval_layer`` (default: last) when each window of MLP/attention outputs is zeroed.

    ``attribute_ids`` is A(r) as token ids or as a boolean vocabulary mask.
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}.")
    eval_layer = adapter.n_layers - 1 if eval_layer is None else adapter.check_layer(eval_layer)
    starts = list(range(eval_layer + 1)) if starts is None else [adapter.check_layer(s) for s in starts]
    for s in starts:
        if s > eval_layer:
            raise ValueError(f"Start layer {s} is after the evaluation layer {eval_layer}.")
    for kind in kinds:
        Knockout(kind)  # validates the kind
    variants = [Knockout()] + [Knockout(kind, window_layers(s, window, eval_layer)) for kind in kinds for s in starts]
    states = knockout_states(adapter, prompt, position, variants, eval_layer, reuse_prefix=reuse_prefix)
    logits = adapter.project_to_vocab(states.to(adapter.dtype), raw=raw).float()
    k_eff = min(k, logits.shape[-1])
    top_ids = logits.topk(k_eff, dim=-1).indices.cpu()
    if torch.is_tensor(attribute_ids) and attribute_ids.dtype == torch.bool:
        mask = attribute_ids.cpu()
    else:
        mask = torch.zeros(logits.shape[-1], dtype=torch.bool)
        ids = [int(i) for i in attribute_ids if int(i) < logits.shape[-1]]
        mask[torch.tensor(ids, dtype=torch.long)] = True
    ar = attributes_rate_batch(top_ids, mask).tolist()
    result = KnockoutResult(position=position, eval_layer=eval_layer, window=window, k=k_eff, starts=starts,
                            ar_clean=ar[0])
    for i, kind in enumerate(kinds):
        values = ar[1 + i * len(starts) : 1 + (i + 1) * len(starts)]
        result.ar[kind] = values
        result.decline[kind] = [ar[0] - v for v in values]
    return result
