"""Load any supported dataset, detecting its format from the first record.

Usage::

    cases = load_cases("counterfact_500.json", n=20)              # format="auto"
    cases = load_cases("counterfact-val.json", format="flat")
    detect_format(records[0])                                     # "counterfact" | "flat" | "zsre"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factscope.datasets._io import read_json_list
from factscope.datasets.counterfact import example_facts_path, load_counterfact, load_example_facts, load_flat_counterfact
from factscope.datasets.errors import DatasetFormatError
from factscope.datasets.records import Case
from factscope.datasets.zsre import load_zsre

FORMATS = ("auto", "counterfact", "flat", "zsre", "examples")


def detect_format(record: Any, source: str = "<records>") -> str:
    """Which loader fits a record, judged by its keys."""
    if isinstance(record, dict):
        if "requested_rewrite" in record:
            return "examples" if "other_relation_prompts" in record else "counterfact"
        if {"src", "alt", "loc"} <= record.keys():
            return "zsre"
        if {"prompt", "subject", "target_new", "ground_truth"} <= record.keys():
            return "flat"
    raise DatasetFormatError(
        f"{source}: record 0 matches no known format (counterfact: requested_rewrite; flat: prompt/subject/"
        f"target_new/ground_truth; zsre: src/alt/loc). Pass --format explicitly."
    )


def load_cases(path: str | Path | None, format: str = "auto", n: int | None = None) -> list[Case]:
    """Cases of any supported format; ``path=None`` with ``format="examples"`` = bundled examples."""
    if format not in FORMATS:
        raise DatasetFormatError(f"Unknown dataset format {format!r}; choose one of {', '.join(FORMATS)}.")
    if path is None:
        if format not in ("auto", "examples"):
            raise DatasetFormatError("A dataset path is required for this format.")
        return list(load_example_facts(None, n))
    if format == "auto":
        records = read_json_list(path)
        if not records:
            raise DatasetFormatError(f"{path}: the dataset is empty.")
        format = detect_format(records[0], str(path))
    loader = {
        "counterfact": load_counterfact,
        "flat": load_flat_counterfact,
        "zsre": load_zsre,
        "examples": load_example_facts,
    }[format]
    cases = list(loader(path, n))
    if not cases:
        raise DatasetFormatError(f"{path}: no records to evaluate.")
    return cases


__all__ = ["FORMATS", "detect_format", "example_facts_path", "load_cases"]
