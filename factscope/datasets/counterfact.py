"""COUNTERFACT loaders: the original format, the flattened EasyEdit format, and our example facts.

Usage::

    cases = load_counterfact("../shared/data/counterfact/counterfact_500.json", n=20)
    flat = load_flat_counterfact("../shared/data/counterfact/counterfact-val.json", n=100)
    examples = load_example_facts()            # factscope/data/example_facts.json

Original records: ``requested_rewrite{prompt (template with {}), subject, relation_id,
target_new{str}, target_true{str}}``, ``paraphrase_prompts``, ``neighborhood_prompts``,
``attribute_prompts``, ``generation_prompts``; example facts add ``other_relation_prompts``
(``[{prompt, relation_id}]``). Flattened records (``case_id, prompt, subject, target_new,
ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth``) hold a *filled*
prompt; its template replaces the first occurrence of the subject with ``{}``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from factscope.datasets._io import FieldReader, read_json_list, template_from_prompt
from factscope.datasets.errors import DatasetFormatError
from factscope.datasets.records import EditCase, OtherRelationPrompt


def parse_counterfact(record: object, index: int, source: str = "<records>", *, source_format: str = "counterfact") -> EditCase:
    """One original-format (or example-facts) record → :class:`EditCase`."""
    f = FieldReader(source, index, record)
    rewrite = f.get("requested_rewrite")
    if not isinstance(rewrite, dict):
        raise f.error("requested_rewrite", "is missing or not an object")
    subject = f.text("requested_rewrite.subject")
    template = template_from_prompt(f, "requested_rewrite.prompt", f.text("requested_rewrite.prompt"), subject)
    target_new = f.text("requested_rewrite.target_new.str")
    target_true = f.text("requested_rewrite.target_true.str")
    if target_new.strip() == target_true.strip():
        raise f.error("requested_rewrite.target_new.str", f"equals target_true ({target_new!r})")
    relation_id = f.text("requested_rewrite.relation_id", required=False)
    others = []
    raw_others = f.get("other_relation_prompts") or []
    if not isinstance(raw_others, list):
        raise f.error("other_relation_prompts", "must be a list of {prompt, relation_id} objects")
    for i, item in enumerate(raw_others):
        where = f"other_relation_prompts[{i}]"
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not item["prompt"].strip():
            raise f.error(where, "must be an object with a non-empty 'prompt'")
        prompt = item["prompt"].replace("{}", subject) if "{}" in item["prompt"] else item["prompt"]
        if subject not in prompt:
            raise f.error(f"{where}.prompt", f"does not mention the subject {subject!r}")
        others.append(OtherRelationPrompt(prompt, item.get("relation_id")))
    return EditCase(
        case_id=f.case_id(),
        prompt=template,
        subject=subject,
        target_new=target_new.strip(),
        target_true=target_true.strip(),
        relation_id=relation_id,
        paraphrase_prompts=tuple(f.text_list("paraphrase_prompts", required=False)),
        neighborhood_prompts=tuple(f.text_list("neighborhood_prompts", required=False)),
        attribute_prompts=tuple(f.text_list("attribute_prompts", required=False)),
        generation_prompts=tuple(f.text_list("generation_prompts", required=False)),
        other_relation_prompts=tuple(others),
        source_format=source_format,
    )


def parse_flat_counterfact(record: object, index: int, source: str = "<records>") -> EditCase:
    """One flattened EasyEdit record → :class:`EditCase` (one paraphrase, one neighbour)."""
    f = FieldReader(source, index, record)
    subject = f.text("subject")
    template = template_from_prompt(f, "prompt", f.text("prompt"), subject)
    target_new = f.text("target_new").strip()
    target_true = f.text("ground_truth").strip()
    if target_new == target_true:
        raise f.error("target_new", f"equals ground_truth ({target_new!r})")
    rephrase = f.text("rephrase_prompt", required=False)
    locality = f.text("locality_prompt", required=False)
    locality_truth = f.text("locality_ground_truth", required=locality is not None)
    return EditCase(
        case_id=f.case_id(),
        prompt=template,
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        paraphrase_prompts=(rephrase,) if rephrase else (),
        neighborhood_prompts=(locality,) if locality else (),
        neighborhood_target=locality_truth.strip() if locality_truth else None,
        source_format="flat",
    )


def _load(path: str | Path, n: int | None, parse, **kwargs) -> list[EditCase]:  # type: ignore[no-untyped-def]
    records = read_json_list(path)
    if n is not None:
        records = records[:n]
    cases = [parse(r, i, str(path), **kwargs) for i, r in enumerate(records)]
    seen: set = set()
    for i, case in enumerate(cases):
        if case.case_id in seen:
            raise DatasetFormatError(f"{path}: record {i} field 'case_id' repeats case_id {case.case_id!r}.")
        seen.add(case.case_id)
    return cases


def load_counterfact(path: str | Path, n: int | None = None) -> list[EditCase]:
    """Original-format COUNTERFACT (first ``n`` records)."""
    return _load(path, n, parse_counterfact)


def load_flat_counterfact(path: str | Path, n: int | None = None) -> list[EditCase]:
    """Flattened EasyEdit CounterFact (``counterfact-{edit,train,val}.json``)."""
    return _load(path, n, parse_flat_counterfact)


def example_facts_path() -> Path:
    """Path of the example facts shipped with factscope."""
    return Path(str(resources.files("factscope") / "data" / "example_facts.json"))


def load_example_facts(path: str | Path | None = None, n: int | None = None) -> list[EditCase]:
    """Our own COUNTERFACT-like example facts (with ``other_relation_prompts``)."""
    return _load(path or example_facts_path(), n, parse_counterfact, source_format="examples")
