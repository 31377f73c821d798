"""PMET (seed 003): optimise attention *and* MLP outputs, store only the MLP part, square-root spread.

Usage::

    from factscope.edit import edit
    from factscope.testing import example_requests, tiny_adapter
    adapter, requests = tiny_adapter("llama"), example_requests(3)
    fast = dict(layers=[1, 2], v_steps=3, mom2_n_tokens=64)
    delta = edit(adapter, requests, editor="pmet", **fast)
    edit(adapter, requests, editor="pmet", spread="even", **fast)       # ablation: MEMIT's even spread
    edit(adapter, requests, editor="pmet", no_attn_delta=True, **fast)  # ablation: without δ_attn
    edit(adapter, requests, editor="pmet", update_attn=True, **fast)    # ablation: also update W_O of attention

The older key ``even_spread=true`` is read as ``spread=even`` (``PMETHyperParams.LEGACY_KEYS``).

δ_attn and δ_mlp are added at the last subject token to the attention output ``a^L``
and MLP output ``m^L`` of the last critical layer ``L`` (eq. 10). The MLP target
``v_m = m^L + δ_mlp`` is stored in the MLP down-projections of the range with
``R^l = (V − W K)/√(L − l + 1)`` (eq. 11) and MEMIT's least-squares update (eq. 9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from factscope.edit.contexts import context_templates
from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.covariance import key_second_moments
from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import HyperParamError, coerce, hp
from factscope.edit.memit import MEMIT_LAYERS, MEMITHyperParams, _metadata, chunked_values, spread_updates


def _even_spread(value: Any) -> dict[str, Any]:
    """Older files' ``even_spread: true`` is today's ``spread: even``; ``false`` leaves ``spread`` alone."""
    return {"spread": "even"} if coerce("even_spread", value, bool) else {}


@dataclass
class PMETHyperParams(MEMITHyperParams):
    """PMET: precise batch editing; see module docstring for the ablations."""

    # MEMIT's layer ranges; not MEMIT's residual-stream step for Gemma: PMET's values sit on the
    # (pre-norm) MLP/attention outputs, as ROME's, and take the shared step.
    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = MEMIT_LAYERS
    LEGACY_KEYS: ClassVar[dict[str, Callable[[Any], dict[str, Any]]]] = {"even_spread": _even_spread}
    # Ablations that change how the optimised values are spread or applied, not the values:
    # value checkpoints are keyed as if these were at their defaults, so the ablations reuse PMET's.
    VALUE_NEUTRAL: ClassVar[dict[str, Any]] = {"spread": "sqrt", "update_attn": False}

    spread: Literal["even", "sqrt"] = hp("sqrt", "Residual spread over layers: sqrt (PMET) or even (MEMIT, the ablation).")
    no_attn_delta: bool = hp(False, "Ablation 'w/o delta_attn': optimise only the MLP output.")
    update_attn: bool = hp(False, "Ablation 'w/ W_O MHSA': also update the attention output projections.")

    def validate(self) -> None:
        super().validate()
        if self.update_attn and self.no_attn_delta:
            raise HyperParamError("update_attn needs the attention delta; do not combine it with no_attn_delta.")


def pmet_edit(job: EditJob) -> WeightDelta:
    """Edit all requests of ``job`` together; the model is left unchanged."""
    adapter, hp_, layers, requests, corpus = job.adapter, job.hparams, job.layers, job.requests, job.corpus
    contexts = context_templates(adapter, hp_.context_lengths, seed=hp_.context_seed)
    covariances = {("mlp_key", l): c for l, c in key_second_moments(
        adapter, layers, corpus=corpus, n_tokens=hp_.mom2_n_tokens, dtype=hp_.mom2_dtype, progress=job.progress).items()}
    if hp_.update_attn:
        covariances.update({("attn_key", l): c for l, c in key_second_moments(
            adapter, layers, site_kind="attn_key", corpus=corpus, n_tokens=hp_.mom2_n_tokens, dtype=hp_.mom2_dtype,
            progress=job.progress).items()})
    kinds = ("mlp",) if hp_.no_attn_delta else ("attn", "mlp")
    values = chunked_values(adapter, requests, layers[-1], kinds, contexts, hp_, job.progress)
    targets = {"mlp": values.target("mlp")}
    if hp_.update_attn:
        targets["attn"] = values.target("attn")
    entries = spread_updates(adapter, requests, layers, targets, contexts, covariances, hp_.mom2_update_weight, hp_.spread,
                             job.progress)
    return WeightDelta(entries, _metadata("pmet", adapter, hp_, requests, layers, corpus, values))


EDITOR = EditorSpec("pmet", PMETHyperParams, pmet_edit,
                    summary="PMET: attention and MLP values, MLP stored over a range, square-root spread")
