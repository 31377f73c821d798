"""Knowledge editing: requests, shared machinery, editors that return weight deltas.

Usage::

    from factscope.edit import EditRequest, edit, editor_names
    from factscope.testing import tiny_adapter
    adapter = tiny_adapter("llama")
    request = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")
    delta = edit(adapter, [request], editor="rome", v_steps=3, mom2_n_tokens=64)
    with delta.applied(adapter):
        ...
    editor_names()            # every registered editor (factscope.edit.registry)
"""

from factscope.edit.delta import DeltaEntry, DeltaError, WeightDelta
from factscope.edit.request import EditRequest, EditRequestError, relation_edit_requests
from factscope.edit.api import edit, edit_each, hparams_for
from factscope.edit.contract import EditJob, Editor, EditorSpec
from factscope.edit.hparams import HyperParamError
from factscope.edit.registry import EDITORS, UnknownEditorError, editor_names, get_editor
from factscope.edit.value_store import checkpoint_values

__all__ = [
    "EDITORS",
    "DeltaEntry",
    "DeltaError",
    "EditRequest",
    "EditRequestError",
    "EditJob",
    "Editor",
    "EditorSpec",
    "HyperParamError",
    "UnknownEditorError",
    "WeightDelta",
    "checkpoint_values",
    "edit",
    "edit_each",
    "editor_names",
    "get_editor",
    "hparams_for",
    "relation_edit_requests",
]
