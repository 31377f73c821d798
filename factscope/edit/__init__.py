"""Knowledge editing: requests, shared machinery, editors that return weight deltas."""

from factscope.edit.delta import DeltaEntry, DeltaError, WeightDelta
from factscope.edit.request import EditRequest, EditRequestError, relation_edit_requests

__all__ = ["DeltaEntry", "DeltaError", "EditRequest", "EditRequestError", "WeightDelta", "relation_edit_requests"]
