"""Vocabulary lens: projections, positions, object ranks and the attributes rate."""

from __future__ import annotations

import pytest
import torch

from factscope.localize.attributes import (
    AttributeSets,
    UnknownRelationError,
    attribute_token_ids,
    attributes_rate,
    attributes_rate_batch,
)
from factscope.localize.lens import (
    PositionOutOfRangeError,
    hidden_states_at,
    resolve_position,
    token_ranks,
    vocab_lens,
)
from factscope.scoring import continuation_ids
from factscope.testing import tiny_adapter, tiny_tokenizer
from factscope.tokens import EmptyRelationError, SubjectNotFoundError

PROMPT = "The mother tongue of Danielle Darrieux is"
SUBJECT = "Danielle Darrieux"


def test_final_layer_projection_equals_model_logits(any_tiny) -> None:
    prompts = ["The capital of France is", "Danielle Darrieux was born in"]
    lengths = [len(any_tiny.tokenizer(p)["input_ids"]) for p in prompts]
    states = hidden_states_at(any_tiny, prompts, [n - 1 for n in lengths])  # batched, right-padded
    projected = any_tiny.project_to_vocab(states[:, -1])
    for row, prompt in enumerate(prompts):
        ids = torch.tensor([any_tiny.tokenizer(prompt)["input_ids"]])
        logits = any_tiny.model(input_ids=ids).logits[0, -1]
        assert torch.allclose(projected[row], logits, atol=1e-4), any_tiny.name


def test_lens_last_layer_top_tokens_are_the_models_prediction() -> None:
    adapter = tiny_adapter("gpt2")
    result = vocab_lens(adapter, PROMPT, k=5)
    ids = torch.tensor([adapter.tokenizer(PROMPT)["input_ids"]])
    probs = torch.softmax(adapter.model(input_ids=ids).logits[0, -1], -1)
    top = probs.topk(5)
    last = result.layers[-1]
    assert last.top_ids == top.indices.tolist()
    assert last.top_probs == pytest.approx(top.values.tolist(), abs=1e-5)
    assert len(result.layers) == adapter.n_layers
    assert all(len(row.top_ids) == 5 for row in result.layers)


def test_raw_projection_skips_the_final_norm() -> None:
    adapter = tiny_adapter("llama")
    normed = vocab_lens(adapter, PROMPT, k=3)
    raw = vocab_lens(adapter, PROMPT, k=3, raw=True)
    state = hidden_states_at(adapter, [PROMPT], [normed.position])[0, 0]
    expected = adapter.unembed(state).topk(3).indices.tolist()
    assert raw.raw and raw.layers[0].top_ids == expected
    assert normed.layers[0].top_ids == adapter.project_to_vocab(state).topk(3).indices.tolist()


def test_object_rank_and_probability() -> None:
    adapter = tiny_adapter("llama")
    result = vocab_lens(adapter, PROMPT, k=3, object="French")
    object_id = continuation_ids(adapter.tokenizer, PROMPT, "French")[0]
    assert result.object_id == object_id
    for row in result.layers:
        logits = adapter.project_to_vocab(hidden_states_at(adapter, [PROMPT], [result.position])[0, row.layer])
        assert row.object_rank == int((logits > logits[object_id]).sum()) + 1
        assert row.object_prob == pytest.approx(float(torch.softmax(logits, -1)[object_id]), abs=1e-6)


def test_token_ranks_are_one_based_and_handle_ties() -> None:
    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0], [3.0, 1.0, 0.0, 2.0]])
    assert token_ranks(logits, torch.tensor([1, 0])).tolist() == [1, 1]
    assert token_ranks(logits, torch.tensor([3, 2])).tolist() == [4, 4]
    assert token_ranks(logits, torch.tensor([0, 3])).tolist() == [3, 2]


def test_resolve_position_named_and_indexed() -> None:
    adapter = tiny_adapter("gpt2")
    n = len(adapter.tokenizer(PROMPT)["input_ids"])
    through_subject = len(adapter.tokenizer("The mother tongue of " + SUBJECT)["input_ids"])
    assert resolve_position(adapter, PROMPT, "last") == n - 1
    assert resolve_position(adapter, PROMPT, "lr", SUBJECT) == n - 1
    assert resolve_position(adapter, PROMPT, "ls", SUBJECT) == through_subject - 1
    assert resolve_position(adapter, PROMPT, 2) == 2
    assert resolve_position(adapter, PROMPT, "-1") == n - 1
    assert resolve_position(adapter, PROMPT, -n) == 0


def test_bad_positions_raise_clear_errors() -> None:
    adapter = tiny_adapter("gpt2")
    n = len(adapter.tokenizer(PROMPT)["input_ids"])
    with pytest.raises(PositionOutOfRangeError, match="out of range"):
        resolve_position(adapter, PROMPT, n)
    with pytest.raises(PositionOutOfRangeError):
        vocab_lens(adapter, PROMPT, position=-(n + 1))
    with pytest.raises(ValueError, match="needs the subject"):
        resolve_position(adapter, PROMPT, "lr")
    with pytest.raises(SubjectNotFoundError):
        resolve_position(adapter, PROMPT, "ls", "Marie Curie")
    with pytest.raises(EmptyRelationError):
        resolve_position(adapter, "The mother tongue of Danielle Darrieux", "lr", SUBJECT)
    with pytest.raises(ValueError, match="Unknown position"):
        resolve_position(adapter, PROMPT, "middle")
    with pytest.raises(ValueError):
        vocab_lens(adapter, PROMPT, k=0)


# ------------------------------------------------------------------ attributes rate


@pytest.mark.parametrize("kind", ["bytelevel", "metaspace"])
def test_attribute_tokens_follow_a_space_and_include_every_token(kind: str) -> None:
    tok = tiny_tokenizer(kind)
    paris = continuation_ids(tok, "in", "Paris")
    multi = continuation_ids(tok, "in", "Bordeaux Warsaw")
    assert len(multi) >= 2
    assert attribute_token_ids(tok, ["Paris"]) == frozenset(paris)
    assert attribute_token_ids(tok, ["Paris", "Bordeaux Warsaw"]) == frozenset(paris) | frozenset(multi)
    assert attribute_token_ids(tok, ["Bordeaux Warsaw"], mode="first") == frozenset(multi[:1])
    with pytest.raises(ValueError):
        attribute_token_ids(tok, ["Paris"], mode="last")


def test_attributes_rate_is_exact_on_a_hand_made_example() -> None:
    tok = tiny_tokenizer("bytelevel")
    sets = AttributeSets(tok, {"P1": ["Paris", "Rome"], "P2": ["Berlin"]})
    paris, rome = continuation_ids(tok, "is", "Paris")[0], continuation_ids(tok, "is", "Rome")[0]
    a_r = sets.ids("P1")
    assert a_r == frozenset(continuation_ids(tok, "is", "Paris") + continuation_ids(tok, "is", "Rome"))
    others = [i for i in range(len(tok)) if i not in a_r][:6]
    top = [paris, others[0], rome, others[1], others[2], others[3], others[4], others[5]]
    assert attributes_rate(top, a_r) == 2 / 8
    assert attributes_rate(top[:3], a_r) == 2 / 3
    assert attributes_rate(others, a_r) == 0.0
    batch = attributes_rate_batch(torch.tensor([top, top[::-1]]), sets.mask("P1", len(tok)))
    assert batch.tolist() == [0.25, 0.25]
    assert sets.contains_string("P1", " paris ") and not sets.contains_string("P2", "Paris")


def test_unknown_relation_is_a_clear_error() -> None:
    sets = AttributeSets(tiny_tokenizer("bytelevel"), {"P1": ["Paris"]})
    with pytest.raises(UnknownRelationError, match="'P9' has no attribute set; known relations: P1"):
        sets.ids("P9")
    assert "P1" in sets and "P9" not in sets


def test_lens_attributes_rate_counts_top_k_members() -> None:
    adapter = tiny_adapter("qwen2")
    base = vocab_lens(adapter, PROMPT, k=4)
    layer2 = base.layers[2].top_ids
    result = vocab_lens(adapter, PROMPT, k=4, attribute_ids=frozenset(layer2[:3]))
    assert result.layers[2].attributes_rate == 0.75
    for row, ref in zip(result.layers, base.layers):
        assert row.attributes_rate == len(set(ref.top_ids) & set(layer2[:3])) / 4


def test_load_attributes_file(tmp_path) -> None:
    path = tmp_path / "attrs.json"
    path.write_text('{"P1": ["Paris", "Rome"]}')
    sets = AttributeSets.from_file(tiny_tokenizer("bytelevel"), path)
    assert sets.relations == ["P1"] and sets.strings("P1") == ["Paris", "Rome"]


@pytest.mark.bundled
def test_bundled_lens_finds_the_object_at_the_last_layer(bundled) -> None:
    prompt = "Vinson Massif is located in the continent of"
    result = vocab_lens(bundled, prompt, subject="Vinson Massif", position="lr", k=50, object="Antarctica")
    ids = torch.tensor([bundled.tokenizer(prompt)["input_ids"]])
    logits = bundled.model(input_ids=ids).logits[0, -1]
    assert result.layers[-1].top_ids == logits.topk(50).indices.tolist()
    assert result.layers[-1].object_rank < result.layers[0].object_rank
