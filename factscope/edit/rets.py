"""RETS (seed 000): ROME at the last relation token of a middle-late layer, with subject constraints.

Usage::

    from factscope.edit import EditRequest, edit
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    request = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")
    fast = dict(layer=2, v_steps=3, mom2_n_tokens=64, n_constraint_records=20)
    delta = edit(adapter, [request], editor="rets", **fast)
    plain = edit(adapter, [request], editor="rets", no_subject_constraints=True, **fast)   # the "w/o SC" ablation

``rets_prepare`` reads the constraint records (or pool) once, before any work;
``rets_edit(job)`` and ``rets_edit_each(job)`` then edit.

Eq. 11-14: store ``(k*, v*)`` read at the last prompt token ``p_r`` of layer ``l_e``
(≈ 75 % of depth: GPT2-XL 36/48, GPT-J 18/28, Llama-2 23/32) with
``W̃ = W + Λ ((C + K_r K_rᵀ)⁻¹ k*)ᵀ``, where ``K_r`` holds keys of other subjects
(see ``constraints.py``). ``constraint_source``:

* ``records`` (default, as the authors' ``compute_ur.py``): the rewrite prompts of
  other subjects' records, all relations, one bare last-token key each
  (``n_constraint_records``, seeded by ``constraint_seed``). Records come from
  ``constraint_records`` (a COUNTERFACT / known_1000 file; ``factscope evaluate``
  passes the evaluation file) or, without one, the shipped pool (example facts and
  ``data/rets_constraint_prompts.json``). The edited subject's own records are
  left out unless ``constraint_keep_own`` (the authors' code keeps them).
* ``template``: the request's own template filled with ``n_constraint_subjects``
  other subjects (the earlier default; ``constraint_pool`` / ``constraint_templates``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import torch

from factscope.edit.constraints import (PoolEntry, constraint_keys, constraint_subjects, default_constraint_records,
                                        load_constraint_records, load_relation_templates, load_subject_pool,
                                        record_constraint_keys, record_constraint_prompts)
from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import HyperParamError, hp
from factscope.edit.request import EditRequest
from factscope.edit.rome import RankOneHyperParams, rank_one_edit, rank_one_edits
from factscope.edit.sequential import edit_sequentially


CONSTRAINT_SOURCES = ("records", "template")


@dataclass
class RETSHyperParams(RankOneHyperParams):
    """RETS: relation-focused rank-one editing with subject constraints."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt2": {"layer": 36 / 48},
        "gptj": {"layer": 18 / 28},
        "llama": {"layer": 23 / 32},
        "smollm2-135m-instruct": {"layer": 22},
    }

    layer: int | float = hp(0.75, "Edited layer: an index, or a fraction of depth (RETS: middle-late, ~0.75).")
    lookup: Literal["subject_last", "last"] = hp("last", "Lookup token: last (the last relation token, RETS) or subject_last.")
    store_at: Literal["bare", "mean"] = hp("bare", "Key at which W'k = v* holds exactly: bare (the bare prompt's key) or mean (k*).")
    no_subject_constraints: bool = hp(False, "Ablation 'w/o SC': leave K_r out (plain ROME at the relation token).")
    constraint_source: Literal["records", "template"] = hp(
        "records", "K_r from: records (other subjects' rewrite prompts, all relations, as the "
                   "authors' code) or template (the request's template, other subjects).")
    constraint_records: str = hp("", "records: a COUNTERFACT / known_1000 JSON file (evaluate passes its data file). "
                                     "Empty: the shipped pool (example facts and data/rets_constraint_prompts.json).")
    n_constraint_records: int = hp(500, "records: number of records (other subjects only) whose keys form K_r.")
    constraint_keep_own: bool = hp(False, "records: keep the edited subject's own records in K_r (the authors' code uses "
                                          "every record of its file, one K_r for all edits).")
    n_constraint_subjects: int = hp(30, "template: number of other subjects whose keys form K_r.")
    constraint_seed: int = hp(0, "Seed for choosing the constraint subjects from the pool.")
    constraint_pool: str = hp("", "JSON file of constraint subjects: a list of names, or known_1000/COUNTERFACT records "
                                  "(the request's relation is then preferred). Empty: the built-in pool.")
    constraint_templates: Literal["own", "pool"] = hp(
        "own", "Templates of K_r: own (the request's, as RETS) or pool (also the constraint_pool "
               "file's templates of the request's relation).")

    def validate(self) -> None:
        super().validate()
        if self.constraint_source == "records" and self.lookup != "last" and not self.no_subject_constraints:
            raise HyperParamError("constraint_source=records reads keys at the last token: use lookup=last, or constraint_source=template.")
        if self.constraint_source == "records" and (self.constraint_pool or self.constraint_templates != "own"):
            raise HyperParamError("constraint_pool and constraint_templates apply to constraint_source=template; set it too.")
        if self.n_constraint_records < 0 or self.n_constraint_subjects < 0:
            raise HyperParamError("n_constraint_records and n_constraint_subjects must be at least 0.")
        if self.constraint_templates == "pool" and not self.constraint_pool:
            raise HyperParamError("constraint_templates=pool needs constraint_pool=FILE (records with relation_id and template).")


def rets_prepare(job: EditJob) -> EditJob:
    """The ``K_r`` source per request (records or pool read and checked here, before any work)."""
    hp_, adapter = job.hparams, job.adapter
    if hp_.constraint_source == "records":
        records = load_constraint_records(hp_.constraint_records) if hp_.constraint_records else default_constraint_records()

        def keys_for(request: EditRequest) -> Callable[[int], torch.Tensor] | None:
            if hp_.no_subject_constraints or hp_.n_constraint_records <= 0:
                return None
            prompts = record_constraint_prompts(records, request, hp_.n_constraint_records, seed=hp_.constraint_seed,
                                                keep_own=hp_.constraint_keep_own)
            return lambda l: record_constraint_keys(adapter, prompts, l, lookup=hp_.lookup)

        return dataclasses.replace(job, state={"keys_for": keys_for})
    subject_pool: Sequence[PoolEntry] | None = job.options.get("subject_pool")
    if subject_pool is None and hp_.constraint_pool:
        subject_pool = load_subject_pool(hp_.constraint_pool)
    templates = load_relation_templates(hp_.constraint_pool) if hp_.constraint_templates == "pool" else {}

    def pool_keys_for(request: EditRequest) -> Callable[[int], torch.Tensor] | None:
        if hp_.no_subject_constraints or hp_.n_constraint_subjects <= 0:
            return None
        subjects = constraint_subjects(request, hp_.n_constraint_subjects, seed=hp_.constraint_seed, pool=subject_pool)
        extra = templates.get(request.relation_id or "", [])
        return lambda l: constraint_keys(adapter, request, l, subjects, lookup=hp_.lookup, templates=extra)

    return dataclasses.replace(job, state={"keys_for": pool_keys_for})


def rets_edit(job: EditJob) -> WeightDelta:
    """RETS for each request in turn; returns one delta (the model is left unchanged)."""
    hp_, adapter, keys_for = job.hparams, job.adapter, job.state["keys_for"]

    def one(request: EditRequest) -> WeightDelta:
        return rank_one_edit(adapter, request, hp_, job.layer, hp_.lookup, corpus=job.corpus,
                             constraint_keys=keys_for(request), editor="rets", progress=job.progress)

    return edit_sequentially(adapter, job.requests, one, metadata={"editor": "rets", "model_fingerprint": adapter.fingerprint})


def rets_edit_each(job: EditJob) -> list[WeightDelta]:
    """One independent RETS delta per request (each as ``rets_edit`` of that request alone), computed together."""
    hp_, keys_for = job.hparams, job.state["keys_for"]
    return rank_one_edits(job.adapter, job.requests, hp_, job.layer, hp_.lookup, corpus=job.corpus,
                          constraint_keys=[keys_for(r) for r in job.requests], editor="rets", progress=job.progress)


def rets_dataset_overrides(data: str | Path, fmt: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """K_r from the evaluation file's records (as the authors' code does from its COUNTERFACT file).

    Unless the overrides chose other records or the per-template pool; each edit leaves
    out every record of its own subject. Other formats get nothing.
    """
    if fmt not in ("counterfact", "examples"):
        return {}
    if "constraint_records" in overrides or overrides.get("constraint_source", "records") != "records":
        return {}
    return {"constraint_records": str(Path(data).resolve())}


EDITOR = EditorSpec("rets", RETSHyperParams, rets_edit, rets_edit_each, prepare_fn=rets_prepare, options=("subject_pool",),
                    dataset_fn=rets_dataset_overrides,
                    summary="RETS: rank-one update at the last relation token with subject constraints")
