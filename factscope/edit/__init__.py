"""Knowledge editing: requests, shared machinery, editors that return weight deltas.

Usage::

    from factscope.edit import EditRequest, edit
    delta = edit(adapter, [EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")], editor="rome")
    with delta.applied(adapter):
        ...
"""

from factscope.edit.delta import DeltaEntry, DeltaError, WeightDelta
from factscope.edit.request import EditRequest, EditRequestError, relation_edit_requests
from factscope.edit.api import EDITORS, edit, edit_each, hparams_for
from factscope.edit.value_store import checkpoint_values

__all__ = [
    "EDITORS",
    "DeltaEntry",
    "DeltaError",
    "EditRequest",
    "EditRequestError",
    "WeightDelta",
    "checkpoint_values",
    "edit",
    "edit_each",
    "hparams_for",
    "relation_edit_requests",
]
