"""Typed records and loaders per dataset format, and model-free supplements.

Usage::

    from factscope.datasets import load_cases
    cases = load_cases("../shared/data/counterfact/counterfact_500.json", n=20)
    records = read_json_list("../shared/data/counterfact/counterfact_500.json")   # raw records, errors name the file
"""

from factscope.datasets._io import read_json, read_json_list
from factscope.datasets.counterfact import load_counterfact, load_example_facts, load_flat_counterfact
from factscope.datasets.errors import DatasetFormatError
from factscope.datasets.knowns import KnownFact, load_knowns, load_relation_attributes
from factscope.datasets.loader import FORMATS, detect_format, load_cases
from factscope.datasets.records import Case, EditCase, OtherRelationPrompt, ZsreCase
from factscope.datasets.relations import RELATIONS, relation_name
from factscope.datasets.zsre import load_zsre

__all__ = [
    "FORMATS", "RELATIONS", "Case", "DatasetFormatError", "EditCase", "KnownFact", "OtherRelationPrompt",
    "ZsreCase", "detect_format", "load_cases", "load_counterfact", "load_example_facts", "load_flat_counterfact",
    "load_knowns", "load_relation_attributes", "load_zsre", "read_json", "read_json_list", "relation_name",
]  # fmt: skip
