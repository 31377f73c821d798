"""The clean and the corrupted run of causal tracing, with everything restorations reuse.

Usage::

    from factscope.localize.tracing_plan import TraceConfig, plan_trace
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    plan = plan_trace(adapter, "The capital of France is", "France", None, TraceConfig(samples=2))
    clean = clean_run(adapter, plan.input_ids)                   # clean.sites["mlp"][l] -> [T, d]
    corr = corrupted_run(adapter, plan.input_ids, plan.corrupted, plan.noise, plan.target_id,
                         read_kinds=("mlp",))                    # corr.layer_inputs[l] -> [S, T, d]
    corr.keys[1], corr.values[1]                                 # attention K/V per layer (or None)

``layer_inputs[l]`` is what decoder layer ``l`` receives in the corrupted run
(``layer_inputs[0]`` the embedding-level input, ``layer_inputs[n_layers]`` the last
layer's output), so a restoration at layer ``l`` can resume from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from factscope.hooks import Site, SiteTrace, add_at_positions
from factscope.models.adapter import ModelAdapter
from factscope.models.forward import returned_cache
from factscope.models.prefix import layer_key_values

TRACED_SITES = ("resid", "mlp", "attn")


@dataclass
class CleanRun:
    """Clean activations per site kind: ``sites[kind][l]`` is ``[T, d]``; next-token probabilities."""

    sites: dict[str, list[torch.Tensor]]
    probs: torch.Tensor  # [vocab], float32


@dataclass
class CorruptedRun:
    """Corrupted-run activations of every noise sample."""

    layer_inputs: list[torch.Tensor]  # n_layers + 1 entries of [S, T, d]
    sites: dict[str, list[torch.Tensor]]  # requested kinds: per layer [S, T, d]
    keys: list[torch.Tensor] | None  # per layer [S, heads, T, head_dim] as the model's cache holds them
    values: list[torch.Tensor] | None
    target_probs: torch.Tensor  # [S], float32


def target_probs(adapter: ModelAdapter, last_hidden: torch.Tensor, target_id: int) -> torch.Tensor:
    """``P(target)`` from last-position hidden states ``[rows, d]`` (final norm + unembedding)."""
    logits = adapter.project_to_vocab(last_hidden)
    return torch.softmax(logits.float(), dim=-1)[:, target_id]


@torch.no_grad()
def clean_run(adapter: ModelAdapter, input_ids: torch.Tensor) -> CleanRun:
    """One forward pass of the prompt reading ``h``, ``m`` and ``a`` at every layer."""
    sites = [Site(kind, layer) for kind in TRACED_SITES for layer in range(adapter.n_layers)]
    with SiteTrace(adapter, read=sites) as tr:
        logits = adapter.model(input_ids=input_ids.to(adapter.device), use_cache=False).logits
    values = {kind: [tr[Site(kind, l)][0] for l in range(adapter.n_layers)] for kind in TRACED_SITES}
    return CleanRun(sites=values, probs=torch.softmax(logits[0, -1].float(), dim=-1))


@torch.no_grad()
def corrupted_run(
    adapter: ModelAdapter,
    input_ids: torch.Tensor,
    positions: Sequence[int],
    noise: torch.Tensor,
    target_id: int,
    *,
    read_kinds: Sequence[str] = (),
    keep_cache: bool = True,
) -> CorruptedRun:
    """All noise samples in one batch; keeps every layer's input (and K/V when ``keep_cache``)."""
    samples = noise.shape[0]
    batch = input_ids.to(adapter.device).repeat(samples, 1)
    noise = noise.to(adapter.device, adapter.dtype)
    n = adapter.n_layers
    read = [Site("resid", l) for l in range(n)] + [Site(k, l) for k in read_kinds for l in range(n)]
    first_input: list[torch.Tensor] = []

    def grab_input(_module, args, kwargs):
        first_input.append((args[0] if args else kwargs["hidden_states"]).detach())

    handle = adapter.module(Site("resid", 0)).register_forward_pre_hook(grab_input, with_kwargs=True)
    try:
        with SiteTrace(adapter, read=read, edit={"embed": add_at_positions(noise, list(positions))}) as tr:
            out = adapter.model(input_ids=batch, use_cache=keep_cache)
    finally:
        handle.remove()
    layer_inputs = [first_input[0]] + [tr[Site("resid", l)] for l in range(n)]
    sites = {k: [tr[Site(k, l)] for l in range(n)] for k in read_kinds}
    kv = layer_key_values(returned_cache(out), n, input_ids.shape[1]) if keep_cache else None
    probs = torch.softmax(out.logits[:, -1].float(), dim=-1)[:, target_id]
    return CorruptedRun(
        layer_inputs=layer_inputs,
        sites=sites,
        keys=kv[0] if kv else None,
        values=kv[1] if kv else None,
        target_probs=probs,
    )
