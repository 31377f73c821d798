"""Shared helpers for dataset loaders: read a JSON list, check fields with clear errors.

Usage::

    records = read_json_list(path)
    field = FieldReader(str(path), index=3, record=records[3])
    prompt = field.text("prompt")                # non-empty string or DatasetFormatError
    prompts = field.text_list("paraphrase_prompts", required=False)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factscope.datasets.errors import DatasetFormatError


def read_json(path: str | Path) -> Any:
    """The JSON value stored at ``path``; errors name the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetFormatError(f"{path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{path} is not valid JSON: {err}") from None


def read_json_list(path: str | Path) -> list[Any]:
    """The JSON list stored at ``path``; errors name the file."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetFormatError(f"{path}: expected a JSON list of records, found {type(data).__name__}.")
    return data


class FieldReader:
    """Typed access to one record's fields; every error names file, record and field."""

    def __init__(self, source: str, index: int, record: Any) -> None:
        self.source = source
        self.index = index
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{source}: record {index} is not an object (found {type(record).__name__}).")
        self.record = record

    def error(self, field: str, problem: str) -> DatasetFormatError:
        ident = self.record.get("case_id")
        which = f"record {self.index}" + (f" (case_id {ident!r})" if ident is not None else "")
        return DatasetFormatError(f"{self.source}: {which} field {field!r} {problem}.")

    def get(self, dotted: str) -> Any:
        value: Any = self.record
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def text(self, dotted: str, *, required: bool = True) -> str | None:
        value = self.get(dotted)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(dotted, "is missing or empty" if value in (None, "") else f"must be a non-empty string, found {value!r}")
        return value

    def text_list(self, dotted: str, *, required: bool = True) -> list[str]:
        value = self.get(dotted)
        if value is None and not required:
            return []
        if not isinstance(value, list):
            raise self.error(dotted, "is missing" if value is None else f"must be a list of strings, found {type(value).__name__}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{dotted}[{i}]", "must be a non-empty string")
        return list(value)

    def case_id(self) -> int | str:
        value = self.record.get("case_id", self.index)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.error("case_id", f"must be an integer or string, found {value!r}")
        return value


def template_from_prompt(reader: FieldReader, prompt_field: str, prompt: str, subject: str) -> str:
    """A filled prompt → template, replacing the first occurrence of the subject by ``{}``."""
    if "{}" in prompt:
        if prompt.count("{}") != 1:
            raise reader.error(prompt_field, f"must contain exactly one '{{}}', found {prompt!r}")
        return prompt
    if subject not in prompt:
        raise reader.error(prompt_field, f"does not contain its subject {subject!r}: {prompt!r}")
    return prompt.replace(subject, "{}", 1)
