"""The side-effect probe: silent on a harmless delta, loud on a destructive one."""

from __future__ import annotations

import warnings

import pytest
import torch

from factscope.edit import edit
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.probe import (EditSideEffectError, EditSideEffectWarning, check_side_effects, side_effect_probe,
                                  side_effect_summary)
from factscope.testing import example_requests, tiny_adapter


def _weights(adapter):
    return {n: p.detach().clone() for n, p in adapter.model.named_parameters()}


def _zero_delta(adapter) -> WeightDelta:
    shape = adapter.mlp_down_weight(1).matrix.shape
    return WeightDelta([DeltaEntry("mlp_key", 1, torch.zeros(shape))])


def _wrecking_delta(adapter) -> WeightDelta:
    generator = torch.Generator().manual_seed(0)
    entries = []
    for layer in range(adapter.n_layers):
        W = adapter.mlp_down_weight(layer).matrix
        entries.append(DeltaEntry("mlp_key", layer, torch.randn(W.shape, generator=generator) * 50 * W.abs().max()))
    return WeightDelta(entries)


def test_a_zero_delta_changes_nothing_the_probe_sees():
    adapter = tiny_adapter("llama")
    report = side_effect_probe(adapter, _zero_delta(adapter), example_requests(2))
    assert not report.wrecked and report.reasons == []
    assert report.changed("neutral")[0] == 0 and report.changed("other subject") == (0, 6)
    assert report.perplexity_after == pytest.approx(report.perplexity_before)


def test_a_destructive_delta_is_flagged_and_strict_mode_raises():
    adapter = tiny_adapter("llama")
    before = _weights(adapter)
    delta = _wrecking_delta(adapter)
    report = side_effect_probe(adapter, delta, example_requests(1))
    assert report.wrecked and any("perplexity" in r or "neutral prompts" in r for r in report.reasons)
    with pytest.raises(EditSideEffectError, match="destructive"):
        check_side_effects(adapter, delta, example_requests(1), "strict")
    with pytest.warns(EditSideEffectWarning):
        check_side_effects(adapter, delta, example_requests(1), "warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_side_effects(adapter, delta, example_requests(1), "record")
    assert side_effect_summary(delta.metadata["side_effects"])["wrecked"] is True
    after = _weights(adapter)
    assert all(torch.equal(before[n], after[n]) for n in before)  # the probe leaves the model unedited


def test_edit_records_the_probe_in_the_delta_metadata(isolated_cache):
    adapter = tiny_adapter("gpt2")
    delta = edit(adapter, example_requests(1), editor="rome", probe="record", v_steps=3)
    summary = side_effect_summary(delta.metadata["side_effects"])
    assert set(summary) >= {"wrecked", "perplexity_ratio", "neutral_top1_changed", "other_subject_target_top1"}
    assert "side_effects" not in edit(adapter, example_requests(1), editor="rome", probe="off", v_steps=3).metadata
    with pytest.raises(ValueError, match="probe mode"):
        edit(adapter, example_requests(1), editor="rome", probe="loud")
