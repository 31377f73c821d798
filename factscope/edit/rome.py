"""ROME: a rank-one update of one MLP down-projection at the last subject token.

Usage::

    delta = rome_edit(adapter, [EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")])
    with delta.applied(adapter):
        ...                                   # the model now says " English"

One request: the key ``k*`` (down-projection input at the lookup token, averaged over
context prefixes), δ from :func:`optimize_values` at the MLP output, then
``W' = W + Λ (C⁻¹k*)ᵀ`` with ``Λ = (v* − W k) / ((C⁻¹k*)ᵀ k)``; as in ROME's code
``k`` is the bare prompt's key (``store_at="bare"``, so ``W'k = v* = Wk + δ`` holds
exactly on the prompt itself) or ``k*`` (``store_at="mean"``, the formula as written). Several requests are edited one after another (sequentially).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from factscope.edit.contexts import context_templates
from factscope.edit.corpus import corpus_from
from factscope.edit.covariance import key_second_moment
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.hparams import EditHyperParams, hp, resolve_layer
from factscope.edit.keys import site_at_lookup
from factscope.edit.request import EditRequest
from factscope.edit.sequential import edit_sequentially
from factscope.edit.solvers import rank_one_from_residual
from factscope.edit.values import optimize_values
from factscope.hooks import Site
from factscope.models.adapter import ModelAdapter


@dataclass
class ROMEHyperParams(EditHyperParams):
    """ROME (Meng et al. 2022): edit an early-middle MLP at the last subject token."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt2": {"layer": 17 / 48},  # ROME's GPT-2 XL layer 17
        "gptj": {"layer": 5 / 28},  # ROME's GPT-J layer 5
        "gpt_neox": {"layer": 15 / 44},  # ROME's GPT-NeoX-20B layer 15
        "llama": {"layer": 5 / 32},  # common Llama-2-7B choice
        "smollm2-135m-instruct": {"layer": 5},
    }

    layer: int | float = hp(0.25, "Edited layer: an index, or a fraction of depth (e.g. 0.25).")
    lookup: str = hp("subject_last", "Lookup token: subject_last (ROME) or last (last relation token).")
    store_at: str = hp("bare", "Key at which W'k = v* holds exactly: bare (the bare prompt's key, as ROME's code) or mean (k*).")


def hparams_store_at_bare(hparams: EditHyperParams) -> bool:
    return getattr(hparams, "store_at", "bare") == "bare"


def rank_one_edit(
    adapter: ModelAdapter,
    request: EditRequest,
    hparams: EditHyperParams,
    layer: int,
    lookup: str,
    *,
    corpus: Any = None,
    constraint_keys: Callable[[int], torch.Tensor] | None = None,
    editor: str = "rome",
    progress: bool = False,
) -> WeightDelta:
    """One rank-one edit; ``constraint_keys(layer)`` → ``[n, d]`` keys added to ``C`` as ``K Kᵀ`` (RETS)."""
    contexts = context_templates(adapter, hparams.context_lengths, seed=hparams.context_seed)
    C = key_second_moment(adapter, layer, corpus=corpus, n_tokens=hparams.mom2_n_tokens, dtype=hparams.mom2_dtype,
                          progress=progress)
    key_site = Site("mlp_key", layer)
    k_star = site_at_lookup(adapter, [request], [key_site], lookup=lookup, contexts=contexts)[key_site][0]
    k_bare = site_at_lookup(adapter, [request], [key_site], lookup=lookup)[key_site][0]
    values = optimize_values(adapter, [request], layer, kinds=("mlp",), lookup=lookup, contexts=contexts,
                             hparams=hparams, progress=progress)
    metric = C.to(torch.float64)
    n_constraints = 0
    if constraint_keys is not None:
        K_r = constraint_keys(layer).to(torch.float64)
        n_constraints = int(K_r.shape[0])
        metric = metric + K_r.T @ K_r
    # δ was optimised on top of the bare prompt's MLP output, so v* − W k_bare = δ there.
    k_store = k_bare if hparams_store_at_bare(hparams) else k_star
    lam, u = rank_one_from_residual(metric, k_star, values.delta["mlp"][0], k_store)
    dtype = adapter.mlp_down_weight(layer).parameter.dtype
    entry = DeltaEntry("mlp_key", layer, lam.unsqueeze(1).to(dtype), u.unsqueeze(1).to(dtype))
    return WeightDelta(
        [entry],
        {
            "editor": editor,
            "hparams": hparams.to_dict(),
            "layer": layer,
            "lookup": lookup,
            "requests": [request.to_dict()],
            "model_fingerprint": adapter.fingerprint,
            "corpus": corpus_from(corpus).fingerprint,
            "target_nll": values.nll[0],
            "value_steps": values.steps[0],
            "delta_norm_ratio": float(values.delta["mlp"][0].norm() / values.init["mlp"][0].norm()),
            "n_subject_constraints": n_constraints,
        },
    )


def rome_edit(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    hparams: ROMEHyperParams | None = None,
    *,
    corpus: str | Path | None = None,
    progress: bool = False,
    **overrides: Any,
) -> WeightDelta:
    """ROME for each request in turn; returns one delta (the model is left unchanged)."""
    hp_ = (hparams or ROMEHyperParams.for_model(adapter)).override(**overrides)
    layer = resolve_layer(adapter, hp_.layer)
    requests = [r.validate(adapter) for r in requests]
    for r in requests:  # lookup positions must exist before any work starts
        from factscope.edit.keys import lookup_index

        lookup_index(adapter.tokenizer, r.prompt, r.subject, hp_.lookup)
    return edit_sequentially(
        adapter, requests,
        lambda req: rank_one_edit(adapter, req, hp_, layer, hp_.lookup, corpus=corpus, editor="rome", progress=progress),
        metadata={"editor": "rome", "model_fingerprint": adapter.fingerprint},
    )
