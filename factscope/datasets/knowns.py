"""ROME's known facts (``known_1000.json``) used for causal tracing and the vocabulary lens.

Usage::

    facts = load_knowns("../shared/data/knowns/known_1000.json", n=200)
    facts[0].prompt, facts[0].subject, facts[0].attribute, facts[0].template
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factscope.datasets._io import read_json, read_json_list
from factscope.datasets.errors import DatasetFormatError


@dataclass(frozen=True)
class KnownFact:
    """A fact the source model knew: ``prompt`` contains ``subject``; ``attribute`` is the object."""

    known_id: int
    subject: str
    prompt: str
    attribute: str
    relation_id: str | None = None
    prediction: str | None = None

    @property
    def template(self) -> str:
        """The prompt with the (first occurrence of the) subject replaced by ``{}``."""
        return self.prompt.replace(self.subject, "{}", 1)


def parse_known(record: object, index: int, source: str = "<records>") -> KnownFact:
    """Validate one record; errors name the record and field."""
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{source}: record {index} is not an object.")
    for key in ("subject", "prompt", "attribute"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DatasetFormatError(f"{source}: record {index} field {key!r} is missing or empty.")
    if record["subject"] not in record["prompt"]:
        raise DatasetFormatError(
            f"{source}: record {index} field 'prompt' does not contain its subject {record['subject']!r}."
        )
    return KnownFact(
        known_id=int(record.get("known_id", index)),
        subject=record["subject"],
        prompt=record["prompt"],
        attribute=record["attribute"].strip(),
        relation_id=record.get("relation_id"),
        prediction=record.get("prediction"),
    )


def load_knowns(path: str | Path, n: int | None = None) -> list[KnownFact]:
    """Load (the first ``n``) known facts from a JSON list."""
    records = read_json_list(path)
    if n is not None:
        records = records[:n]
    return [parse_known(r, i, str(path)) for i, r in enumerate(records)]


def load_relation_attributes(path: str | Path) -> dict[str, list[str]]:
    """``relation_id -> [attribute strings]`` (format of ``relation_related_attributes.json``)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected an object mapping relation_id to a list of strings.")
    for rel, values in data.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DatasetFormatError(f"{path}: relation {rel!r} must map to a list of strings.")
    return data
