"""Post-norm architectures (Gemma-2/3): residual changes mapped through the norm, steps in RMS units."""

from __future__ import annotations

import torch

from factscope.edit.hparams import ValueOptimisation
from factscope.edit.memit import MEMITHyperParams
from factscope.edit.pmet import PMETHyperParams
from factscope.edit.rome import ROMEHyperParams
from factscope.edit.values import optimize_values
from factscope.testing import example_requests, tiny_adapter


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(-1, keepdim=True).sqrt()


def test_sandwich_norms_are_declared_for_gemma2_and_gemma3_only():
    assert tiny_adapter("gemma3_text").post_norm("mlp", 1) is not None
    assert tiny_adapter("gemma2").post_norm("attn", 0) is not None
    for arch in ("llama", "gpt2", "gemma"):
        assert tiny_adapter(arch).post_norm("mlp", 1) is None


def test_without_a_post_norm_the_site_value_is_value_plus_change():
    adapter = tiny_adapter("llama")
    value, change = torch.randn(3, adapter.d_model), torch.randn(3, adapter.d_model)
    assert torch.equal(adapter.site_value_for_residual_change("mlp", 1, value, change), value + change)


def test_post_norm_inverse_reaches_every_reachable_residual_change():
    adapter = tiny_adapter("gemma3_text")
    norm = adapter.post_norm("mlp", 2)
    with torch.no_grad():
        norm.weight.copy_(torch.randn_like(norm.weight) * 2)  # a gain far from 1, with signs
    value, other = torch.randn(4, adapter.d_model), torch.randn(4, adapter.d_model) * 7
    change = norm(other) - norm(value)  # reachable: the image of another pre-norm vector
    target = adapter.site_value_for_residual_change("mlp", 2, value, change)
    assert torch.allclose(norm(target), norm(value) + change, atol=1e-4, rtol=1e-4)
    assert torch.allclose(_rms(target), _rms(value), rtol=1e-5)  # the pre-norm magnitude is kept
    same = adapter.site_value_for_residual_change("mlp", 2, value, torch.zeros_like(value))
    assert torch.allclose(same, value, atol=1e-5)


def test_rms_units_equal_absolute_steps_scaled_by_the_value_rms(isolated_cache):
    adapter = tiny_adapter("llama")  # the units do not depend on the architecture
    request = example_requests(1)[:1]
    base = ValueOptimisation(v_steps=6, kl_factor=0.0, early_stop_nll=0.0)
    absolute = optimize_values(adapter, request, 1, kinds=("mlp",), hparams=base.override(v_lr=0.02))
    unit = float(_rms(absolute.init["mlp"]))
    relative = optimize_values(adapter, request, 1, kinds=("mlp",),
                               hparams=base.override(v_lr_units="rms", v_lr=0.02 / unit))
    scale = float(absolute.delta["mlp"].abs().max())
    assert scale > 0
    # Equal up to Adam's eps (1e-8), which is not negligible for this tiny model's small gradients;
    # unscaled steps would differ by the factor 1 / RMS (about 1,000) instead.
    assert float((relative.delta["mlp"] - absolute.delta["mlp"]).abs().max()) < 0.2 * scale


def test_gemma_families_default_to_rms_steps_and_keep_each_editors_own_defaults():
    gemma = tiny_adapter("gemma3_text")
    rome = ROMEHyperParams.for_model(gemma)
    assert (rome.v_lr_units, rome.v_lr, rome.lookup) == ("rms", 0.1, "subject_last")
    memit = MEMITHyperParams.for_model(gemma)
    assert (memit.v_lr_units, memit.v_lr) == ("rms", 0.02)  # MEMIT's own table wins over the shared one
    assert PMETHyperParams.for_model(gemma).v_lr == 0.1
    assert ROMEHyperParams.for_model(tiny_adapter("llama")).v_lr_units == "absolute"
    assert MEMITHyperParams.for_model(tiny_adapter("llama")).layers == [4 / 32, 5 / 32, 6 / 32, 7 / 32, 8 / 32]
