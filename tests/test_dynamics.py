"""PMET component dynamics: cosine and top-k Jaccard of h^{l-1} vs a^l / m^l."""

from __future__ import annotations

import pytest
import torch

from factscope.localize.dynamics import (
    component_dynamics,
    dynamics_per_prompt,
    jaccard_topk,
    mean_abs_change,
    stabilisation_layer,
)
from factscope.testing import tiny_adapter

PROMPTS = [
    "The capital of France is",
    "Danielle Darrieux was born in the city of",
    "Michael Jordan plays",
]


def test_jaccard_topk_hand_made() -> None:
    a = torch.tensor([[5.0, 4.0, 3.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    b = torch.tensor([[0.0, 4.0, 3.0, 5.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    # top-3: {0,1,2} vs {1,2,3} -> 2/4 ; identical rows -> 1
    assert jaccard_topk(a, b, k=3).tolist() == [0.5, 1.0]
    assert jaccard_topk(a, -a, k=2).tolist() == [0.0, 0.0]


def test_dynamics_match_an_independent_forward() -> None:
    adapter = tiny_adapter("llama")
    values = dynamics_per_prompt(adapter, PROMPTS, k=5)
    for row, prompt in enumerate(PROMPTS):
        ids = torch.tensor([adapter.tokenizer(prompt)["input_ids"]])
        captured = {}
        handles = [
            adapter.module(f"{kind}.{l}").register_forward_hook(
                lambda _m, _a, out, key=f"{kind}.{l}": captured.__setitem__(key, (out[0] if isinstance(out, tuple) else out)[0, -1])
            )
            for kind in ("attn", "mlp") for l in range(adapter.n_layers)
        ]
        try:
            hidden = adapter.model(input_ids=ids, output_hidden_states=True).hidden_states
        finally:
            for h in handles:
                h.remove()
        for layer in range(adapter.n_layers):
            h_in = hidden[layer][0, -1]  # embeddings for layer 0; un-normed for l < L
            for comp in ("attn", "mlp"):
                x = captured[f"{comp}.{layer}"]
                cos = torch.cosine_similarity(h_in, x, dim=0)
                assert values[f"cos.{comp}"][row, layer] == pytest.approx(float(cos), abs=1e-5)
                ta = set(adapter.project_to_vocab(h_in).topk(5).indices.tolist())
                tb = set(adapter.project_to_vocab(x).topk(5).indices.tolist())
                assert values[f"jaccard.{comp}"][row, layer] == pytest.approx(len(ta & tb) / len(ta | tb))
        # llama is sequential: h^l = h^{l-1} + a^l + m^l (checked below the last layer, whose HF output is normed)
        for layer in range(adapter.n_layers - 1):
            step = hidden[layer + 1][0, -1] - hidden[layer][0, -1]
            assert torch.allclose(step, captured[f"attn.{layer}"] + captured[f"mlp.{layer}"], atol=1e-5)


def test_component_dynamics_means_are_batch_independent() -> None:
    adapter = tiny_adapter("gpt_neox")
    one = component_dynamics(adapter, PROMPTS, k=7, batch_size=1, progress=False)
    all_ = component_dynamics(adapter, PROMPTS, k=7, batch_size=3, progress=False)
    per = dynamics_per_prompt(adapter, PROMPTS, k=7)
    for comp in ("attn", "mlp"):
        assert one.cos[comp] == pytest.approx(all_.cos[comp], abs=1e-5)
        assert one.jaccard[comp] == pytest.approx(all_.jaccard[comp], abs=1e-6)
        assert all_.cos[comp] == pytest.approx(per[f"cos.{comp}"].mean(0).tolist(), abs=1e-6)
    assert all_.n == 3 and all_.layers == list(range(adapter.n_layers))
    assert all(0.0 <= v <= 1.0 for v in all_.jaccard["mlp"])
    assert all(-1.0 <= v <= 1.0 for v in all_.cos["attn"])


def test_component_dynamics_bad_input() -> None:
    adapter = tiny_adapter("gpt2")
    with pytest.raises(ValueError):
        component_dynamics(adapter, [], progress=False)
    with pytest.raises(ValueError):
        component_dynamics(adapter, PROMPTS, k=0, progress=False)


def test_stabilisation_layer_and_movement() -> None:
    curve = [0.0, 0.5, 0.2, 0.8, 0.81, 0.82, 0.82, 0.3]
    # range 0.82, tol 0.082; the last layer is left out; changes after layer 3 are <= 0.01
    assert stabilisation_layer(curve) == 3
    assert stabilisation_layer(curve, skip_last=0) == 7
    assert stabilisation_layer([0.1, 0.1, 0.1]) == 0
    assert mean_abs_change(curve, 3, 7) == pytest.approx((0.01 + 0.01 + 0.0) / 3)
