"""Per-case metrics (SPEC §5): COUNTERFACT criteria, relation perspective, zsRE.

Usage::

    result = evaluate_case(adapter, case, supplement, generation=GenerationConfig(), idf=idf)
    result["metrics"]["efficacy"], result["metrics"]["r_specificity"], result["details"]

All prompts of a case are scored in one call of :func:`score_targets` (a few
batched forwards). Probabilities of multi-token targets are compared by mean
per-token NLL, as ROME did; ``P(x)`` below is ``exp(-mean NLL)``.

COUNTERFACT (values per case in [0, 1]; means over the case's prompts):

* ``efficacy``: P(o*) > P(o) on the rewrite prompt; ``efficacy_magnitude``: P(o*) − P(o).
* ``generalization`` (+ ``_magnitude``): the same on ``paraphrase_prompts``.
* ``s_specificity`` (+ ``_magnitude``): P(o) > P(o*) on ``neighborhood_prompts``
  (o = the neighbours' true object), magnitude P(o) − P(o*).
* ``r_specificity`` (+ ``_magnitude``): P(o2) > P(o*) on the supplement's
  other-relation prompts of the same subject; magnitude P(o2) − P(o*). o2 by our rule
  (the unedited model's greedy continuation through its first content word).
* ``r_specificity_reference`` (+ ``_magnitude``): the RETS authors' rule
  (``evaluate_rs.py``): o2 = one token, the first of the unedited model's top-20 next
  tokens that is neither blank nor a stop word; success = NLL(o2) < NLL(o*) (mean
  per-token NLL of o*) on every candidate prompt (none dropped).
* ``fluency``: weighted bi/tri-gram entropy of texts sampled from ``generation_prompts``.
* ``consistency``: TF-IDF cosine between those texts and the supplement's reference texts.

Relation perspective (seed 001/002; exact match = every target token is top-1 under
teacher forcing, i.e. greedy decoding reproduces the target):

* ``entity_reliability``: EM of o* on the rewrite prompt.
* ``entity_generality``: per paraphrase, EM of o* on the paraphrase *and* the rewrite
  prompt (seed 001, eq. 7).
* ``relation_reliability``: EM of the relation name on "The relation between s and o* is".
* ``relation_generality``: the same on rephrasings of that prompt, and the original.
* ``relation_removal``: EM of "None" on "The relation between s and o is".
* ``r_efficacy``: P(name) > P("None") on the add prompt (RaKE's Efficacy for relation edits).
* ``relation_reliability_token_acc``, ``relation_generality_token_acc``,
  ``relation_removal_token_acc``: the same prompts scored by token-level accuracy
  (share of target tokens that are top-1 under teacher forcing; the convention of
  EasyEdit and of ROME's zsRE metric; seed 001 reports this kind of figure);
  Generality: mean over the rephrasings alone (EasyEdit's rephrase accuracy). The
  exact-match fields above are kept unchanged.

zsRE: ``efficacy``/``generalization``: token-level top-1 accuracy of o* under teacher
forcing on the question / its rephrase; ``specificity``: fraction of ``loc_ans``
positions where the top-1 token equals the unedited model's; ``specificity_vs_answer``:
ROME's token accuracy against ``loc_ans`` itself.
"""

from __future__ import annotations

import math
from typing import Any

from factscope.datasets.records import Case, EditCase, ZsreCase
from factscope.evaluate.generation import GenerationConfig, generate_texts
from factscope.evaluate.supplements import CaseSupplement
from factscope.evaluate.targets import TargetScore, score_targets
from factscope.evaluate.text_metrics import Idf, ngram_entropy, tfidf_cosine
from factscope.datasets.supplements import case_seed
from factscope.models.adapter import ModelAdapter
from factscope.scoring import next_token_logprobs

COUNTERFACT_METRICS = (
    "efficacy", "efficacy_magnitude", "generalization", "generalization_magnitude",
    "s_specificity", "s_specificity_magnitude", "r_specificity", "r_specificity_magnitude",
    "fluency", "consistency",
    "entity_reliability", "entity_generality", "relation_reliability", "relation_generality",
    "relation_removal", "r_efficacy",
    "r_specificity_reference", "r_specificity_reference_magnitude",
    "relation_reliability_token_acc", "relation_generality_token_acc", "relation_removal_token_acc",
)  # fmt: skip
ZSRE_METRICS = ("efficacy", "generalization", "specificity", "specificity_vs_answer")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class _Pairs:
    """Collects (prompt, target) pairs and hands back their scores by name."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []
        self.names: list[tuple[str, int, str]] = []
        self.scores: dict[tuple[str, int, str], TargetScore] = {}

    def add(self, group: str, index: int, role: str, prompt: str, target: str) -> None:
        self.pairs.append((prompt, target))
        self.names.append((group, index, role))

    def run(self, adapter: ModelAdapter) -> None:
        self.scores = dict(zip(self.names, score_targets(adapter, self.pairs)))

    def get(self, group: str, index: int, role: str) -> TargetScore:
        return self.scores[(group, index, role)]


def reference_r_spec(nll_o2: list[float], nll_new: list[float]) -> tuple[float | None, float | None]:
    """The reference R-Specificity of one case: share of prompts with NLL(o2) < NLL(o*), and mean P(o2) − P(o*)."""
    wins = [float(a < b) for a, b in zip(nll_o2, nll_new)]
    return _mean(wins), _mean([math.exp(-a) - math.exp(-b) for a, b in zip(nll_o2, nll_new)])


def _compare(pairs: _Pairs, group: str, prompts: list[str], want: str, other: str) -> tuple[list[dict], float | None, float | None]:
    """Per prompt P(want) vs P(other); returns details, mean success, mean P(want) − P(other)."""
    details, wins, gaps = [], [], []
    for i, prompt in enumerate(prompts):
        a, b = pairs.get(group, i, "want"), pairs.get(group, i, "other")
        wins.append(float(a.nll < b.nll))
        gaps.append(a.prob - b.prob)
        details.append({"prompt": prompt, "target": want, "other": other, "nll_target": a.nll, "nll_other": b.nll})
    return details, _mean(wins), _mean(gaps)


def evaluate_counterfact(
    adapter: ModelAdapter,
    case: EditCase,
    supplement: CaseSupplement,
    *,
    generation: GenerationConfig | None = None,
    idf: Idf | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """All COUNTERFACT and relation-perspective metrics of one case on the current model."""
    new, true, neighbour_true = case.target_new, case.target_true, case.neighbour_object
    groups: dict[str, tuple[list[str], str, str]] = {
        "rewrite": ([case.filled], new, true),
        "paraphrase": (list(case.paraphrase_prompts), new, true),
        "neighborhood": (list(case.neighborhood_prompts), neighbour_true, new),
    }
    pairs = _Pairs()
    for group, (prompts, want, other) in groups.items():
        for i, p in enumerate(prompts):
            pairs.add(group, i, "want", p, want)
            pairs.add(group, i, "other", p, other)
    for i, rs in enumerate(supplement.r_specificity):
        pairs.add("r_spec", i, "want", rs.prompt, rs.o2)
        pairs.add("r_spec", i, "other", rs.prompt, new)
    reference = supplement.r_specificity_reference or []
    for i, rs in enumerate(reference):
        pairs.add("r_spec_ref", i, "other", rs.prompt, new)
    rel = supplement.relation
    if rel is not None:
        pairs.add("rel_add", 0, "name", rel.add_prompt, rel.name)
        pairs.add("rel_add", 0, "none", rel.add_prompt, rel.none_target)
        pairs.add("rel_remove", 0, "none", rel.remove_prompt, rel.none_target)
        for i, p in enumerate(rel.add_paraphrases):
            pairs.add("rel_para", i, "name", p, rel.name)
    pairs.run(adapter)

    metrics: dict[str, float | None] = dict.fromkeys(COUNTERFACT_METRICS)
    details: dict[str, Any] = {}
    for group, key in (("rewrite", "efficacy"), ("paraphrase", "generalization"), ("neighborhood", "s_specificity")):
        prompts, want, other = groups[group]
        details[group], metrics[key], metrics[f"{key}_magnitude"] = _compare(pairs, group, prompts, want, other)
    rs_details, wins, gaps = [], [], []
    for i, rs in enumerate(supplement.r_specificity):
        a, b = pairs.get("r_spec", i, "want"), pairs.get("r_spec", i, "other")
        wins.append(float(a.nll < b.nll))
        gaps.append(a.prob - b.prob)
        rs_details.append({"prompt": rs.prompt, "relation_id": rs.relation_id, "target": rs.o2, "other": new,
                           "nll_target": a.nll, "nll_other": b.nll})  # fmt: skip
    details["r_specificity"] = rs_details
    metrics["r_specificity"], metrics["r_specificity_magnitude"] = _mean(wins), _mean(gaps)
    if reference:
        o2_logprobs = next_token_logprobs(adapter, [rs.prompt for rs in reference])
        nll_o2 = [float(-o2_logprobs[i, rs.o2_id]) for i, rs in enumerate(reference)]
        nll_new = [pairs.get("r_spec_ref", i, "other").nll for i in range(len(reference))]
        outcome = reference_r_spec(nll_o2, nll_new)
        metrics["r_specificity_reference"], metrics["r_specificity_reference_magnitude"] = outcome
        details["r_specificity_reference"] = [
            {"prompt": rs.prompt, "relation_id": rs.relation_id, "o2_id": rs.o2_id, "target": rs.o2, "other": new,
             "nll_target": a, "nll_other": b} for rs, a, b in zip(reference, nll_o2, nll_new)]  # fmt: skip

    rewrite_em = pairs.get("rewrite", 0, "want").exact
    metrics["entity_reliability"] = float(rewrite_em)
    para_em = [pairs.get("paraphrase", i, "want").exact for i in range(len(case.paraphrase_prompts))]
    metrics["entity_generality"] = _mean([float(e and rewrite_em) for e in para_em])
    details["entity_em"] = {"rewrite": rewrite_em, "paraphrases": para_em}
    if rel is not None:
        add_name, add_none = pairs.get("rel_add", 0, "name"), pairs.get("rel_add", 0, "none")
        para = [pairs.get("rel_para", i, "name").exact for i in range(len(rel.add_paraphrases))]
        metrics["relation_reliability"] = float(add_name.exact)
        metrics["relation_generality"] = _mean([float(e and add_name.exact) for e in para])
        metrics["relation_removal"] = float(pairs.get("rel_remove", 0, "none").exact)
        metrics["r_efficacy"] = float(add_name.nll < add_none.nll)
        remove = pairs.get("rel_remove", 0, "none")
        para_acc = [pairs.get("rel_para", i, "name").token_accuracy for i in range(len(rel.add_paraphrases))]
        metrics["relation_reliability_token_acc"] = add_name.token_accuracy
        metrics["relation_generality_token_acc"] = _mean(para_acc)  # on the rephrasings (EasyEdit's rephrase acc.)
        metrics["relation_removal_token_acc"] = remove.token_accuracy
        details["relation"] = {"name": rel.name, "add_em": add_name.exact, "paraphrase_em": para,
                               "nll_name": add_name.nll, "nll_none": add_none.nll}  # fmt: skip

    if generation is not None and case.generation_prompts:
        texts = generate_texts(adapter, list(case.generation_prompts), generation, seed=case_seed(case.case_id, seed))
        metrics["fluency"] = ngram_entropy(texts)
        if supplement.consistency_reference and idf is not None:
            metrics["consistency"] = tfidf_cosine(" ".join(texts), " ".join(supplement.consistency_reference), idf)
        details["generations"] = texts
        details["consistency_source"] = supplement.consistency_source
    return {"metrics": metrics, "details": details}


def evaluate_zsre(adapter: ModelAdapter, case: ZsreCase, supplement: CaseSupplement) -> dict[str, Any]:
    """zsRE token-level accuracies of one case on the current model."""
    scores = score_targets(
        adapter,
        [(case.filled, case.target_new), (case.rephrase_prompt, case.target_new), (case.loc_prompt, case.loc_answer)],
    )
    rewrite, rephrase, loc = scores
    if supplement.loc_top1 is None or len(supplement.loc_top1) != len(loc.top1):
        raise ValueError(f"case {case.case_id!r}: supplement lacks the unedited model's loc predictions.")
    agree = [float(a == b) for a, b in zip(loc.top1, supplement.loc_top1)]
    metrics = {
        "efficacy": rewrite.token_accuracy,
        "generalization": rephrase.token_accuracy,
        "specificity": _mean(agree),
        "specificity_vs_answer": loc.token_accuracy,
    }
    details = {
        "rewrite": {"prompt": case.filled, "target": case.target_new, "matches": rewrite.matches},
        "rephrase": {"prompt": case.rephrase_prompt, "target": case.target_new, "matches": rephrase.matches},
        "loc": {"prompt": case.loc_prompt, "target": case.loc_answer, "agree": agree},
    }
    return {"metrics": metrics, "details": details}


def evaluate_case(
    adapter: ModelAdapter,
    case: Case,
    supplement: CaseSupplement,
    *,
    generation: GenerationConfig | None = None,
    idf: Idf | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Dispatch on the case kind."""
    if isinstance(case, ZsreCase):
        return evaluate_zsre(adapter, case, supplement)
    return evaluate_counterfact(adapter, case, supplement, generation=generation, idf=idf, seed=seed)
