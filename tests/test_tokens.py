"""Subject spans and position groups from character offsets, for BPE and SentencePiece-style tokenizers."""

from __future__ import annotations

import pytest

from factscope.testing import tiny_tokenizer
from factscope.tokens import (
    EmptyPromptError,
    EmptyRelationError,
    SubjectNotFoundError,
    position_groups,
    require_relation_tokens,
)

KINDS = ("bytelevel", "metaspace")


def _decode(tok, ids):
    return tok.decode(ids).strip()


@pytest.mark.parametrize("kind", KINDS)
def test_subject_in_middle(kind: str) -> None:
    tok = tiny_tokenizer(kind)
    groups = position_groups(tok, "The mother tongue of {} is", "Danielle Darrieux")
    subj = [groups.input_ids[i] for i in groups.subject_tokens]
    assert _decode(tok, subj) == "Danielle Darrieux"
    assert groups["lr"] == [len(groups.input_ids) - 1]
    assert _decode(tok, [groups.input_ids[i] for i in groups["rp"]]) == "The mother tongue of"
    assert groups["fs"][0] == groups.subject_tokens[0] and groups["ls"][0] == groups.subject_tokens[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_subject_at_start(kind: str) -> None:
    tok = tiny_tokenizer(kind)
    groups = position_groups(tok, "{} was born in", "Danielle Darrieux")
    assert groups["rp"] == []
    assert groups.subject_tokens[0] == 0
    assert _decode(tok, [groups.input_ids[i] for i in groups.subject_tokens]) == "Danielle Darrieux"
    assert _decode(tok, [groups.input_ids[i] for i in groups.relation_tokens]) == "was born in"


def test_groups_partition_the_prompt() -> None:
    tok = tiny_tokenizer("bytelevel")
    groups = position_groups(tok, "In the city of {} people speak the language", "Paris")
    covered = sorted(set(i for name in ("rp", "fs", "ms", "ls", "fr", "mr", "lr") for i in groups[name]))
    assert covered == list(range(len(groups.input_ids)))
    assert groups.group_of(groups.last_token) == "fr" or groups["lr"] == [groups.last_token]


def test_filled_prompt_with_repeated_subject_warns_and_uses_first() -> None:
    tok = tiny_tokenizer("bytelevel")
    with pytest.warns(UserWarning, match="more than once"):
        groups = position_groups(tok, "Paris is the capital of France and Paris is", "Paris")
    assert groups.subject_tokens[0] == 0


def test_template_with_subject_repeated_in_text_uses_the_placeholder() -> None:
    tok = tiny_tokenizer("bytelevel")
    groups = position_groups(tok, "Paris, not {}, is", "Paris")
    assert groups.subject_tokens[0] > 0


def test_errors() -> None:
    tok = tiny_tokenizer("bytelevel")
    with pytest.raises(SubjectNotFoundError):
        position_groups(tok, "The capital of France is", "Germany")
    with pytest.raises(EmptyPromptError):
        position_groups(tok, "", "Paris")
    with pytest.raises(SubjectNotFoundError):
        position_groups(tok, "The capital of {} is", "")
    groups = position_groups(tok, "The capital of France is {}", "Paris")
    with pytest.raises(EmptyRelationError, match="ends with the subject"):
        require_relation_tokens(groups)
