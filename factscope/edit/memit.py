"""MEMIT: many facts at once, spread over a range of MLP layers.

Usage::

    from factscope.edit import edit
    from factscope.testing import example_requests, tiny_adapter
    adapter = tiny_adapter("llama")
    delta = edit(adapter, example_requests(3), editor="memit", layers=[1, 2], mom2_update_weight=15000,
                 v_steps=3, mom2_n_tokens=64)                   # real batches: hundreds to thousands of requests

``memit_edit(job)`` receives the ``EditJob`` that ``factscope.edit.contract`` prepared.

Targets ``z = h^L + δ`` at the last subject token of the last layer ``L`` of the range
(δ optimised on the residual stream ``resid.L``). Then, for each layer ``l`` of the
range in order: keys ``K`` (averaged over context prefixes) are read from the model
with the earlier layers' updates applied, the residual ``R = z − h^L`` is measured
again, spread as ``R^l = R / (number of layers left)`` and stored with
``Δ = R^l Kᵀ (λC + KKᵀ)⁻¹``. The model is updated temporarily between layers and
restored at the end; the returned delta holds every layer's change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from tqdm.auto import tqdm

from factscope.edit.contexts import context_templates
from factscope.edit.corpus import corpus_from
from factscope.edit.covariance import key_second_moments
from factscope.edit.delta import DeltaEntry, WeightDelta, applied_in_turn
from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.hparams import ContextPrefixes, Covariance, HyperParamError, LayerRange, ValueOptimisation, hp
from factscope.edit.keys import site_at_lookup
from factscope.edit.request import EditRequest
from factscope.edit.solvers import least_squares_update
from factscope.edit.value_store import active_store, value_key
from factscope.edit.values import ValueResult, optimize_values
from factscope.hooks import Site
from factscope.models.adapter import ModelAdapter


# Layer ranges per family, shared by MEMIT and PMET.
MEMIT_LAYERS: dict[str, dict[str, Any]] = {
    "gpt2": {"layers": [13 / 48, 14 / 48, 15 / 48, 16 / 48, 17 / 48]},
    "gptj": {"layers": [3, 4, 5, 6, 7, 8]},
    "llama": {"layers": [4 / 32, 5 / 32, 6 / 32, 7 / 32, 8 / 32]},
    "smollm2-135m-instruct": {"layers": [3, 4, 5, 6, 7]},
}


@dataclass
class MEMITHyperParams(LayerRange, Covariance, ValueOptimisation, ContextPrefixes):
    """MEMIT (Meng et al. 2023): batch editing over a range of early-middle MLP layers."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        **MEMIT_LAYERS,
        # MEMIT's values live on the residual stream, which Gemma's post-norms can move only so far per
        # layer: a small relative step finds the smallest δ that reaches the target, one the layers can
        # store. Measured on three facts with the default covariance: P(target) 0.93-0.95 with 0.02,
        # 0.54-0.85 with the shared 0.1 (absolute 0.5 is ≈ 0.005 RMS here, ≈ 0.1 RMS on SmolLM2's layer 7).
        "gemma2": {"v_lr": 0.02},
        "gemma3_text": {"v_lr": 0.02},
    }

    context_lengths: list = hp([[10, 5]], "Context prefixes as [tokens, count] pairs (MEMIT: 5 of 10 tokens).")
    v_steps: int = hp(25, "Maximum Adam steps of the value optimisation.")
    clamp_norm_factor: float = hp(0.75, "||delta|| is clamped to this factor times ||h||.")
    v_weight_decay: float = hp(0.5, "Weight of ||delta||^2 / ||h||^2 in the value loss.")
    mom2_update_weight: float = hp(15000.0, "lambda in Delta = R K^T (lambda C + K K^T)^-1.")
    value_chunk: int = hp(0, "Requests whose values are optimised together in one batch (0: 16 on a CPU, up to 128 on a GPU).")
    spread: Literal["even", "sqrt"] = hp("even", "Residual spread over layers: even (MEMIT, /(L-l+1)) or sqrt (PMET).")

    def validate(self) -> None:
        super().validate()
        if self.mom2_update_weight < 0 or self.value_chunk < 0:
            raise HyperParamError("mom2_update_weight must be >= 0 and value_chunk >= 0 (0: chosen for the device).")

    def request_lookups(self) -> tuple[str, ...]:
        return ("subject_last",)


def default_value_chunk(device: torch.device | str, d_model: int, n_layers: int) -> int:
    """Requests per value-optimisation batch when ``value_chunk`` is 0.

    16 on a CPU, where one chunk already keeps the cores busy. On a GPU, 128 for a model
    the size of SmolLM2-135M (d_model × layers = 17,280), fewer for larger models so the
    activations of a chunk stay within a few GB (GPT-2 XL: 28, 7B Llamas: 16). Any chunk
    size gives the same values up to float rounding; on an H100, 1,000 MEMIT facts took
    152 s with chunks of 16 and 38 s with 128.
    """
    if torch.device(device).type == "cpu":
        return 16
    return max(16, min(128, 128 * 17_280 // max(1, d_model * n_layers)))


def chunked_values(adapter: ModelAdapter, requests: Sequence[EditRequest], layer: int, kinds: Sequence[str],
                   contexts: Sequence[str], hparams: MEMITHyperParams, progress: bool) -> ValueResult:
    """:func:`optimize_values` over chunks of requests, results concatenated.

    Inside :func:`factscope.edit.value_store.checkpoint_values`, finished chunks are
    saved and reused, so an interrupted batch edit resumes.
    """
    chunk = hparams.value_chunk or default_value_chunk(adapter.device, adapter.d_model, adapter.n_layers)
    store = active_store()
    # Checkpoints are keyed by the chunk size actually used, so "0 = 16 on a CPU" and an
    # explicit 16 share them (including checkpoints written before 0 became the default).
    settings = {**hparams.to_dict(), **getattr(hparams, "VALUE_NEUTRAL", {}), "value_chunk": chunk}
    parts = []
    for start in tqdm(range(0, len(requests), chunk), desc="values", disable=not progress or len(requests) <= chunk, leave=False):
        part = requests[start : start + chunk]
        key = value_key(adapter.fingerprint, part, layer, kinds, contexts, settings) if store else ""
        saved = store.load(key, kinds, len(part)) if store else None
        if saved is not None:
            parts.append(ValueResult(layer=layer, **saved))
            continue
        result = optimize_values(adapter, part, layer, kinds=kinds, lookup="subject_last", contexts=contexts, hparams=hparams)
        if store:
            store.save(key, result.init, result.delta, result.nll, result.steps)
        parts.append(result)
    return ValueResult(
        layer=layer,
        init={k: torch.cat([p.init[k] for p in parts]) for k in kinds},
        delta={k: torch.cat([p.delta[k] for p in parts]) for k in kinds},
        nll=[x for p in parts for x in p.nll],
        steps=[x for p in parts for x in p.steps],
    )


def _entry(site_kind: str, layer: int, U: torch.Tensor, V: torch.Tensor, dtype: torch.dtype) -> DeltaEntry:
    """Low-rank factors while the rank is small, else the dense matrix."""
    if U.shape[1] * 2 < min(U.shape[0], V.shape[0]):
        return DeltaEntry(site_kind, layer, U.to(dtype), V.to(dtype))
    return DeltaEntry(site_kind, layer, (U @ V.T).to(dtype))


def spread_updates(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    layers: Sequence[int],
    targets: dict[str, torch.Tensor],
    contexts: Sequence[str],
    covariances: dict[tuple[str, int], torch.Tensor],
    lam: float,
    spread: str,
    progress: bool = False,
) -> list[DeltaEntry]:
    """Store ``targets[kind]`` (values of site ``kind`` at the last layer) by updating ``layers`` in turn.

    ``kind`` "resid" or "mlp" updates the MLP down-projection (``mlp_key``); "attn"
    updates the attention output projection (``attn_key``). Temporary updates are
    reverted before returning.
    """
    top = max(layers)
    weight_of = {"resid": "mlp_key", "mlp": "mlp_key", "attn": "attn_key"}
    entries: list[DeltaEntry] = []
    with applied_in_turn(adapter) as apply:
        for i, layer in enumerate(tqdm(layers, desc="layers", disable=not progress, leave=False)):
            key_sites = {weight_of[k]: Site(weight_of[k], layer) for k in targets}
            keys = site_at_lookup(adapter, requests, list(key_sites.values()), lookup="subject_last", contexts=contexts)
            post_normed = "resid" in targets and adapter.post_norm("mlp", layer) is not None
            read = [Site(k, top) for k in targets] + ([Site("mlp", layer)] if post_normed else [])
            current = site_at_lookup(adapter, requests, read, lookup="subject_last")
            step_entries = []
            for kind, z in targets.items():
                residual = z - current[Site(kind, top)]  # [n, d_out]
                left = len(layers) - i
                residual = residual / (math.sqrt(left) if spread == "sqrt" else left)
                if kind == "resid" and post_normed:
                    # The residual receives post_norm(MLP output): ask the MLP for the output whose
                    # normed image adds this residual, not for the residual itself (Gemma-2/3).
                    m = current[Site("mlp", layer)]
                    residual = adapter.site_value_for_residual_change("mlp", layer, m, residual) - m
                wkind = weight_of[kind]
                K = keys[key_sites[wkind]]  # [n, d_in]
                U, V = least_squares_update(residual.T, K.T, covariances[(wkind, layer)], lam)
                dtype = adapter.weight(wkind, layer).parameter.dtype
                step_entries.append(_entry(wkind, layer, U, V, dtype))
            apply(WeightDelta(step_entries))
            entries.extend(step_entries)
    return entries


def memit_edit(job: EditJob) -> WeightDelta:
    """Edit all requests of ``job`` together; the model is left unchanged."""
    adapter, hp_, layers, requests = job.adapter, job.hparams, job.layers, job.requests
    contexts = context_templates(adapter, hp_.context_lengths, seed=hp_.context_seed)
    stats = key_second_moments(adapter, layers, corpus=job.corpus, n_tokens=hp_.mom2_n_tokens, dtype=hp_.mom2_dtype,
                               progress=job.progress)
    values = chunked_values(adapter, requests, layers[-1], ("resid",), contexts, hp_, job.progress)
    entries = spread_updates(adapter, requests, layers, {"resid": values.target("resid")}, contexts,
                             {("mlp_key", l): c for l, c in stats.items()}, hp_.mom2_update_weight, hp_.spread, job.progress)
    return WeightDelta(entries, _metadata("memit", adapter, hp_, requests, layers, job.corpus, values))


def _metadata(editor: str, adapter: ModelAdapter, hparams: MEMITHyperParams, requests: Sequence[EditRequest],
              layers: Sequence[int], corpus: Any, values: ValueResult) -> dict[str, Any]:
    return {
        "editor": editor,
        "hparams": hparams.to_dict(),
        "layers": list(layers),
        "requests": [r.to_dict() for r in requests],
        "model_fingerprint": adapter.fingerprint,
        "corpus": corpus_from(corpus).fingerprint,
        "target_nll_mean": float(torch.tensor(values.nll).nanmean()) if values.nll else None,
        "value_steps_mean": float(torch.tensor(values.steps, dtype=torch.float).mean()) if values.steps else None,
    }


EDITOR = EditorSpec("memit", MEMITHyperParams, memit_edit, summary="MEMIT: many facts at once over a range of MLP layers")
