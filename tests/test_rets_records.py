"""RETS's K_r from records (the authors' compute_ur.py): other subjects' rewrite prompts, bare last-token keys."""

from __future__ import annotations

import json

import pytest
import torch

from factscope.edit import EditRequest, edit
from factscope.edit.constraints import (ConstraintRecord, default_constraint_records, load_constraint_records,
                                        record_constraint_keys, record_constraint_prompts)
from factscope.edit.rets import RETSHyperParams
from factscope.hooks import Site, SiteTrace
from factscope.testing import tiny_adapter

REQUEST = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French", relation_id="P103")
RECORDS = [
    {"requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux", "relation_id": "P103"}},
    {"requested_rewrite": {"prompt": "{} was born in", "subject": "Danielle Darrieux", "relation_id": "P19"}},
    {"requested_rewrite": {"prompt": "{} is a citizen of", "subject": "Jean Gabin", "relation_id": "P27"}},
    {"requested_rewrite": {"prompt": "The capital of {} is", "subject": "France", "relation_id": "P36"}},
    {"requested_rewrite": {"prompt": "{} is produced by", "subject": "iPhone", "relation_id": "P176"}},
    {"requested_rewrite": {"prompt": "{}, which is located in", "subject": "Paris", "relation_id": "P17"}},
]


def _direct_key(adapter, prompt: str, layer: int) -> torch.Tensor:
    ids = adapter.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with SiteTrace(adapter, read=[Site("mlp_key", layer)]) as trace:
        adapter.model(input_ids=ids)
    return trace[Site("mlp_key", layer)][0, -1].float()


@pytest.fixture()
def records_file(tmp_path):
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(RECORDS))
    return path


def test_prompts_leave_out_every_record_of_the_edited_subject_and_are_seeded(records_file) -> None:
    records = load_constraint_records(records_file)
    assert records[1] == ConstraintRecord("Danielle Darrieux", "{} was born in", "P19")
    prompts = record_constraint_prompts(records, REQUEST, 500, seed=0)
    assert prompts == ["Jean Gabin is a citizen of", "The capital of France is", "iPhone is produced by",
                       "Paris, which is located in"]  # both Darrieux records (any relation) are out; file order
    assert not any("Darrieux" in p for p in prompts)
    two = record_constraint_prompts(records, REQUEST, 2, seed=1)
    assert two == record_constraint_prompts(records, REQUEST, 2, seed=1) and len(two) == 2
    samples = {tuple(record_constraint_prompts(records, REQUEST, 2, seed=s)) for s in range(8)}
    assert len(samples) > 1  # the seed chooses the sample
    assert len(record_constraint_prompts(records, REQUEST, 500, keep_own=True)) == 6  # the authors' code: every record
    other = EditRequest("{} was born in", "Jean Gabin", "Paris")
    assert "Jean Gabin is a citizen of" not in record_constraint_prompts(records, other, 500)


def test_keys_equal_a_direct_hooked_read(records_file) -> None:
    adapter = tiny_adapter("llama")
    prompts = record_constraint_prompts(load_constraint_records(records_file), REQUEST, 500)
    keys = record_constraint_keys(adapter, prompts, 2)
    assert keys.shape == (4, adapter.mlp_down_weight(2).matrix.shape[1])
    for prompt, key in zip(prompts, keys):
        torch.testing.assert_close(key, _direct_key(adapter, prompt, 2), rtol=1e-4, atol=1e-5)
    # cached keys are the same; another layer reads anew
    torch.testing.assert_close(record_constraint_keys(adapter, prompts[::-1], 2), keys.flip(0))
    torch.testing.assert_close(record_constraint_keys(adapter, prompts[:1], 1)[0], _direct_key(adapter, prompts[0], 1),
                               rtol=1e-4, atol=1e-5)


def test_keys_are_reread_after_an_edit_below_the_layer(records_file) -> None:
    adapter = tiny_adapter("gpt2")
    prompts = ["Jean Gabin is a citizen of"]
    before = record_constraint_keys(adapter, prompts, 2)
    weight = adapter.mlp_down_weight(0).parameter
    with torch.no_grad():
        weight.mul_(1.5)
    try:
        after = record_constraint_keys(adapter, prompts, 2)
        torch.testing.assert_close(after[0], _direct_key(adapter, prompts[0], 2), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(before, after)
    finally:
        with torch.no_grad():
            weight.div_(1.5)


def test_rets_uses_records_by_default_and_the_file_when_given(records_file) -> None:
    adapter = tiny_adapter("llama")
    fast = dict(layer=2, v_steps=2, context_lengths=[[3, 1]], mom2_n_tokens=64, probe="off")
    delta = edit(adapter, REQUEST, editor="rets", constraint_records=str(records_file), **fast)
    assert delta.metadata["n_subject_constraints"] == 4
    assert edit(adapter, REQUEST, editor="rets", constraint_records=str(records_file), n_constraint_records=2,
                **fast).metadata["n_subject_constraints"] == 2
    shipped = [r for r in default_constraint_records() if r.subject != REQUEST.subject]
    default = edit(adapter, REQUEST, editor="rets", **fast)
    assert default.metadata["n_subject_constraints"] == len({r.prompt for r in shipped}) > 200
    template = edit(adapter, REQUEST, editor="rets", constraint_source="template", n_constraint_subjects=5, **fast)
    assert template.metadata["n_subject_constraints"] == 5


@pytest.mark.parametrize("overrides, message", [
    ({"constraint_source": "pool"}, "constraint_source must be one of"),
    ({"lookup": "subject_last"}, "last token"),
    ({"constraint_pool": "x.json"}, "constraint_source=template"),
    ({"n_constraint_records": -1}, "at least 0"),
])
def test_bad_constraint_settings_are_refused(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        RETSHyperParams().override(**overrides)


def test_the_shipped_pool_spans_relations() -> None:
    records = default_constraint_records()
    assert len({r.relation_id for r in records}) >= 30 and len({r.subject for r in records}) >= 80
    assert all(r.template.count("{}") == 1 for r in records)
