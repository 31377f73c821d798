"""Editors on tiny random models: contracts (validation first, model untouched, deltas) and hparams."""

from __future__ import annotations

import json

import pytest
import torch

from factscope.edit import EDITORS, EditRequest, EditRequestError, WeightDelta, edit, hparams_for
from factscope.edit import values as values_mod
from factscope.edit.hparams import field_help
from factscope.edit.rome import ROMEHyperParams
from factscope.edit.rets import RETSHyperParams
from factscope.models.adapter import LayerOutOfRangeError
from factscope.testing import assert_edit_contract, same_weights, tiny_adapter, weights_snapshot

FAST = dict(context_lengths=[[3, 2]], v_steps=4, mom2_n_tokens=64)
REQ = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French")


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.mark.parametrize("editor", ["rome", "rets"])
@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox"])
def test_editor_returns_delta_and_leaves_model_alone(editor, arch) -> None:
    adapter = tiny_adapter(arch)
    delta = assert_edit_contract(adapter, lambda: edit(adapter, [REQ], editor=editor, layer=2, **FAST))
    assert isinstance(delta, WeightDelta)
    meta = delta.metadata
    assert meta["editor"] == editor and meta["model_fingerprint"] == adapter.fingerprint
    assert meta["requests"][0]["subject"] == "Danielle Darrieux" and meta["hparams"]["layer"] == 2
    entry = delta.entries[0]
    assert entry.site_kind == "mlp_key" and entry.layer == 2 and entry.v is not None and entry.u.shape[1] == 1


def test_rome_update_stores_the_value_at_the_key() -> None:
    """After the edit, the MLP output at the bare prompt's lookup token moves by exactly δ."""
    from factscope.edit.keys import site_at_lookup
    from factscope.hooks import Site

    adapter = tiny_adapter("llama")
    captured = {}
    real = values_mod.optimize_values

    def spy(*args, **kwargs):
        captured["result"] = real(*args, **kwargs)
        return captured["result"]

    import factscope.edit.rome as rome_mod

    rome_mod.optimize_values, saved = spy, rome_mod.optimize_values
    try:
        delta = edit(adapter, REQ, editor="rome", layer=1, **FAST)
    finally:
        rome_mod.optimize_values = saved
    site = Site("mlp", 1)
    before = site_at_lookup(adapter, [REQ], [site], lookup="subject_last")[site][0]
    with delta.applied(adapter):
        after = site_at_lookup(adapter, [REQ], [site], lookup="subject_last")[site][0]
    torch.testing.assert_close(after - before, captured["result"].delta["mlp"][0], rtol=1e-3, atol=1e-4)


def test_invalid_requests_raise_before_any_work(monkeypatch) -> None:
    adapter = tiny_adapter("llama")
    monkeypatch.setattr(values_mod, "optimize_values", lambda *a, **k: pytest.fail("work started"))
    bad = [
        EditRequest("The mother tongue of is", "Danielle Darrieux", "English"),
        EditRequest("The mother tongue of {} is", "Danielle Darrieux", " "),
        EditRequest("The mother tongue of {} is", "Danielle Darrieux", "French", "French"),
    ]
    for request in bad:
        with pytest.raises(EditRequestError):
            edit(adapter, [REQ, request], editor="rome", **FAST)
    with pytest.raises(LayerOutOfRangeError):
        edit(adapter, [REQ], editor="rome", layer=7, **FAST)
    with pytest.raises(ValueError, match="Unknown ROMEHyperParams"):
        edit(adapter, [REQ], editor="rome", not_a_field=1)
    with pytest.raises(ValueError, match="Unknown editor"):
        edit(adapter, [REQ], editor="nope")
    # RETS needs relation tokens after the subject
    with pytest.raises(Exception, match="ends with the subject"):
        edit(adapter, [EditRequest("The mother tongue of {}", "Danielle Darrieux", "English")], editor="rets", **FAST)


def test_exception_mid_sequence_leaves_model_unchanged(monkeypatch) -> None:
    adapter = tiny_adapter("llama")
    before = weights_snapshot(adapter)
    import factscope.edit.rome as rome_mod

    real = rome_mod.optimize_values
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(rome_mod, "optimize_values", failing)
    second = EditRequest("{} plays the sport of", "Michael Jordan", "football")
    with pytest.raises(RuntimeError, match="boom"):
        edit(adapter, [REQ, second], editor="rome", layer=1, **FAST)
    assert same_weights(adapter, before)
    assert all(type(layer).__name__ != "_CachedLayer" for layer in adapter.layers)


def test_sequential_edits_concatenate_and_revert() -> None:
    adapter = tiny_adapter("gpt2")
    second = EditRequest("{} plays the sport of", "Michael Jordan", "football")
    delta = assert_edit_contract(adapter, lambda: edit(adapter, [REQ, second], editor="rome", layer=1, **FAST))
    assert len(delta.entries) == 2 and delta.metadata["sequential"]


def test_rets_subject_constraints_change_the_update() -> None:
    adapter = tiny_adapter("llama")
    with_sc = edit(adapter, REQ, editor="rets", layer=2, **FAST)
    without = edit(adapter, REQ, editor="rets", layer=2, no_subject_constraints=True, **FAST)
    assert with_sc.metadata["n_subject_constraints"] > 0 and without.metadata["n_subject_constraints"] == 0
    assert not torch.allclose(with_sc.entries[0].dense(), without.entries[0].dense())


def test_hparams_defaults_files_and_help(tmp_path) -> None:
    adapter = tiny_adapter("llama")
    hp = hparams_for("rets", adapter)
    assert isinstance(hp, RETSHyperParams) and hp.lookup == "last"
    path = tmp_path / "h.yaml"
    path.write_text("layer: 1\nv_steps: 3\n")
    loaded = RETSHyperParams.from_file(path, adapter)
    assert loaded.layer == 1 and loaded.v_steps == 3 and loaded.kl_factor == hp.kl_factor
    (tmp_path / "h.json").write_text(json.dumps({"layer": 0.5}))
    assert ROMEHyperParams.from_file(tmp_path / "h.json").layer == 0.5
    assert ROMEHyperParams().override(v_steps="7", layer="0.3").v_steps == 7
    assert "KL" in field_help(ROMEHyperParams, "kl_factor")
    assert set(EDITORS) >= {"rome", "rets"}
    with pytest.raises(ValueError):
        ROMEHyperParams().override(v_steps="many")
