"""The shipped example facts: well-formed, broad enough, and still known by the bundled model."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from factscope.datasets import load_example_facts
from factscope.scoring import continuation_ids, next_token_logprobs


def test_example_facts_are_well_formed() -> None:
    cases = load_example_facts()
    assert len(cases) >= 40
    by_relation = Counter(c.relation_id for c in cases)
    assert len(by_relation) >= 8
    assert cases[0].subject == "Danielle Darrieux" and cases[0].target_true == "French"
    for case in cases:
        assert case.target_new.strip() and case.target_new != case.target_true
        assert len(case.paraphrase_prompts) >= 2
        assert all(case.subject in p for p in case.paraphrase_prompts)
        assert len(case.neighborhood_prompts) >= 5
        assert all(case.subject not in p for p in case.neighborhood_prompts)
        assert len(case.other_relation_prompts) >= 3
        assert all(case.subject in o.prompt and o.relation_id != case.relation_id for o in case.other_relation_prompts)


@pytest.mark.bundled
def test_bundled_model_predicts_every_example_fact(bundled) -> None:
    cases = load_example_facts()
    logprobs = next_token_logprobs(bundled, [c.filled for c in cases])
    wrong = []
    for case, row in zip(cases, logprobs):
        expected = continuation_ids(bundled.tokenizer, case.filled, case.target_true)[0]
        if int(torch.argmax(row)) != expected:
            wrong.append((case.case_id, case.filled, bundled.tokenizer.decode([int(torch.argmax(row))])))
    assert not wrong, f"bundled model no longer predicts: {wrong}"
