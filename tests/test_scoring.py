"""Target tokenization convention and teacher-forced scoring."""

from __future__ import annotations

import pytest
import torch

from factscope.scoring import EmptyTargetError, continuation_ids, next_token_logprobs, target_token_logprobs
from factscope.testing import tiny_adapter, tiny_tokenizer


@pytest.mark.parametrize("kind", ["bytelevel", "metaspace"])
def test_continuation_ids_follow_the_prompt(kind: str) -> None:
    tok = tiny_tokenizer(kind)
    prompt = "The capital of France is"
    ids = continuation_ids(tok, prompt, "Paris")
    full = tok(prompt + " Paris", add_special_tokens=False)["input_ids"]
    assert full[-len(ids):] == ids
    assert tok.decode(ids).strip() == "Paris"
    assert continuation_ids(tok, prompt, " Paris ") == ids


def test_empty_target_raises() -> None:
    with pytest.raises(EmptyTargetError):
        continuation_ids(tiny_tokenizer("bytelevel"), "The capital of France is", "  ")


def test_teacher_forced_logprobs_match_manual_forward() -> None:
    adapter = tiny_adapter("llama")
    prompts = ["The capital of France is", "Danielle Darrieux was born in the city of"]
    targets = ["Paris", "Bordeaux Paris"]
    scored = target_token_logprobs(adapter, prompts, targets)
    for prompt, target, lp in zip(prompts, targets, scored):
        p_ids = adapter.tokenizer(prompt)["input_ids"]
        t_ids = continuation_ids(adapter.tokenizer, prompt, target)
        logits = adapter.model(input_ids=torch.tensor([p_ids + t_ids])).logits[0]
        manual = torch.log_softmax(logits, -1)[torch.arange(len(p_ids) - 1, len(p_ids) + len(t_ids) - 1), t_ids]
        assert torch.allclose(lp, manual, atol=1e-5)
    nxt = next_token_logprobs(adapter, prompts)
    assert torch.allclose(nxt[0, continuation_ids(adapter.tokenizer, prompts[0], "Paris")[0]], scored[0][0], atol=1e-5)
