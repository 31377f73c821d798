"""Model-free rules for the supplements COUNTERFACT lacks: R-Specificity prompts and relation prompts.

Usage::

    templates = relation_templates(all_cases)            # relation_id -> canonical template
    prompts = r_specificity_prompts(case, templates, k=10)   # [OtherRelationPrompt(...)]
    rel = relation_prompts(case)                          # RelationPrompts(name="native language", ...)

R-Specificity (seed 000): for the edited fact (s, r1, o*), prompts (s, r2) for other
relations r2 that fit the subject's type (``relations.fits_subject_of``). Each r2 is
asked with its canonical template: the most frequent ``requested_rewrite.prompt`` of
r2 in the dataset (ties: the relation table's template if tied, else alphabetical),
else the template of the relation table. A prompt equal to the rewrite prompt or to
an earlier one (relations sharing a template) is asked once. Relations are ordered by a permutation seeded by the case id and the first
``k`` are kept. Relations observed with the same subject elsewhere in the dataset are
added to the fitting set. Cases that bring their own ``other_relation_prompts``
(our example facts) use those instead. The object o2 of each prompt is the unedited
model's prediction (``factscope.evaluate.supplements``).

Relation perspective (seed 001/002): the relation's Wikidata name is the target of
"The relation between {s} and {o*} is" (add) and "None" the target of "The relation
between {s} and {o} is" (remove), as in ``factscope.requests.relation_edit_requests``;
``RELATION_PARAPHRASES`` rephrase the add prompt for Generality.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from factscope.datasets.records import EditCase, OtherRelationPrompt
from factscope.datasets.relations import RELATIONS, fits_subject_of
from factscope.requests import NO_RELATION, RELATION_TEMPLATE, EditRequest, relation_edit_requests

RELATION_PARAPHRASES = (
    "What is the relation between {} and {object}? It is",
    "{} and {object} are connected by the relation",
    "The relationship of {} to {object} is",
)


def case_seed(case_id: int | str, base: int = 0) -> int:
    """A stable 31-bit seed for a case (independent of Python's hash randomisation)."""
    return (zlib.crc32(str(case_id).encode()) + base) % (2**31 - 1)


def relation_templates(cases: Iterable[EditCase]) -> dict[str, str]:
    """Canonical template per relation: most frequent rewrite template in the data, then the table's."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for case in cases:
        if case.relation_id:
            counts[case.relation_id][case.prompt] += 1
    templates = {rid: info.template for rid, info in RELATIONS.items()}
    for rid, counter in counts.items():
        table = templates.get(rid)
        # most frequent; among ties the table's own template, then alphabetical
        templates[rid] = min(counter.items(), key=lambda kv: (-kv[1], kv[0] != table, kv[0]))[0]
    return templates


def subject_relations(cases: Iterable[EditCase]) -> dict[str, set[str]]:
    """Relations observed for each subject in the data."""
    seen: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        if case.relation_id:
            seen[case.subject].add(case.relation_id)
    return seen


def fitting_relations(case: EditCase, templates: dict[str, str], observed: dict[str, set[str]] | None = None) -> list[str]:
    """Other relations that can be asked about the case's subject (sorted ids)."""
    if case.relation_id is None or case.relation_id not in RELATIONS:
        return []
    fits = {rid for rid in templates if rid in RELATIONS and fits_subject_of(rid, case.relation_id)}
    if observed:
        fits |= {rid for rid in observed.get(case.subject, set()) if rid in templates}
    fits.discard(case.relation_id)
    return sorted(fits)


def r_specificity_prompts(
    case: EditCase,
    templates: dict[str, str],
    *,
    k: int = 10,
    observed: dict[str, set[str]] | None = None,
    seed: int = 0,
) -> list[OtherRelationPrompt]:
    """Up to ``k`` filled prompts about the case's subject under other, fitting relations."""
    if case.other_relation_prompts:
        return list(case.other_relation_prompts[:k])
    candidates = fitting_relations(case, templates, observed)
    if not candidates:
        return []
    gen = torch.Generator().manual_seed(case_seed(case.case_id, seed))
    order = torch.randperm(len(candidates), generator=gen).tolist()
    prompts: list[OtherRelationPrompt] = []
    seen = {case.prompt.replace("{}", case.subject, 1)}
    for i in order:
        rid = candidates[i]
        prompt = templates[rid].replace("{}", case.subject, 1)
        if prompt in seen:  # two relations sharing a template ask the same question once
            continue
        seen.add(prompt)
        prompts.append(OtherRelationPrompt(prompt, rid))
        if len(prompts) == k:
            break
    return prompts


@dataclass(frozen=True)
class RelationPrompts:
    """Relation-perspective prompts of one case (filled)."""

    name: str  # the relation's name: the target of the add prompts
    add_prompt: str  # "The relation between {s} and {o*} is" → name
    remove_prompt: str  # "The relation between {s} and {o} is" → "None"
    add_paraphrases: tuple[str, ...]
    none_target: str = NO_RELATION

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "add_prompt": self.add_prompt,
            "remove_prompt": self.remove_prompt,
            "add_paraphrases": list(self.add_paraphrases),
        }


def relation_prompts(case: EditCase) -> RelationPrompts | None:
    """Relation-perspective prompts, or None when the case has no known relation."""
    if case.relation_id is None or case.relation_id not in RELATIONS:
        return None
    name = RELATIONS[case.relation_id].name

    def fill(template: str, obj: str) -> str:
        return template.replace("{object}", obj).replace("{}", case.subject, 1)

    return RelationPrompts(
        name=name,
        add_prompt=fill(RELATION_TEMPLATE, case.target_new),
        remove_prompt=fill(RELATION_TEMPLATE, case.target_true),
        add_paraphrases=tuple(fill(t, case.target_new) for t in RELATION_PARAPHRASES),
    )


def relation_requests(case: EditCase) -> list[EditRequest]:
    """The relation-perspective edit requests of a case (add for o*, remove for o)."""
    rel = relation_prompts(case)
    if rel is None:
        raise ValueError(
            f"case {case.case_id!r}: relation {case.relation_id!r} has no name in the relation table; "
            "the relation perspective needs one."
        )
    return relation_edit_requests(case.request, rel.name)
