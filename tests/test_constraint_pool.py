"""RETS constraint-subject pools: files of names or records, narrowed to the request's relation."""

from __future__ import annotations

import json

import pytest

from factscope.edit import EditRequest, edit
from factscope.edit.constraints import SubjectPoolError, constraint_subjects, load_subject_pool
from factscope.testing import same_weights, tiny_adapter, weights_snapshot

REQUEST = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French", relation_id="P103")


def test_pool_from_knowns_records_keeps_the_request_relation(tmp_path) -> None:
    records = [{"subject": "Danielle Darrieux", "relation_id": "P103"}, {"subject": "Jean Gabin", "relation_id": "P103"},
               {"subject": "Toyota", "relation_id": "P17"}, {"subject": "Jean Gabin", "relation_id": "P103"},
               {"requested_rewrite": {"subject": "Edith Piaf", "relation_id": "P103"}}]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(records))
    pool = load_subject_pool(path)
    assert pool[2] == ("Toyota", "P17") and pool[4] == ("Edith Piaf", "P103")
    # own subject dropped, duplicates merged, other relations left out
    assert constraint_subjects(REQUEST, 10, pool=pool) == ["Jean Gabin", "Edith Piaf"]
    other = EditRequest("{} is located in", "Angola", "Asia", relation_id="P30")  # no P30 subject: whole pool
    assert constraint_subjects(other, 10, pool=pool) == ["Danielle Darrieux", "Jean Gabin", "Toyota", "Edith Piaf"]


def test_pool_of_plain_names_and_seeded_sampling(tmp_path) -> None:
    path = tmp_path / "names.json"
    path.write_text(json.dumps([f"Person {i}" for i in range(20)]))
    pool = load_subject_pool(path)
    first, again = constraint_subjects(REQUEST, 5, seed=3, pool=pool), constraint_subjects(REQUEST, 5, seed=3, pool=pool)
    assert first == again and len(first) == 5 and first != constraint_subjects(REQUEST, 5, seed=4, pool=pool)


@pytest.mark.parametrize("content, message", [("{", "cannot be read"), ('{"a": 1}', "must be a JSON list"),
                                               ("[]", "is empty"), ('[{"subject": ""}]', "record 0")])
def test_bad_pool_files_are_refused(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SubjectPoolError, match=message):
        load_subject_pool(path)


def test_rets_reads_the_pool_before_any_work(tmp_path) -> None:
    adapter = tiny_adapter("llama")
    before = weights_snapshot(adapter)
    with pytest.raises(SubjectPoolError):
        edit(adapter, REQUEST, editor="rets", layer=2, constraint_source="template", constraint_pool=str(tmp_path / "missing.json"))
    assert same_weights(adapter, before)
    path = tmp_path / "pool.json"
    path.write_text(json.dumps([{"subject": "Jean Gabin", "relation_id": "P103"}, {"subject": "Toyota", "relation_id": "P17"}]))
    delta = edit(adapter, REQUEST, editor="rets", layer=2, constraint_source="template", constraint_pool=str(path), v_steps=2, context_lengths=[[3, 1]],
                 mom2_n_tokens=64)
    assert delta.metadata["n_subject_constraints"] == 1


def test_relation_templates_add_constraint_keys(tmp_path) -> None:
    records = [{"subject": "Jean Gabin", "relation_id": "P103", "template": "{} is a native speaker of"},
               {"subject": "Edith Piaf", "relation_id": "P103", "template": "The native language of {} is"},
               {"subject": "Alain Delon", "relation_id": "P103", "template": "The native language of {} is"},
               {"subject": "Toyota", "relation_id": "P17", "template": "{}"}]
    path = tmp_path / "knowns.json"
    path.write_text(json.dumps(records))
    from factscope.edit.constraints import load_relation_templates

    assert load_relation_templates(path) == {"P103": ["{} is a native speaker of", "The native language of {} is"]}
    adapter = tiny_adapter("llama")
    fast = dict(layer=2, v_steps=2, context_lengths=[[3, 1]], mom2_n_tokens=64, constraint_source="template", constraint_pool=str(path))
    own = edit(adapter, REQUEST, editor="rets", **fast)
    both = edit(adapter, REQUEST, editor="rets", constraint_templates="pool", **fast)
    assert own.metadata["n_subject_constraints"] == 3  # 3 other P103 subjects × the request's template
    assert both.metadata["n_subject_constraints"] == 9  # × (own + 2 pool templates)
    with pytest.raises(ValueError, match="constraint_pool"):
        edit(adapter, REQUEST, editor="rets", layer=2, constraint_templates="pool")
