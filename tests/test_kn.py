"""KN (knowledge neurons): integrated gradients, neuron selection and the value-vector edit on tiny models."""

from __future__ import annotations

import pytest
import torch

from factscope.edit import EditRequest, edit
from factscope.edit.kn import KNHyperParams, coarse_neurons, integrated_gradients, select_neurons
from factscope.hooks import Site, SiteTrace
from factscope.testing import assert_edit_contract, same_weights, sharpened_tiny_adapter, tiny_adapter, weights_snapshot

REQ = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French")
FAST = dict(ig_steps=4, context_lengths=[[3, 2]], adaptive_threshold=0.3)


pytestmark = pytest.mark.usefixtures("isolated_cache")


def _prob(adapter, ids, token, layer=None, scale=1.0) -> float:
    def scale_last(_site, x):
        x = x.clone()
        x[:, -1] = x[:, -1] * scale
        return x

    edits = {Site("mlp_key", layer): scale_last} if layer is not None else {}
    with torch.no_grad(), SiteTrace(adapter, edit=edits):
        logits = adapter.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return float(torch.softmax(logits.float(), -1)[token])


def test_attributions_sum_to_the_probability_change_within_the_riemann_error() -> None:
    adapter = sharpened_tiny_adapter()
    text = "Paris is the capital of"
    ids = adapter.tokenizer(text)["input_ids"]
    with torch.no_grad():
        token = int(adapter.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    full = _prob(adapter, ids, token)
    errors = {}
    for steps in (1, 100):
        scores = integrated_gradients(adapter, text, token, steps=steps)
        errors[steps] = [abs(float(scores[layer].sum()) - (full - _prob(adapter, ids, token, layer, 0.0)))
                         for layer in range(adapter.n_layers)]
    biggest = max(range(adapter.n_layers), key=lambda l: abs(full - _prob(adapter, ids, token, l, 0.0)))
    change = abs(full - _prob(adapter, ids, token, biggest, 0.0))
    assert change > 1e-4
    assert errors[100][biggest] < 0.03 * change  # completeness, up to the O(1/m) Riemann error
    assert errors[1][biggest] > errors[100][biggest]  # which shrinks with more steps


def test_all_layers_in_one_batch_equal_one_layer_at_a_time() -> None:
    adapter = sharpened_tiny_adapter("gpt2")
    together = integrated_gradients(adapter, "The mother tongue of Danielle Darrieux is", 7, steps=5)
    apart = integrated_gradients(adapter, "The mother tongue of Danielle Darrieux is", 7, steps=5, layers_per_batch=1)
    assert torch.allclose(together, apart, atol=1e-7, rtol=1e-5)
    assert together.shape == (adapter.n_layers, adapter.d_mlp)


def test_selection_thresholds_share_and_cap() -> None:
    scores = torch.tensor([[0.0, 1.0, 0.25], [0.1, 0.5, -2.0]])
    assert coarse_neurons(scores, [3, 7], 0.2) == {(3, 1): 1.0, (3, 2): 0.25, (7, 1): 0.5}
    prompts = [{(3, 1): 1.0, (7, 1): 0.5}, {(3, 1): 0.8, (5, 0): 2.0}, {(3, 1): 0.9, (7, 1): 0.9}]
    assert select_neurons(prompts, share=0.5, max_neurons=5) == ([(3, 1), (7, 1)], False)  # (5, 0): 1 of 3
    assert select_neurons(prompts, share=0.5, max_neurons=1) == ([(3, 1)], False)  # cap keeps the best mean
    assert select_neurons([{(1, 1): 1.0}, {(2, 2): 3.0}], share=0.5, max_neurons=5) == ([(2, 2), (1, 1)], True)
    assert select_neurons([], share=0.5, max_neurons=5) == ([], False)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_kn_delta_changes_only_the_selected_neurons_value_vectors(arch: str) -> None:
    adapter = sharpened_tiny_adapter(arch)
    before = weights_snapshot(adapter)
    delta = assert_edit_contract(adapter, lambda: edit(adapter, [REQ], editor="kn", probe="off",
                                                       hparams=KNHyperParams.for_model(adapter).override(**FAST)))
    neurons = {tuple(n) for n in delta.metadata["knowledge_neurons"][0]["neurons"]}
    assert 1 <= len(neurons) <= 5
    for entry in delta.entries:
        dense = entry.dense()
        changed = {(entry.layer, int(c)) for c in torch.nonzero(dense.abs().sum(0)).flatten()}
        assert changed == {n for n in neurons if n[0] == entry.layer}
        emb = adapter.embedding.weight
        new = adapter.tokenizer(" English")["input_ids"][0]
        old = adapter.tokenizer(" French")["input_ids"][0]
        for _, unit in changed:  # the column moves by scale * (e(o*) - e(o))
            assert torch.allclose(dense[:, unit], 2.0 * (emb[new] - emb[old]), atol=1e-6)
    delta.apply(adapter)
    for entry in delta.entries:  # stored in the module's own orientation (GPT-2's Conv1D keeps (in, out))
        w = adapter.mlp_down_weight(entry.layer)
        stored = before[_param_name(adapter, w.parameter)]
        assert torch.allclose(w.matrix - (stored.T if w.transposed else stored), entry.dense(), atol=1e-6)
    delta.revert(adapter)
    assert same_weights(adapter, before)  # bit-exact


def _param_name(adapter, parameter) -> str:
    return next(name for name, p in adapter.model.named_parameters() if p is parameter)


def test_kn_through_the_editor_api_and_hparams_validation() -> None:
    adapter = tiny_adapter("llama")
    delta = edit(adapter, [REQ], editor="kn", probe="off", **FAST)
    assert delta.metadata["editor"] == "kn"
    with pytest.raises(ValueError, match="erase"):
        KNHyperParams().override(erase="both")
    with pytest.raises(ValueError, match="share"):
        KNHyperParams().override(share=1.0)
    assert KNHyperParams().override(layers="all").layers == "all"  # --set layers=all / layers=[1, 2] / layers=1,2
    assert KNHyperParams().override(layers="[1, 2]").layers == [1, 2] == KNHyperParams().override(layers="1,2").layers
