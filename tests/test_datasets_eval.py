"""Dataset loaders (COUNTERFACT, flat, zsRE, examples), the relation table and model-free supplements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factscope.datasets import DatasetFormatError, RELATIONS, detect_format, load_cases
from factscope.datasets.counterfact import example_facts_path, load_counterfact, load_flat_counterfact
from factscope.datasets.relations import fits_subject_of, relation_name
from factscope.datasets.supplements import (
    RELATION_PARAPHRASES,
    r_specificity_prompts,
    relation_prompts,
    relation_requests,
    relation_templates,
)
from factscope.datasets.zsre import load_zsre
from factscope.evaluate.fixtures import tiny_counterfact_records, write_json

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "counterfact" / "counterfact_500.json").is_file(), reason="shared data absent")


@needs_data
def test_counterfact_original_format():
    cases = load_counterfact(DATA / "counterfact" / "counterfact_500.json", n=5)
    assert len(cases) == 5
    first = cases[0]
    assert first.request.prompt == "{} is located in" and first.subject == "Angola"
    assert (first.target_new, first.target_true, first.relation_id) == ("Antarctica", "Africa", "P30")
    assert len(first.paraphrase_prompts) == 2 and len(first.neighborhood_prompts) == 10
    assert len(first.generation_prompts) == 10 and len(first.attribute_prompts) == 10
    assert first.neighbour_object == "Africa"


@needs_data
def test_flat_format_template_replaces_first_occurrence():
    cases = load_flat_counterfact(DATA / "counterfact" / "counterfact-val.json", n=50)
    for case in cases:
        assert case.prompt.count("{}") == 1
        assert case.filled.startswith(case.prompt.split("{}")[0] + case.subject)
        assert case.neighborhood_target is not None and case.relation_id is None


def test_flat_template_with_repeated_subject(tmp_path):
    rec = {"case_id": 1, "prompt": "Paris, the capital, is Paris", "subject": "Paris", "target_new": "Rome",
           "ground_truth": "France", "rephrase_prompt": "Paris x", "locality_prompt": "Berlin is", "locality_ground_truth": "Germany"}  # fmt: skip
    case = load_flat_counterfact(write_json([rec], tmp_path / "f.json"))[0]
    assert case.prompt == "{}, the capital, is Paris"
    assert case.neighbour_object == "Germany"


@needs_data
def test_zsre_format():
    cases = load_zsre(DATA / "zsre" / "zsre_eval_1037.json", n=20)
    assert cases[0].prompt == "When was the inception of {}?"
    assert cases[0].target_new == "2006" and cases[0].answers == ("1998",)
    assert cases[0].request.target_true == "1998"
    assert all(c.loc_prompt and c.loc_answer and c.rephrase_prompt for c in cases)


@needs_data
@pytest.mark.parametrize(
    "name, fmt", [("counterfact/counterfact_500.json", "counterfact"), ("counterfact/counterfact-val.json", "flat"), ("zsre/zsre_eval_1037.json", "zsre")]
)
def test_auto_detection(name, fmt):
    records = json.loads((DATA / name).read_text())
    assert detect_format(records[0]) == fmt
    assert load_cases(DATA / name, n=3)[0].source_format == fmt


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r["requested_rewrite"].pop("subject"), "requested_rewrite.subject"),
        (lambda r: r["requested_rewrite"]["target_new"].update(str="   "), "requested_rewrite.target_new.str"),
        (lambda r: r["requested_rewrite"].update(prompt="{} and {} is"), "requested_rewrite.prompt"),
        (lambda r: r.update(paraphrase_prompts="not a list"), "paraphrase_prompts"),
        (lambda r: r.update(neighborhood_prompts=["ok", 3]), "neighborhood_prompts[1]"),
        (lambda r: r["requested_rewrite"]["target_new"].update(str="Japan"), "requested_rewrite.target_new.str"),  # = target_true
    ],
)
def test_malformed_counterfact_names_file_record_field(tmp_path, mutate, field):
    records = tiny_counterfact_records()
    mutate(records[2])
    path = write_json(records, tmp_path / "bad.json")
    with pytest.raises(DatasetFormatError) as err:
        load_counterfact(path)
    msg = str(err.value)
    assert str(path) in msg and "record 2" in msg and repr(field) in msg


def test_malformed_flat_and_zsre(tmp_path):
    flat = [{"case_id": 7, "prompt": "X is in", "subject": "Y", "target_new": "a", "ground_truth": "b"}]
    with pytest.raises(DatasetFormatError, match=r"record 0 \(case_id 7\) field 'prompt' does not contain its subject"):
        load_flat_counterfact(write_json(flat, tmp_path / "f.json"))
    zs = [{"subject": "S", "src": "What is S?", "alt": "x", "answers": ["y"], "rephrase": "S?", "loc": "q"}]
    with pytest.raises(DatasetFormatError, match="record 0 field 'loc_ans'"):
        load_zsre(write_json(zs, tmp_path / "z.json"))


def test_unreadable_files(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_cases(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        load_cases(tmp_path / "broken.json")
    write_json({"a": 1}, tmp_path / "obj.json")
    with pytest.raises(DatasetFormatError, match="JSON list"):
        load_cases(tmp_path / "obj.json")
    write_json([{"x": 1}], tmp_path / "unknown.json")
    with pytest.raises(DatasetFormatError, match="matches no known format"):
        load_cases(tmp_path / "unknown.json")


def test_repeated_case_ids_rejected(tmp_path):
    records = tiny_counterfact_records()
    records[1]["case_id"] = records[0]["case_id"]
    with pytest.raises(DatasetFormatError, match="repeats case_id"):
        load_counterfact(write_json(records, tmp_path / "dup.json"))


def test_example_facts_format(tmp_path):
    records = tiny_counterfact_records()[:2]
    records[0]["other_relation_prompts"] = [{"prompt": "Danielle Darrieux was born in", "relation_id": "P19"}, {"prompt": "{} plays", "relation_id": "P641"}]
    path = write_json(records, tmp_path / "ex.json")
    assert detect_format(records[0]) == "examples"
    case = load_cases(path)[0]
    assert case.source_format == "examples"
    assert [p.prompt for p in case.other_relation_prompts] == ["Danielle Darrieux was born in", "Danielle Darrieux plays"]
    # given prompts are used as they are for R-Specificity
    assert r_specificity_prompts(case, relation_templates([case]), k=10) == list(case.other_relation_prompts)
    records[1]["other_relation_prompts"] = [{"prompt": "Someone else was born in"}]
    with pytest.raises(DatasetFormatError, match="other_relation_prompts\\[0\\].prompt"):
        load_cases(write_json(records, tmp_path / "ex2.json"), format="examples")


def test_bundled_example_facts_load_when_present():
    path = example_facts_path()
    if not path.is_file():
        pytest.skip("factscope/data/example_facts.json not written yet")
    cases = load_cases(None, format="examples")
    assert cases and all(c.request.validate() for c in cases)


@needs_data
def test_relation_table_covers_datasets():
    counterfact = json.loads((DATA / "counterfact" / "counterfact_500.json").read_text())
    ids = {r["requested_rewrite"]["relation_id"] for r in counterfact}
    ids |= {r["relation_id"] for r in json.loads((DATA / "knowns" / "known_1000.json").read_text())}
    assert ids <= set(RELATIONS)
    assert relation_name("P103") == "native language"
    for info in RELATIONS.values():
        assert info.template.count("{}") == 1 and info.name


def test_type_rule():
    assert fits_subject_of("P1412", "P103")  # person → person
    assert fits_subject_of("P19", "P413")  # athlete is a person
    assert not fits_subject_of("P413", "P19")  # a general person is not an athlete
    assert not fits_subject_of("P36", "P103")  # no capital of a person
    assert fits_subject_of("P30", "P36")  # a country is a place
    assert not fits_subject_of("P103", "P103")


@needs_data
def test_r_specificity_prompts_rule():
    cases = load_counterfact(DATA / "counterfact" / "counterfact_500.json")
    templates = relation_templates(cases)
    assert templates["P103"] == "The mother tongue of {} is"  # the most frequent rewrite template
    for case in cases[:60]:
        prompts = r_specificity_prompts(case, templates, k=4)
        assert len(prompts) <= 4
        assert len({p.prompt for p in prompts}) == len(prompts)
        for p in prompts:
            assert case.subject in p.prompt and p.relation_id != case.relation_id
            assert fits_subject_of(p.relation_id, case.relation_id)
        assert prompts == r_specificity_prompts(case, templates, k=4)  # deterministic
    person = next(c for c in cases if c.relation_id == "P103")
    assert {p.relation_id for p in r_specificity_prompts(person, templates, k=50)} <= {
        "P19", "P20", "P27", "P39", "P101", "P106", "P108", "P140", "P937", "P1412"}  # fmt: skip


def test_relation_prompts_and_requests(tmp_path):
    case = load_cases(write_json(tiny_counterfact_records(), tmp_path / "c.json"))[0]
    rel = relation_prompts(case)
    assert rel.name == "native language"
    assert rel.add_prompt == "The relation between Danielle Darrieux and English is"
    assert rel.remove_prompt == "The relation between Danielle Darrieux and French is"
    assert len(rel.add_paraphrases) == len(RELATION_PARAPHRASES)
    add, remove = relation_requests(case)
    assert add.filled == rel.add_prompt and add.target_new == "native language"
    assert remove.filled == rel.remove_prompt and remove.target_new == "None"
