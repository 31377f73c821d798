"""ROME: a rank-one update of one MLP down-projection at the last subject token.

Usage::

    from factscope.edit import EditRequest, edit
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    request = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")
    delta = edit(adapter, [request], editor="rome", layer=2, v_steps=3, mom2_n_tokens=64)
    with delta.applied(adapter):
        ...                                   # the model now leans to " English"

``rome_edit(job)`` and ``rome_edit_each(job)`` receive an ``EditJob`` that
``factscope.edit.contract`` prepared (requests and hyperparameters checked, layer resolved).

One request: the key ``k*`` (down-projection input at the lookup token, averaged over
context prefixes), δ from :func:`optimize_values` at the MLP output, then
``W' = W + Λ (C⁻¹k*)ᵀ`` with ``Λ = (v* − W k) / ((C⁻¹k*)ᵀ k)``; as in ROME's code
``k`` is the bare prompt's key (``store_at="bare"``, so ``W'k = v* = Wk + δ`` holds
exactly on the prompt itself) or ``k*`` (``store_at="mean"``, the formula as written).

Several requests (``requests_solve``): ``sequential`` (default) edits them one after
another, each on the model the previous ones edited; ``joint`` stores all of them
in one least-squares update at the layer, ``Δ = R Kᵀ (λC + KKᵀ)⁻¹`` (``R`` = each
request's δ, ``K`` = its key k*, ``λ`` = ``joint_lambda``): the relation
perspective's add and remove requests share their key (both prompts read "The
relation between s"), so a sequential edit lets the second overwrite the first,
while the joint solve stores their mean there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import torch

from factscope.edit.contexts import context_templates
from factscope.edit.corpus import corpus_from
from factscope.edit.covariance import key_second_moment
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.hparams import ContextPrefixes, Covariance, HyperParamError, SingleLayer, ValueOptimisation, hp
from factscope.edit.keys import site_at_lookup
from factscope.edit.request import EditRequest
from factscope.edit.sequential import edit_sequentially
from factscope.edit.solvers import least_squares_update, rank_one_from_residual
from factscope.edit.values import optimize_values
from factscope.hooks import Site
from factscope.models.adapter import ModelAdapter


@dataclass
class RankOneHyperParams(SingleLayer, Covariance, ValueOptimisation, ContextPrefixes):
    """Fields of a rank-one edit at one layer (ROME, RETS): where the key is read and stored."""

    lookup: Literal["subject_last", "last"] = hp("subject_last", "Lookup token: subject_last (ROME) or last (last relation token).")
    store_at: Literal["bare", "mean"] = hp("bare", "Key at which W'k = v* holds exactly: bare (the bare prompt's key, as "
                                                   "ROME's code) or mean (k*).")

    def request_lookups(self) -> tuple[str, ...]:
        return (self.lookup,)


@dataclass
class ROMEHyperParams(RankOneHyperParams):
    """ROME (Meng et al. 2022): edit an early-middle MLP at the last subject token."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt2": {"layer": 17 / 48},  # ROME's GPT-2 XL layer 17
        "gptj": {"layer": 5 / 28},  # ROME's GPT-J layer 5
        "gpt_neox": {"layer": 15 / 44},  # ROME's GPT-NeoX-20B layer 15
        "llama": {"layer": 5 / 32},  # common Llama-2-7B choice
        "smollm2-135m-instruct": {"layer": 5},
    }

    requests_solve: Literal["sequential", "joint"] = hp(
        "sequential", "Several requests: sequential (one after another, as ROME) or joint (one "
                      "least-squares update R K^T (lambda C + K K^T)^-1 for all).")
    joint_lambda: float = hp(1.0, "joint: weight lambda of the covariance C against the requests' keys.")

    def validate(self) -> None:
        super().validate()
        if not self.joint_lambda > 0:
            raise HyperParamError("joint_lambda must be positive.")


def rank_one_edits(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    hparams: RankOneHyperParams,
    layer: int,
    lookup: str,
    *,
    corpus: Any = None,
    constraint_keys: Sequence[Callable[[int], torch.Tensor] | None] | None = None,
    editor: str = "rome",
    progress: bool = False,
) -> list[WeightDelta]:
    """Independent rank-one edits, each as :func:`rank_one_edit` would compute it on the unedited model.

    Keys are read and values optimised for all requests in one batch (each request's
    loss and δ are its own, so the results are those of one-at-a-time editing up to
    float rounding); then each request gets its own update. ``constraint_keys[i](layer)``
    → ``[n, d]`` keys added to ``C`` as ``K Kᵀ`` for request ``i`` (RETS).
    """
    contexts = context_templates(adapter, hparams.context_lengths, seed=hparams.context_seed)
    C = key_second_moment(adapter, layer, corpus=corpus, n_tokens=hparams.mom2_n_tokens, dtype=hparams.mom2_dtype,
                          progress=progress)
    key_site = Site("mlp_key", layer)
    k_star = site_at_lookup(adapter, requests, [key_site], lookup=lookup, contexts=contexts)[key_site]
    k_bare = site_at_lookup(adapter, requests, [key_site], lookup=lookup)[key_site]
    values = optimize_values(adapter, requests, layer, kinds=("mlp",), lookup=lookup, contexts=contexts,
                             hparams=hparams, progress=progress)
    dtype = adapter.mlp_down_weight(layer).parameter.dtype
    deltas = []
    for i, request in enumerate(requests):
        metric = C.to(torch.float64)
        n_constraints = 0
        keys_fn = constraint_keys[i] if constraint_keys is not None else None
        if keys_fn is not None:
            K_r = keys_fn(layer).to(torch.float64)
            n_constraints = int(K_r.shape[0])
            metric = metric + K_r.T @ K_r
        # δ was optimised on top of the bare prompt's MLP output, so v* − W k_bare = δ there.
        k_store = k_bare[i] if hparams.store_at == "bare" else k_star[i]
        lam, u = rank_one_from_residual(metric, k_star[i], values.delta["mlp"][i], k_store)
        entry = DeltaEntry("mlp_key", layer, lam.unsqueeze(1).to(dtype), u.unsqueeze(1).to(dtype))
        deltas.append(WeightDelta(
            [entry],
            {
                "editor": editor,
                "hparams": hparams.to_dict(),
                "layer": layer,
                "lookup": lookup,
                "requests": [request.to_dict()],
                "model_fingerprint": adapter.fingerprint,
                "corpus": corpus_from(corpus).fingerprint,
                "target_nll": values.nll[i],
                "value_steps": values.steps[i],
                "delta_norm_ratio": float(values.delta["mlp"][i].norm() / values.init["mlp"][i].norm()),
                "n_subject_constraints": n_constraints,
            },
        ))
    return deltas


def rank_one_edit(
    adapter: ModelAdapter,
    request: EditRequest,
    hparams: RankOneHyperParams,
    layer: int,
    lookup: str,
    *,
    corpus: Any = None,
    constraint_keys: Callable[[int], torch.Tensor] | None = None,
    editor: str = "rome",
    progress: bool = False,
) -> WeightDelta:
    """One rank-one edit; ``constraint_keys(layer)`` → ``[n, d]`` keys added to ``C`` as ``K Kᵀ`` (RETS)."""
    return rank_one_edits(adapter, [request], hparams, layer, lookup, corpus=corpus, constraint_keys=[constraint_keys],
                          editor=editor, progress=progress)[0]


def rome_edit(job: EditJob) -> WeightDelta:
    """ROME for each request in turn (or ``requests_solve=joint``: all in one update); one delta, the model unchanged."""
    hp_, adapter, layer = job.hparams, job.adapter, job.layer
    if hp_.requests_solve == "joint" and len(job.requests) > 1:
        return joint_rank_edit(adapter, job.requests, hp_, layer, hp_.lookup, corpus=job.corpus, progress=job.progress)
    return edit_sequentially(
        adapter, job.requests,
        lambda req: rank_one_edit(adapter, req, hp_, layer, hp_.lookup, corpus=job.corpus, editor="rome",
                                  progress=job.progress),
        metadata={"editor": "rome", "model_fingerprint": adapter.fingerprint},
    )


def joint_rank_edit(adapter: ModelAdapter, requests: Sequence[EditRequest], hparams: ROMEHyperParams, layer: int,
                    lookup: str, *, corpus: Any = None, progress: bool = False) -> WeightDelta:
    """All requests in one update ``Δ = R Kᵀ (λC + KKᵀ)⁻¹`` at ``layer`` (rank ≤ number of requests).

    Keys k* and values δ as :func:`rank_one_edits` computes them on the unedited model."""
    contexts = context_templates(adapter, hparams.context_lengths, seed=hparams.context_seed)
    C = key_second_moment(adapter, layer, corpus=corpus, n_tokens=hparams.mom2_n_tokens, dtype=hparams.mom2_dtype,
                          progress=progress)
    key_site = Site("mlp_key", layer)
    k_star = site_at_lookup(adapter, requests, [key_site], lookup=lookup, contexts=contexts)[key_site]
    values = optimize_values(adapter, requests, layer, kinds=("mlp",), lookup=lookup, contexts=contexts,
                             hparams=hparams, progress=progress)
    U, V = least_squares_update(values.delta["mlp"].T, k_star.T, C, lam=hparams.joint_lambda)
    dtype = adapter.mlp_down_weight(layer).parameter.dtype
    return WeightDelta(
        [DeltaEntry("mlp_key", layer, U.to(dtype), V.to(dtype))],
        {
            "editor": "rome",
            "hparams": hparams.to_dict(),
            "layer": layer,
            "lookup": lookup,
            "requests": [r.to_dict() for r in requests],
            "model_fingerprint": adapter.fingerprint,
            "corpus": corpus_from(corpus).fingerprint,
            "target_nll": list(values.nll),
            "requests_solve": "joint",
        },
    )


def rome_edit_each(job: EditJob) -> list[WeightDelta]:
    """One independent ROME delta per request (each as ``rome_edit`` of that request alone), computed together."""
    hp_ = job.hparams
    return rank_one_edits(job.adapter, job.requests, hp_, job.layer, hp_.lookup, corpus=job.corpus, editor="rome",
                          progress=job.progress)


EDITOR = EditorSpec("rome", ROMEHyperParams, rome_edit, rome_edit_each,
                    summary="ROME: rank-one update of one MLP at the last subject token")
