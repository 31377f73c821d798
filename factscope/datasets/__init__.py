"""Typed records and loaders per dataset format."""

from factscope.datasets.errors import DatasetFormatError
from factscope.datasets.knowns import KnownFact, load_knowns, load_relation_attributes

__all__ = ["DatasetFormatError", "KnownFact", "load_knowns", "load_relation_attributes"]
