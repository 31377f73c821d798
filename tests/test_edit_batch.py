"""MEMIT, PMET (with ablations) and FT-L on tiny models: contracts and what each stores."""

from __future__ import annotations

import pytest
import torch

from factscope.edit import EditRequest, edit
from factscope.edit.keys import site_at_lookup
from factscope.hooks import Site
from factscope.testing import assert_edit_contract, example_requests, tiny_adapter

FAST = dict(context_lengths=[[3, 2]], v_steps=4, mom2_n_tokens=64)
REQS = example_requests(3)
pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gptj"])
def test_memit_updates_each_layer_and_reverts(arch) -> None:
    adapter = tiny_adapter(arch)
    delta = assert_edit_contract(adapter, lambda: edit(adapter, REQS, editor="memit", layers=[1, 2], **FAST))
    assert [(e.site_kind, e.layer) for e in delta.entries] == [("mlp_key", 1), ("mlp_key", 2)]
    assert delta.metadata["layers"] == [1, 2] and len(delta.metadata["requests"]) == 3


def test_memit_single_layer_with_no_prior_stores_the_residual() -> None:
    """With λ→0 and one layer, the update moves h^L at each subject's last token to its target."""
    adapter = tiny_adapter("llama")
    import factscope.edit.memit as memit_mod

    captured = {}
    real = memit_mod.chunked_values

    def spy(*a, **k):
        captured["v"] = real(*a, **k)
        return captured["v"]

    memit_mod.chunked_values, saved = spy, memit_mod.chunked_values
    try:
        delta = edit(adapter, REQS, editor="memit", layers=[2], mom2_update_weight=1e-9, context_lengths=[[3, 0]],
                     v_steps=4, mom2_n_tokens=64)
    finally:
        memit_mod.chunked_values = saved
    site = Site("resid", 2)
    with delta.applied(adapter):
        h = site_at_lookup(adapter, REQS, [site], lookup="subject_last")[site]
    torch.testing.assert_close(h, captured["v"].target("resid"), rtol=1e-3, atol=1e-3)


def test_pmet_ablations_change_what_is_updated() -> None:
    adapter = tiny_adapter("llama")
    base = edit(adapter, REQS, editor="pmet", layers=[1, 2], **FAST)
    assert {e.site_kind for e in base.entries} == {"mlp_key"}
    with_attn = edit(adapter, REQS, editor="pmet", layers=[1, 2], update_attn=True, **FAST)
    assert {e.site_kind for e in with_attn.entries} == {"mlp_key", "attn_key"}
    even = edit(adapter, REQS, editor="pmet", layers=[1, 2], spread="even", **FAST)
    legacy = edit(adapter, REQS, editor="pmet", layers=[1, 2], even_spread=True, **FAST)  # older key, same knob
    assert legacy.metadata["hparams"]["spread"] == "even" and "even_spread" not in legacy.metadata["hparams"]
    assert torch.equal(legacy.entries[0].dense(), even.entries[0].dense())
    no_attn = edit(adapter, REQS, editor="pmet", layers=[1, 2], no_attn_delta=True, **FAST)
    first = base.entries[0].dense()
    assert not torch.allclose(first, even.entries[0].dense())
    assert not torch.allclose(first, no_attn.entries[0].dense())
    # square-root spread puts a larger share of the residual into the first layer than even spread
    assert first.norm() > even.entries[0].dense().norm()
    with pytest.raises(ValueError):
        edit(adapter, REQS, editor="pmet", update_attn=True, no_attn_delta=True, **FAST)


def test_ft_is_dense_and_bounded() -> None:
    adapter = tiny_adapter("gpt2")
    delta = assert_edit_contract(adapter, lambda: edit(adapter, REQS[:2], editor="ft", layer=1, norm_constraint=1e-3, ft_steps=5))
    (entry,) = delta.entries
    assert entry.v is None and entry.dense().abs().max() <= 1e-3 + 1e-9 and entry.dense().abs().max() > 0


def test_batch_editor_validates_all_requests_first(monkeypatch) -> None:
    adapter = tiny_adapter("llama")
    import factscope.edit.memit as memit_mod

    monkeypatch.setattr(memit_mod, "chunked_values", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ValueError):
        edit(adapter, [*REQS, EditRequest("no slot", "x", "y")], editor="memit", layers=[1, 2], **FAST)
    with pytest.raises(ValueError, match="out of range"):
        edit(adapter, REQS, editor="memit", layers=[1, 9], **FAST)


def test_value_chunk_zero_is_chosen_for_the_device() -> None:
    from factscope.edit.memit import MEMITHyperParams, default_value_chunk

    assert MEMITHyperParams().value_chunk == 0
    assert default_value_chunk("cpu", 576, 30) == 16
    assert default_value_chunk("cuda", 576, 30) == 128  # SmolLM2-135M
    assert default_value_chunk("cuda", 1600, 48) == 28  # GPT-2 XL
    assert default_value_chunk("cuda", 4096, 32) == 16  # Llama-2-7B
    with pytest.raises(ValueError, match="value_chunk"):
        MEMITHyperParams(value_chunk=-1).validate()


def test_chunking_does_not_change_the_values() -> None:
    """Requests are independent, so the value chunk is a speed knob only."""
    adapter = tiny_adapter("llama")
    deltas = [edit(adapter, REQS, editor="memit", layers=[1, 2], value_chunk=c, **FAST) for c in (1, 0)]
    for a, b in zip(deltas[0].entries, deltas[1].entries):
        torch.testing.assert_close(a.dense(), b.dense(), rtol=1e-4, atol=1e-6)
