"""Subject spans and position groups, found by the tokenizer's character offsets.

Usage::

    groups = position_groups(tokenizer, "The mother tongue of {} is", "Danielle Darrieux")
    groups.subject_tokens   # range of subject token indices
    groups["lr"]            # [index of the last prompt token]
    groups.input_ids        # token ids of the filled prompt

Groups (SPEC §1): ``rp`` relation prefix (template tokens before the subject),
``fs``/``ms``/``ls`` first/middle/last subject token, ``fr``/``mr``/``lr``
first/middle/last relation token (template tokens after the subject; ``lr`` is the
last prompt token). A one-token subject has ``fs == ls`` and no ``ms``; a one-token
relation has ``fr == lr`` and no ``mr``. Special tokens (BOS) belong to no group.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

GROUP_NAMES = ("rp", "fs", "ms", "ls", "fr", "mr", "lr")


class SubjectNotFoundError(ValueError):
    """The subject does not occur in the prompt."""


class EmptyPromptError(ValueError):
    """The prompt is empty or tokenizes to nothing."""


class EmptyRelationError(ValueError):
    """No template token follows the subject, so relation positions do not exist."""


def fill_template(template: str, subject: str) -> str:
    """``"The capital of {} is"`` + subject → filled prompt (exactly one ``{}`` required)."""
    if template.count("{}") != 1:
        raise ValueError(f"Prompt template must contain exactly one '{{}}' for the subject: {template!r}")
    return template.replace("{}", subject)


def subject_char_span(prompt: str, subject: str) -> tuple[int, int]:
    """Character span of the subject in a *filled* prompt (first occurrence, with a warning if repeated)."""
    if not prompt or not prompt.strip():
        raise EmptyPromptError("The prompt is empty.")
    if not subject or not subject.strip():
        raise SubjectNotFoundError("The subject is empty.")
    start = prompt.find(subject)
    if start < 0:
        raise SubjectNotFoundError(f"Subject {subject!r} does not occur in prompt {prompt!r}.")
    if prompt.find(subject, start + 1) >= 0:
        warnings.warn(
            f"Subject {subject!r} occurs more than once in {prompt!r}; using the first occurrence.",
            stacklevel=3,
        )
    return start, start + len(subject)


def encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]], list[bool]]:
    """Token ids, character offsets and a special-token mask for ``text``."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            "factscope needs a fast (Rust) tokenizer for character offsets; "
            "load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    special = [bool(m) for m in enc["special_tokens_mask"]]
    if not any(not s for s in special):
        raise EmptyPromptError(f"Prompt {text!r} tokenizes to no ordinary token.")
    return ids, offsets, special  # type: ignore[return-value]


def token_span(offsets: list[tuple[int, int]], special: list[bool], char_start: int, char_end: int) -> range:
    """Indices of non-special tokens overlapping ``[char_start, char_end)``."""
    hits = [
        i
        for i, ((a, b), sp) in enumerate(zip(offsets, special))
        if not sp and b > a and a < char_end and b > char_start
    ]
    if not hits:
        raise SubjectNotFoundError(f"No token overlaps characters {char_start}..{char_end}.")
    return range(hits[0], hits[-1] + 1)


@dataclass
class PositionGroups:
    """Token indices of each position group of one filled prompt."""

    prompt: str
    subject: str
    input_ids: list[int]
    subject_tokens: range
    groups: dict[str, list[int]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[int]:
        return self.groups[name]

    @property
    def relation_tokens(self) -> list[int]:
        """All template token indices after the subject (fr..lr)."""
        return sorted(set(self.groups["fr"] + self.groups["mr"] + self.groups["lr"]))

    @property
    def last_subject(self) -> int:
        return self.subject_tokens[-1]

    @property
    def last_token(self) -> int:
        return len(self.input_ids) - 1

    def group_of(self, index: int) -> str | None:
        """Name of the group that token ``index`` belongs to (first match in GROUP_NAMES order)."""
        for name in GROUP_NAMES:
            if index in self.groups[name]:
                return name
        return None


def _first_middle_last(indices: list[int]) -> tuple[list[int], list[int], list[int]]:
    if not indices:
        return [], [], []
    return [indices[0]], indices[1:-1], [indices[-1]]


def position_groups(tokenizer: Any, prompt_or_template: str, subject: str) -> PositionGroups:
    """Position groups for a template with ``{}`` or for an already filled prompt."""
    if "{}" in prompt_or_template:
        if not prompt_or_template.replace("{}", "").strip() and not subject.strip():
            raise EmptyPromptError("The prompt is empty.")
        if not subject or not subject.strip():
            raise SubjectNotFoundError("The subject is empty.")
        prompt = fill_template(prompt_or_template, subject)
        char_start = prompt_or_template.index("{}")
        char_end = char_start + len(subject)
    else:
        prompt = prompt_or_template
        char_start, char_end = subject_char_span(prompt, subject)
    ids, offsets, special = encode_with_offsets(tokenizer, prompt)
    subj = token_span(offsets, special, char_start, char_end)
    ordinary = [i for i, sp in enumerate(special) if not sp]
    before = [i for i in ordinary if i < subj.start]
    after = [i for i in ordinary if i >= subj.stop]
    fs, ms, ls = _first_middle_last(list(subj))
    fr, mr, lr = _first_middle_last(after)
    groups = {"rp": before, "fs": fs, "ms": ms, "ls": ls, "fr": fr, "mr": mr, "lr": lr}
    return PositionGroups(prompt=prompt, subject=subject, input_ids=ids, subject_tokens=subj, groups=groups)


def require_relation_tokens(groups: PositionGroups) -> None:
    """Raise ``EmptyRelationError`` when the prompt ends with the subject."""
    if not groups["lr"]:
        raise EmptyRelationError(
            f"Prompt {groups.prompt!r} ends with the subject {groups.subject!r}: there are no relation "
            "tokens after it. Use a template with text after '{}' (e.g. 'The capital of {} is')."
        )
