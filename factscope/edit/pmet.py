"""PMET (seed 003): optimise attention *and* MLP outputs, store only the MLP part, square-root spread.

Usage::

    delta = pmet_edit(adapter, requests)
    pmet_edit(adapter, requests, even_spread=True)      # ablation: MEMIT's even spread
    pmet_edit(adapter, requests, no_attn_delta=True)    # ablation: without δ_attn
    pmet_edit(adapter, requests, update_attn=True)      # ablation: also update W_O of attention

δ_attn and δ_mlp are added at the last subject token to the attention output ``a^L``
and MLP output ``m^L`` of the last critical layer ``L`` (eq. 10). The MLP target
``v_m = m^L + δ_mlp`` is stored in the MLP down-projections of the range with
``R^l = (V − W K)/√(L − l + 1)`` (eq. 11) and MEMIT's least-squares update (eq. 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from factscope.edit.contexts import context_templates
from factscope.edit.covariance import key_second_moments
from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import hp
from factscope.edit.keys import lookup_index
from factscope.edit.memit import MEMIT_LAYERS, MEMITHyperParams, _metadata, chunked_values, resolve_layers, spread_updates
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter


@dataclass
class PMETHyperParams(MEMITHyperParams):
    """PMET: precise batch editing; see module docstring for the ablations."""

    # MEMIT's layer ranges; not MEMIT's residual-stream step for Gemma: PMET's values sit on the
    # (pre-norm) MLP/attention outputs, as ROME's, and take the shared step.
    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = MEMIT_LAYERS
    # Ablations that change how the optimised values are spread or applied, not the values:
    # value checkpoints are keyed as if these were at their defaults, so the ablations reuse PMET's.
    VALUE_NEUTRAL: ClassVar[dict[str, Any]] = {"even_spread": False, "update_attn": False}

    spread: str = hp("sqrt", "Residual spread over layers: sqrt (PMET) or even (MEMIT).")
    even_spread: bool = hp(False, "Ablation: spread the residual evenly (as MEMIT).")
    no_attn_delta: bool = hp(False, "Ablation 'w/o delta_attn': optimise only the MLP output.")
    update_attn: bool = hp(False, "Ablation 'w/ W_O MHSA': also update the attention output projections.")


def pmet_edit(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    hparams: PMETHyperParams | None = None,
    *,
    corpus: str | Path | None = None,
    progress: bool = False,
    **overrides: Any,
) -> WeightDelta:
    """Edit all ``requests`` together; the model is left unchanged."""
    hp_ = (hparams or PMETHyperParams.for_model(adapter)).override(**overrides)
    if hp_.update_attn and hp_.no_attn_delta:
        raise ValueError("update_attn needs the attention delta; do not combine it with no_attn_delta.")
    layers = resolve_layers(adapter, hp_.layers)
    requests = [r.validate(adapter) for r in requests]
    for r in requests:
        lookup_index(adapter.tokenizer, r.prompt, r.subject, "subject_last")
    contexts = context_templates(adapter, hp_.context_lengths, seed=hp_.context_seed)
    covariances = {("mlp_key", l): c for l, c in key_second_moments(
        adapter, layers, corpus=corpus, n_tokens=hp_.mom2_n_tokens, dtype=hp_.mom2_dtype, progress=progress).items()}
    if hp_.update_attn:
        covariances.update({("attn_key", l): c for l, c in key_second_moments(
            adapter, layers, site_kind="attn_key", corpus=corpus, n_tokens=hp_.mom2_n_tokens, dtype=hp_.mom2_dtype,
            progress=progress).items()})
    kinds = ("mlp",) if hp_.no_attn_delta else ("attn", "mlp")
    values = chunked_values(adapter, requests, layers[-1], kinds, contexts, hp_, progress)
    targets = {"mlp": values.target("mlp")}
    if hp_.update_attn:
        targets["attn"] = values.target("attn")
    spread = "even" if hp_.even_spread else hp_.spread
    entries = spread_updates(adapter, requests, layers, targets, contexts, covariances, hp_.mom2_update_weight, spread, progress)
    return WeightDelta(entries, _metadata("pmet", adapter, hp_, requests, layers, corpus, values))
