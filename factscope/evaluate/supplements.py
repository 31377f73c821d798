"""Per-model supplements, built with the unedited model and cached by model fingerprint.

Usage::

    store = SupplementStore(adapter, all_cases, dataset_key="counterfact_500-<sha>")
    sup = store.get(cases)              # {case_id: CaseSupplement}; computes only what is missing
    sup[case.case_id].r_specificity     # [RSpecPrompt(prompt, relation_id, o2)]

What a supplement holds (rules in ``factscope.datasets.supplements`` and docs/evaluation.md):

* ``r_specificity``: R-Specificity prompts with o2 = the unedited model's greedy
  continuation through its first content word (``targets.greedy_object``: "the
  southern", "Chinese"); prompts whose o2 is empty (punctuation or line break first)
  or whose content word is a word of o* or o are dropped.
* ``r_specificity_reference``: the same candidate prompts (none dropped) with the
  reference rule's o2 (the RETS authors' ``evaluate_rs.py``): the first of the
  unedited model's top-20 next tokens that is not blank and not a stop word
  (``factscope.evaluate.stopwords``), else the top-1 token; kept as a token id.
  Caches written before this field existed get it on first use.
* ``consistency_reference``: texts about o* for Consistency. With ``attribute_prompts``
  (other subjects whose true object is o*): the unedited model's samples continuing
  "<attribute prompt> <o*>", prompt included (source ``"attribute_generations"``).
  Otherwise corpus paragraphs mentioning o* (source ``"corpus"``), else none.
* ``relation``: relation-perspective prompts (model-free).
* ``loc_top1``: zsRE only: the unedited model's top-1 tokens on ``loc`` under teacher
  forcing of ``loc_ans`` (Specificity = agreement with these).

The cache file lives at ``cache_dir()/supplements/<model fingerprint>/<key>.json``
where the key hashes the dataset content and every setting that shapes a supplement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from factscope.datasets.records import Case, EditCase, ZsreCase
from factscope.datasets.supplements import (
    RelationPrompts,
    case_seed,
    r_specificity_prompts,
    relation_prompts,
    relation_templates,
    subject_relations,
)
from factscope.evaluate.generation import GenerationConfig, generate_texts
from factscope.evaluate.targets import greedy_object, reference_o2, score_targets
from factscope.evaluate.text_metrics import corpus_paragraphs, corpus_passages_mentioning
from factscope.paths import default_corpus_path
from factscope.io_utils import quarantine, read_json_cache, write_json_cache
from factscope.models.adapter import ModelAdapter

SUPPLEMENT_VERSION = 2


@dataclass(frozen=True)
class RSpecPrompt:
    prompt: str
    relation_id: str | None
    o2: str
    o2_id: int | None = None  # the reference rule's o2 is one token: its id (None for our rule's o2 text)


@dataclass
class CaseSupplement:
    case_id: int | str
    r_specificity: list[RSpecPrompt] = field(default_factory=list)
    r_specificity_dropped: int = 0
    r_specificity_reference: list[RSpecPrompt] | None = None  # None: not computed (a cache from before the field)
    consistency_reference: list[str] = field(default_factory=list)
    consistency_source: str = "none"
    relation: RelationPrompts | None = None
    loc_top1: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["relation"] = self.relation.to_dict() if self.relation else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaseSupplement":
        rel = data.get("relation")
        return cls(
            case_id=data["case_id"],
            r_specificity=[RSpecPrompt(**p) for p in data.get("r_specificity", [])],
            r_specificity_dropped=data.get("r_specificity_dropped", 0),
            r_specificity_reference=None if data.get("r_specificity_reference") is None
            else [RSpecPrompt(**p) for p in data["r_specificity_reference"]],
            consistency_reference=list(data.get("consistency_reference", [])),
            consistency_source=data.get("consistency_source", "none"),
            relation=RelationPrompts(
                rel["name"], rel["add_prompt"], rel["remove_prompt"], tuple(rel["add_paraphrases"])
            ) if rel else None,
            loc_top1=data.get("loc_top1"),
        )


@dataclass(frozen=True)
class SupplementConfig:
    """Settings that shape supplements (part of the cache key)."""

    r_spec_k: int = 10
    o2_max_tokens: int = 6
    n_reference: int = 5
    seed: int = 0
    generation: GenerationConfig = GenerationConfig()
    corpus: str | None = None  # for corpus reference passages; None = default corpus

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SupplementConfig":
        data = dict(data)
        if isinstance(data.get("generation"), dict):
            data["generation"] = GenerationConfig(**data["generation"])
        return cls(**data)


def _names_object(o2: str, obj: str) -> bool:
    """Whether o2's content word is (a word of) the object: such a prompt would test o, not o2."""
    content = o2.split()[-1].lower() if o2.split() else ""
    return o2.strip().lower() == obj.strip().lower() or content in obj.lower().split()


class SupplementStore:
    """Builds and caches the supplements of one model for one dataset."""

    def __init__(
        self,
        adapter: ModelAdapter,
        all_cases: Sequence[Case],
        *,
        dataset_key: str,
        config: SupplementConfig = SupplementConfig(),
        cache_root: Path | None = None,
        progress: bool = True,
    ) -> None:
        from factscope.paths import cache_dir

        self.adapter = adapter
        self.config = config
        self.progress = progress
        edit_cases = [c for c in all_cases if isinstance(c, EditCase)]
        self.templates = relation_templates(edit_cases)
        self.observed = subject_relations(edit_cases)
        key_src = json.dumps(
            {
                "dataset": dataset_key,
                "config": config.to_dict(),
                "templates": self.templates,
                "version": SUPPLEMENT_VERSION,
            },
            sort_keys=True,
            default=str,
        )
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        root = cache_root or cache_dir() / "supplements"
        self.path = root / adapter.fingerprint / f"{key}.json"
        self._data: dict[str, dict] = {}
        stored = read_json_cache(self.path, "supplements cache")  # a damaged file is moved aside and rebuilt
        if isinstance(stored, dict) and isinstance(stored.get("cases"), dict):
            self._data = stored["cases"]
        elif stored is not None:
            quarantine(self.path, "no 'cases' record", "supplements cache")
        self._paragraphs: list[str] | None = None

    def get(self, cases: Sequence[Case], *, references: bool = True, save_every: int = 20) -> dict[int | str, CaseSupplement]:
        """Supplements of ``cases`` (call while the model is unedited).

        Consistency references need text generation; with ``references=False`` they
        are left out (and computed later, when a run first needs them).
        """
        def lacks_reference_rule(case: Case, entry: dict) -> bool:
            return isinstance(case, EditCase) and entry.get("r_specificity_reference") is None

        def missing_part(case: Case) -> bool:
            entry = self._data.get(str(case.case_id))
            return entry is None or (references and not entry.get("references_done", False)) or lacks_reference_rule(case, entry)

        missing = [c for c in cases if missing_part(c)]
        for i, case in enumerate(tqdm(missing, desc="supplements", disable=not self.progress or not missing)):
            entry = self._data.get(str(case.case_id))
            sup = CaseSupplement.from_dict(entry) if entry else self.build(case, references=False)
            if entry and lacks_reference_rule(case, entry):
                self._reference_rule(case, sup)
            done = bool((entry or {}).get("references_done"))
            if references and not done and isinstance(case, EditCase) and case.generation_prompts:
                self._reference(case, sup)
            data = sup.to_dict()
            data["references_done"] = bool(references or done)
            self._data[str(case.case_id)] = data
            if (i + 1) % save_every == 0:
                self._save()
        if missing:
            self._save()
        return {c.case_id: CaseSupplement.from_dict(self._data[str(c.case_id)]) for c in cases}

    def build(self, case: Case, *, references: bool = True) -> CaseSupplement:
        """Compute one case's supplement with the (unedited) model."""
        if isinstance(case, ZsreCase):
            scores = score_targets(self.adapter, [(case.loc_prompt, case.loc_answer)])
            return CaseSupplement(case.case_id, loc_top1=list(scores[0].top1))
        sup = CaseSupplement(case.case_id, relation=relation_prompts(case))
        candidates = r_specificity_prompts(case, self.templates, k=self.config.r_spec_k, observed=self.observed, seed=self.config.seed)
        o2s = greedy_object(self.adapter, [p.prompt for p in candidates], max_tokens=self.config.o2_max_tokens)
        for cand, o2 in zip(candidates, o2s):
            if not any(ch.isalnum() for ch in o2) or _names_object(o2, case.target_new) or _names_object(o2, case.target_true):
                sup.r_specificity_dropped += 1
                continue
            sup.r_specificity.append(RSpecPrompt(cand.prompt, cand.relation_id, o2))
        self._reference_rule(case, sup, candidates)
        if references and case.generation_prompts:
            self._reference(case, sup)
        return sup

    def _reference_rule(self, case: EditCase, sup: CaseSupplement, candidates: Sequence | None = None) -> None:
        """The reference rule's o2 (token id and text) for every candidate R-Specificity prompt."""
        if candidates is None:
            candidates = r_specificity_prompts(case, self.templates, k=self.config.r_spec_k, observed=self.observed,
                                               seed=self.config.seed)
        picked = reference_o2(self.adapter, [c.prompt for c in candidates])
        sup.r_specificity_reference = [RSpecPrompt(c.prompt, c.relation_id, text, token)
                                       for c, (token, text) in zip(candidates, picked)]

    def _reference(self, case: EditCase, sup: CaseSupplement) -> None:
        attribute = list(dict.fromkeys(case.attribute_prompts))[: self.config.n_reference]
        if attribute:
            prompts = [f"{p} {case.target_new}" for p in attribute]
            seed = case_seed(case.case_id, self.config.seed + 1)
            sup.consistency_reference = generate_texts(self.adapter, prompts, self.config.generation, seed=seed)
            sup.consistency_source = "attribute_generations"
            return
        if self._paragraphs is None:
            corpus = Path(self.config.corpus) if self.config.corpus else default_corpus_path()
            self._paragraphs = corpus_paragraphs(corpus) if corpus.is_file() else []
        passages = corpus_passages_mentioning(case.target_new, self._paragraphs, self.config.n_reference)
        if passages:
            sup.consistency_reference = passages
            sup.consistency_source = "corpus"

    def _save(self) -> None:
        write_json_cache(self.path, {"config": self.config.to_dict(), "cases": self._data})


def dataset_key(path: str | Path | None, fmt: str) -> str:
    """Identity of a dataset file for cache keys: name, format and content hash."""
    if path is None:
        from factscope.datasets.counterfact import example_facts_path

        path = example_facts_path()
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"{path.name}-{fmt}-{digest}"
