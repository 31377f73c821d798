"""Every architecture: sites resolve, hooks are transparent, weights read the right way round."""

from __future__ import annotations

import pytest
import torch

from factscope.hooks import Site, SiteTrace, zero_positions
from factscope.models import ArchitectureSpec, LayerOutOfRangeError, ModelAdapter, UnknownArchitectureError
from factscope.testing import tiny_model

PROMPTS = ["The capital of France is Paris", "Danielle Darrieux was born in"]
KINDS = ("resid", "attn", "mlp", "mlp_key", "attn_key")


def _batch(adapter: ModelAdapter):
    return adapter.tokenizer(PROMPTS, return_tensors="pt", padding=True)


def _all_sites(adapter: ModelAdapter) -> list[str]:
    return ["embed"] + [f"{k}.{l}" for k in KINDS for l in range(adapter.n_layers)]


def test_all_sites_resolve(any_tiny: ModelAdapter) -> None:
    for name in _all_sites(any_tiny):
        assert isinstance(any_tiny.module(name), torch.nn.Module)


def test_hooked_forward_equals_plain_forward(any_tiny: ModelAdapter) -> None:
    batch = _batch(any_tiny)
    plain = any_tiny.model(**batch).logits
    with SiteTrace(any_tiny, read=_all_sites(any_tiny)) as trace:
        hooked = any_tiny.model(**batch).logits
    assert (plain - hooked).abs().max().item() < 1e-5
    for kind in KINDS:
        value = trace[f"{kind}.0"]
        assert value.shape[:2] == batch["input_ids"].shape, kind


def test_replacing_activation_by_itself_changes_nothing(any_tiny: ModelAdapter) -> None:
    batch = _batch(any_tiny)
    plain = any_tiny.model(**batch).logits
    identity = {name: (lambda _site, x: x.clone()) for name in _all_sites(any_tiny)}
    with SiteTrace(any_tiny, edit=identity):
        patched = any_tiny.model(**batch).logits
    assert (plain - patched).abs().max().item() < 1e-5


def test_down_projection_reproduces_module_output(any_tiny: ModelAdapter) -> None:
    batch = _batch(any_tiny)
    layer = 1
    down = any_tiny.module(Site("mlp_key", layer))
    captured = {}
    handle = down.register_forward_hook(lambda _m, _i, out: captured.setdefault("out", out))
    try:
        with SiteTrace(any_tiny, read=[Site("mlp_key", layer)]) as trace:
            any_tiny.model(**batch)
    finally:
        handle.remove()
    key = trace[Site("mlp_key", layer)]
    weight = any_tiny.mlp_down_weight(layer)
    bias = getattr(down, "bias", None)
    recon = key @ weight.matrix.T + (bias if bias is not None else 0)
    out = captured["out"].reshape(recon.shape)
    assert (recon - out).abs().max().item() < 1e-5


def test_weight_orientation_comes_from_module_type() -> None:
    model, tok = tiny_model("gpt2")
    adapter = ModelAdapter(model, tok)
    weight = adapter.mlp_down_weight(0)
    assert weight.transposed  # Conv1D stores (in, out)
    assert weight.matrix.shape == (adapter.d_model, adapter.d_mlp)
    llama = ModelAdapter(*tiny_model("llama"))
    assert not llama.mlp_down_weight(0).transposed
    assert llama.mlp_down_weight(0).matrix.shape == (llama.d_model, llama.d_mlp)


def test_projection_of_last_layer_equals_logits(any_tiny: ModelAdapter) -> None:
    batch = _batch(any_tiny)
    last = any_tiny.n_layers - 1
    with SiteTrace(any_tiny, read=[Site("resid", last)]) as trace:
        logits = any_tiny.model(**batch).logits
    projected = any_tiny.project_to_vocab(trace[Site("resid", last)])
    assert (projected - logits).abs().max().item() < 1e-4


def test_stop_aborts_after_deepest_site(any_tiny: ModelAdapter) -> None:
    batch = _batch(any_tiny)
    calls = []
    last_layer = any_tiny.module(Site("resid", any_tiny.n_layers - 1))
    handle = last_layer.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = "not returned"
        with SiteTrace(any_tiny, read=["mlp_key.1"], stop=True) as trace:
            result = any_tiny.model(**batch)
    finally:
        handle.remove()
    assert result == "not returned" and not calls
    assert trace["mlp_key.1"].shape[-1] == any_tiny.d_mlp


def test_hooks_removed_even_on_error(any_tiny: ModelAdapter) -> None:
    def boom(_site, _x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with SiteTrace(any_tiny, edit={"mlp.0": boom}):
            any_tiny.model(**_batch(any_tiny))
    any_tiny.model(**_batch(any_tiny))  # no hook left behind


def test_zero_positions_only_changes_later_tokens(any_tiny: ModelAdapter) -> None:
    batch = _batch(any_tiny)
    plain = any_tiny.model(**batch).logits
    with SiteTrace(any_tiny, edit={"mlp.1": zero_positions([2])}):
        knocked = any_tiny.model(**batch).logits
    assert (plain[:, :2] - knocked[:, :2]).abs().max().item() < 1e-6
    assert (plain[:, 2:] - knocked[:, 2:]).abs().max().item() > 0


def test_parallel_residual_flags() -> None:
    from factscope.testing import tiny_adapter

    assert tiny_adapter("gptj").parallel_residual
    assert tiny_adapter("gpt_neox").parallel_residual
    assert not tiny_adapter("llama").parallel_residual


def test_unknown_architecture_has_clear_error() -> None:
    model, tok = tiny_model("llama")
    model.config.model_type = "mystery"
    with pytest.raises(UnknownArchitectureError, match="ArchitectureSpec"):
        ModelAdapter(model, tok)


def test_unknown_architecture_with_user_spec() -> None:
    model, tok = tiny_model("llama")
    model.config.model_type = "mystery"
    spec = ArchitectureSpec(
        name="mystery", layers="model.layers", embed="model.embed_tokens", final_norm="model.norm",
        unembed="lm_head", attn="self_attn", attn_out_proj="self_attn.o_proj", mlp="mlp", mlp_down="mlp.down_proj",
    )
    adapter = ModelAdapter(model, tok, architecture=spec)
    assert adapter.n_layers == 4


def test_layer_out_of_range(any_tiny: ModelAdapter) -> None:
    with pytest.raises(LayerOutOfRangeError, match="valid: 0..3"):
        any_tiny.module(Site("mlp", 4))
    with pytest.raises(LayerOutOfRangeError):
        any_tiny.mlp_down_weight(-1)


def test_site_parsing() -> None:
    assert Site.parse("mlp_key.3") == Site("mlp_key", 3)
    assert str(Site("resid", 0)) == "resid.0"
    assert Site.parse("embed") == Site("embed")
    with pytest.raises(ValueError):
        Site.parse("bogus.1")
    with pytest.raises(ValueError):
        Site("mlp")


def test_fingerprint_stable_and_model_specific() -> None:
    from factscope.testing import tiny_adapter

    a, b = tiny_adapter("llama", seed=0), tiny_adapter("llama", seed=0)
    c = tiny_adapter("llama", seed=1)
    assert a.fingerprint == b.fingerprint != c.fingerprint
