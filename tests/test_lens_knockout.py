"""Knock-out of MLP / attention outputs and the attributes-rate decline."""

from __future__ import annotations

import pytest
import torch

from factscope.localize.knockout import Knockout, knockout_decline, knockout_states, window_layers
from factscope.localize.lens import PositionOutOfRangeError, hidden_states_at
from factscope.models.adapter import LayerOutOfRangeError
from factscope.testing import tiny_adapter

PROMPT = "The capital of France is Paris and the capital of Italy is"


def test_zero_layer_knockout_changes_nothing() -> None:
    adapter = tiny_adapter("llama")
    n = len(adapter.tokenizer(PROMPT)["input_ids"])
    clean = hidden_states_at(adapter, [PROMPT], [n - 1])[0, 3]
    states = knockout_states(adapter, PROMPT, n - 1, [Knockout(), Knockout("mlp", ()), Knockout("attn", ())], 3)
    for row in states:
        assert torch.allclose(row, clean, atol=1e-6)
    top = adapter.project_to_vocab(clean).topk(50).indices
    res = knockout_decline(adapter, PROMPT, n - 1, top[:20].tolist(), window=0)
    assert res.ar_clean == pytest.approx(20 / 50)
    assert res.decline == {"mlp": [0.0] * 4, "attn": [0.0] * 4}


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "gemma2", "opt"])
def test_prefix_reuse_equals_the_straightforward_forward(arch: str) -> None:
    adapter = tiny_adapter(arch)
    n = len(adapter.tokenizer(PROMPT)["input_ids"])
    kos = [Knockout(), Knockout("mlp", (0, 1)), Knockout("attn", (1, 2, 3)), Knockout("mlp", (3,))]
    for position in (n - 1, 3, 0):
        fast = knockout_states(adapter, PROMPT, position, kos, 3, reuse_prefix=True)
        slow = knockout_states(adapter, PROMPT, position, kos, 3, reuse_prefix=False)
        assert torch.allclose(fast, slow, atol=1e-5), (arch, position)


def test_knockout_zeroes_exactly_the_component_at_the_position() -> None:
    adapter = tiny_adapter("gpt2")
    ids = torch.tensor([adapter.tokenizer(PROMPT)["input_ids"]])
    position = ids.shape[1] - 2
    zeroed = {}

    def hook_for(layer):
        def hook(_m, _a, output):
            out = output[0] if isinstance(output, tuple) else output
            out = out.clone()
            out[:, position] = 0
            zeroed[layer] = True
            return (out, *output[1:]) if isinstance(output, tuple) else out
        return hook

    handles = [adapter.module(f"mlp.{l}").register_forward_hook(hook_for(l)) for l in (1, 2)]
    try:
        manual = adapter.model(input_ids=ids, output_hidden_states=True).hidden_states[3][0, position]
    finally:
        for h in handles:
            h.remove()
    assert zeroed == {1: True, 2: True}
    ours = knockout_states(adapter, PROMPT, position, [Knockout("mlp", (1, 2))], 2)[0]
    assert torch.allclose(ours, manual, atol=1e-5)
    clean = hidden_states_at(adapter, [PROMPT], [position])[0, 2]
    assert not torch.allclose(ours, clean, atol=1e-4)


def test_knockout_decline_windows_and_values() -> None:
    adapter = tiny_adapter("llama")
    n = len(adapter.tokenizer(PROMPT)["input_ids"])
    attrs = list(range(0, 400, 3))
    res = knockout_decline(adapter, PROMPT, n - 1, attrs, window=2, eval_layer=2, k=10)
    assert res.starts == [0, 1, 2] and res.eval_layer == 2
    states = knockout_states(
        adapter, PROMPT, n - 1,
        [Knockout()] + [Knockout("attn", window_layers(s, 2, 2)) for s in (0, 1, 2)], 2,
    )
    mask = set(attrs)
    tops = adapter.project_to_vocab(states).topk(10).indices
    ars = [sum(int(i) in mask for i in row) / 10 for row in tops]
    assert res.ar_clean == pytest.approx(ars[0])
    assert res.ar["attn"] == pytest.approx(ars[1:])
    assert res.decline["attn"] == pytest.approx([ars[0] - a for a in ars[1:]])
    assert window_layers(1, 2, 2) == (1, 2) and window_layers(2, 2, 2) == (2,) and window_layers(0, 0, 3) == ()


def test_knockout_bad_input() -> None:
    adapter = tiny_adapter("gpt2")
    n = len(adapter.tokenizer(PROMPT)["input_ids"])
    with pytest.raises(PositionOutOfRangeError):
        knockout_states(adapter, PROMPT, n, [Knockout()], 1)
    with pytest.raises(LayerOutOfRangeError):
        knockout_states(adapter, PROMPT, 0, [Knockout("mlp", (7,))], 1)
    with pytest.raises(ValueError, match="Unknown knock-out kind"):
        Knockout("resid", (1,))
    with pytest.raises(ValueError, match="after the evaluation layer"):
        knockout_decline(adapter, PROMPT, 0, [1, 2], eval_layer=1, starts=[2])
    with pytest.raises(ValueError, match="at least one"):
        knockout_states(adapter, PROMPT, 0, [], 1)
