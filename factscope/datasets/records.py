"""Typed evaluation cases: one COUNTERFACT-like fact or one zsRE question, each with its edit request.

Usage::

    case = load_cases("counterfact_500.json", n=10)[0]
    case.request                   # EditRequest("{} is located in", "Angola", "Antarctica", "Africa", "P30")
    case.paraphrase_prompts        # filled prompts that should now give target_new
    case.neighborhood_prompts      # other subjects, same relation: should keep neighborhood_target
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from factscope.requests import EditRequest
from factscope.tokens import fill_template


@dataclass(frozen=True)
class OtherRelationPrompt:
    """A prompt about the case's subject under another relation (R-Specificity)."""

    prompt: str  # filled prompt
    relation_id: str | None = None


@dataclass(frozen=True)
class EditCase:
    """A COUNTERFACT-like case (original, flattened EasyEdit, or our example facts)."""

    case_id: int | str
    prompt: str  # template with one "{}"
    subject: str
    target_new: str
    target_true: str
    relation_id: str | None = None
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    neighborhood_target: str | None = None  # true object of the neighbours; None = target_true
    attribute_prompts: tuple[str, ...] = ()  # other subjects whose true object is target_new
    generation_prompts: tuple[str, ...] = ()
    other_relation_prompts: tuple[OtherRelationPrompt, ...] = ()  # given by the data (examples)
    source_format: str = "counterfact"

    kind = "counterfact"

    @property
    def filled(self) -> str:
        return fill_template(self.prompt, self.subject)

    @property
    def neighbour_object(self) -> str:
        return self.neighborhood_target or self.target_true

    @property
    def request(self) -> EditRequest:
        return EditRequest(
            self.prompt, self.subject, self.target_new, self.target_true, self.relation_id, self.case_id
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ZsreCase:
    """A zsRE question-answering edit (ROME's format): ``src`` question → ``target_new`` (``alt``)."""

    case_id: int | str
    prompt: str  # template: the question with the subject replaced by "{}"
    subject: str
    target_new: str
    answers: tuple[str, ...] = ()  # the true answers (ground truth)
    rephrase_prompt: str = ""
    loc_prompt: str = ""
    loc_answer: str = ""
    relation_id: str | None = None
    source_format: str = "zsre"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    kind = "zsre"

    @property
    def filled(self) -> str:
        return fill_template(self.prompt, self.subject)

    @property
    def target_true(self) -> str | None:
        return self.answers[0] if self.answers else None

    @property
    def request(self) -> EditRequest:
        true = self.target_true
        if true is not None and true.strip() == self.target_new.strip():
            true = None  # zsRE sometimes repeats the answer as the edit target
        return EditRequest(self.prompt, self.subject, self.target_new, true, self.relation_id, self.case_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Case = EditCase | ZsreCase
