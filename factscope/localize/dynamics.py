"""MHSA / FFN hidden-state dynamics at the last token (PMET, seed 003, Figure 2).

Usage::

    dyn = component_dynamics(adapter, [f.prompt for f in facts], k=50)
    dyn.cos["mlp"][l]       # mean cos(h^{l-1}, m^l) over the prompts
    dyn.jaccard["attn"][l]  # mean J_50(T(h^{l-1}), T(a^l))
    stabilisation_layer(dyn.cos["mlp"])

PMET compares, at the last token, the state that enters layer ``l`` (``h^{l-1}``; for
``l = 0`` the token embedding) with the output of that layer's attention ``a^l`` and
MLP ``m^l``: the cosine similarity of the vectors themselves, and the Jaccard
similarity ``|T(x) ∩ T(y)| / |T(x) ∪ T(y)|`` of their top-k (k = 50) vocabulary tokens
``T(·)`` under the model's projection (final norm + unembedding; ``raw=True`` skips the
norm). PMET's reading: FFN similarities settle after some layer (GPT-J: ~15), attention
keeps changing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from factscope.hooks import Site, SiteTrace
from factscope.models.adapter import ModelAdapter
from factscope.scoring import encode_prompts

COMPONENTS = ("attn", "mlp")


def jaccard_topk(a_logits: torch.Tensor, b_logits: torch.Tensor, k: int = 50) -> torch.Tensor:
    """Row-wise Jaccard similarity of the top-``k`` token sets of two ``[..., vocab]`` logit tensors."""
    vocab = a_logits.shape[-1]
    k = min(k, vocab)
    a_top = a_logits.topk(k, dim=-1).indices
    b_top = b_logits.topk(k, dim=-1).indices
    a_mask = torch.zeros(a_logits.shape, dtype=torch.bool, device=a_logits.device).scatter_(-1, a_top, True)
    b_mask = torch.zeros(b_logits.shape, dtype=torch.bool, device=b_logits.device).scatter_(-1, b_top, True)
    inter = (a_mask & b_mask).sum(dim=-1).float()
    union = (a_mask | b_mask).sum(dim=-1).float()
    return inter / union


@dataclass
class DynamicsResult:
    """Per-layer means (and standard deviations) over ``n`` prompts."""

    model: str
    n: int
    k: int
    raw: bool
    layers: list[int]
    cos: dict[str, list[float]] = field(default_factory=dict)
    cos_std: dict[str, list[float]] = field(default_factory=dict)
    jaccard: dict[str, list[float]] = field(default_factory=dict)
    jaccard_std: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _input_site(layer: int) -> Site:
    return Site("embed") if layer == 0 else Site("resid", layer - 1)


@torch.no_grad()
def dynamics_per_prompt(
    adapter: ModelAdapter, prompts: Sequence[str], *, k: int = 50, raw: bool = False
) -> dict[str, torch.Tensor]:
    """Per-prompt values ``{"cos.attn", "cos.mlp", "jaccard.attn", "jaccard.mlp"} -> [n, L]`` (one forward)."""
    L = adapter.n_layers
    sites = [_input_site(l) for l in range(L)] + [Site(c, l) for c in COMPONENTS for l in range(L)]
    batch = encode_prompts(adapter.tokenizer, prompts, adapter.device)
    last = batch.pop("last_index")
    rows = torch.arange(len(prompts), device=adapter.device)
    with SiteTrace(adapter, read=sites, stop=True) as trace:
        adapter.model(**batch)
    out = {f"{m}.{c}": torch.empty(len(prompts), L) for m in ("cos", "jaccard") for c in COMPONENTS}
    for layer in range(L):
        h_in = trace[_input_site(layer)][rows, last]
        h_logits = adapter.project_to_vocab(h_in, raw=raw).float()
        for comp in COMPONENTS:
            x = trace[Site(comp, layer)][rows, last]
            out[f"cos.{comp}"][:, layer] = torch.cosine_similarity(h_in.float(), x.float(), dim=-1).cpu()
            x_logits = adapter.project_to_vocab(x, raw=raw).float()
            out[f"jaccard.{comp}"][:, layer] = jaccard_topk(h_logits, x_logits, k).cpu()
    return out


def component_dynamics(
    adapter: ModelAdapter,
    prompts: Sequence[str],
    *,
    k: int = 50,
    raw: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> DynamicsResult:
    """Mean cosine and top-k Jaccard similarity of ``h^{l-1}`` vs ``a^l`` and vs ``m^l`` at the last token."""
    if not prompts:
        raise ValueError("component_dynamics needs at least one prompt.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    parts: dict[str, list[torch.Tensor]] = {}
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="dynamics", unit="batch", disable=not progress):
        for key, value in dynamics_per_prompt(adapter, prompts[start : start + batch_size], k=k, raw=raw).items():
            parts.setdefault(key, []).append(value)
    values = {key: torch.cat(v) for key, v in parts.items()}
    result = DynamicsResult(model=adapter.name, n=len(prompts), k=k, raw=raw, layers=list(range(adapter.n_layers)))
    for comp in COMPONENTS:
        for metric, mean_d, std_d in (("cos", result.cos, result.cos_std), ("jaccard", result.jaccard, result.jaccard_std)):
            v = values[f"{metric}.{comp}"]
            mean_d[comp] = v.mean(dim=0).tolist()
            std_d[comp] = (v.std(dim=0, unbiased=False)).tolist()
    return result


def stabilisation_layer(curve: Sequence[float], *, rel_tol: float = 0.1, skip_last: int = 1) -> int:
    """First layer after which the curve's layer-to-layer change stays small.

    Small = at most ``rel_tol`` × the curve's range (max − min). The last ``skip_last``
    layers are left out of the test (the final layer(s) often jump as the model
    prepares its output). Returns the layer index.
    """
    values = [float(v) for v in curve]
    if len(values) < 2:
        return 0
    span = max(values) - min(values)
    tol = rel_tol * span
    end = len(values) - skip_last if 0 < skip_last < len(values) - 1 else len(values)
    changes = [abs(values[i] - values[i - 1]) for i in range(1, end)]  # change entering layer i
    layer = end - 1
    while layer >= 1 and changes[layer - 1] <= tol:
        layer -= 1
    return layer


def mean_abs_change(curve: Sequence[float], start: int, end: int | None = None) -> float:
    """Mean |c(l) − c(l−1)| for l in ``(start, end)``: how much a curve still moves."""
    values = [float(v) for v in curve][: end if end is not None else None]
    diffs = [abs(values[i] - values[i - 1]) for i in range(max(start, 0) + 1, len(values))]
    return sum(diffs) / len(diffs) if diffs else 0.0


DYNAMICS_RULE = ("stable layer: first layer after which |c(l)-c(l-1)| <= 0.1 x range of the FFN curve (last layer left "
                 "out), the later of cosine and Jaccard; movement: mean |c(l)-c(l-1)| from that layer to the "
                 "second-to-last; halves: layers 1..L/2 and L/2+1..L-2")


def dynamics_summary(result: Any, n_layers: int) -> dict[str, Any]:
    """PMET Figure 2's numbers under one rule (:data:`DYNAMICS_RULE`), for the CLI and the reproduction alike.

    Usage: ``dynamics_summary(component_dynamics(adapter, prompts), adapter.n_layers)["ffn_stable_layer"]["both"]``.
    """
    stable = {metric: stabilisation_layer(getattr(result, metric)["mlp"]) for metric in ("cos", "jaccard")}
    ffn_stable = max(stable.values())
    half = n_layers // 2
    curves = {metric: getattr(result, metric) for metric in ("cos", "jaccard")}
    return {
        "ffn_stable_layer": {**stable, "both": ffn_stable},
        "mean_abs_change_after_ffn_stable": {
            metric: {comp: mean_abs_change(curves[metric][comp], ffn_stable, n_layers - 1) for comp in ("attn", "mlp")}
            for metric in curves},
        "mean_abs_change_by_half": {
            metric: {comp: {"first_half": mean_abs_change(curves[metric][comp], 0, half + 1),
                            "second_half": mean_abs_change(curves[metric][comp], half, n_layers - 1)}
                     for comp in ("attn", "mlp")}
            for metric in curves},
        "rule": DYNAMICS_RULE,
    }

