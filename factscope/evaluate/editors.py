"""Editors as the runner sees them: ``(adapter, requests) -> WeightDelta | None``.

Usage::

    from factscope.evaluate.editors import named_editor, one_at_a_time
    fn = named_editor("rome", v_steps=3)                         # factscope.edit.edit(..., editor="rome")
    fn.edit_each                                                 # independent single edits, computed together
    fn = named_editor("rets", no_subject_constraints=True)       # overrides checked here, before any case runs
    fn = named_editor("none")                                    # the unedited model: no delta
    seq = one_at_a_time(named_editor("rome"))                    # several requests, applied in turn
    kwargs = dataset_editor_kwargs("rets", "counterfact_500.json", "counterfact", {})  # K_r from the data

Any callable ``(adapter, requests) -> WeightDelta | None`` is a :data:`EditorFn`; one that
also has ``edit_each(adapter, requests) -> list[WeightDelta]`` is a :class:`GroupEditor`,
which the runner's ``group`` option uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from factscope.edit.api import edit, edit_each
from factscope.edit.contract import HParamsSource
from factscope.edit.delta import WeightDelta, applied_in_turn
from factscope.edit.hparams import EditHyperParams
from factscope.edit.registry import UnknownEditorError, editor_names, get_editor
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter

EditorFn = Callable[[ModelAdapter, list[EditRequest]], "WeightDelta | None"]
UNEDITED = "none"


@runtime_checkable
class GroupEditor(Protocol):
    """An editor whose independent single edits of several cases can be computed in one call."""

    def __call__(self, adapter: ModelAdapter, requests: list[EditRequest]) -> WeightDelta | None: ...

    def edit_each(self, adapter: ModelAdapter, requests: list[EditRequest]) -> list[WeightDelta]: ...


def unedited(adapter: ModelAdapter, requests: list[EditRequest]) -> None:
    """The baseline: validate the requests, change nothing."""
    for request in requests:
        request.validate(adapter)
    return None


def available_editors() -> list[str]:
    """``"none"`` plus the names in ``factscope.edit.registry``."""
    return [UNEDITED, *editor_names()]


class NamedEditor:
    """A registered editor bound to its hyperparameters: parsed once here, resolved once per model."""

    def __init__(self, name: str, hparams: HParamsSource = None, **overrides: Any) -> None:
        self.spec = get_editor(name)
        self.name = self.spec.name
        self.source = hparams
        self.probe = overrides.pop("probe", "record")  # each case's record keeps the side-effect probe, without warnings
        parsed = self.spec.parse_overrides(overrides)  # a bad key or value fails here, not once per case
        self.changes, self.options = self.spec.split_options(parsed)
        if hparams is not None:
            self.spec.hparams(None, hparams, self.changes)  # a file's keys and values, checked without a model
        self._resolved: dict[tuple[str, str, str], EditHyperParams] = {}
        self.__name__ = f"edit_{self.name}"

    def hparams(self, adapter: ModelAdapter) -> EditHyperParams:
        """The hyperparameters for ``adapter`` (family defaults, file, overrides), computed once per model."""
        key = (adapter.fingerprint, adapter.name, adapter.spec.name)  # what family defaults are looked up by
        if key not in self._resolved:
            self._resolved[key] = self.spec.hparams(adapter, self.source, self.changes)
        return self._resolved[key]

    def __call__(self, adapter: ModelAdapter, requests: list[EditRequest]) -> WeightDelta:
        return edit(adapter, requests, editor=self.name, hparams=self.hparams(adapter), probe=self.probe, **self.options)

    def edit_each(self, adapter: ModelAdapter, requests: list[EditRequest]) -> list[WeightDelta]:
        """Independent single edits of ``requests``, computed together where the editor can."""
        return edit_each(adapter, requests, editor=self.name, hparams=self.hparams(adapter), probe=self.probe,
                         **self.options)


def named_editor(name: str, hparams: str | Path | Any | None = None, **overrides: Any) -> EditorFn:
    """The editor registered as ``name`` (or ``"none"``), bound to its hyperparameters and overrides.

    Raises :class:`UnknownEditorError` or ``HyperParamError`` at once for a name, key or value
    the editor does not take.
    """
    if name == UNEDITED:
        if hparams is not None or overrides:
            raise UnknownEditorError("The unedited baseline 'none' takes no hyperparameters.")
        return unedited
    if name.lower() not in editor_names():
        raise UnknownEditorError(f"Unknown editor {name!r}; available: {', '.join(available_editors())}.")
    return NamedEditor(name, hparams, **overrides)


def dataset_editor_kwargs(editor: str, data: str | Path | None, fmt: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Editor arguments that an evaluation derives from its data file (not hyperparameters the user set).

    Each editor says which (``EditorSpec.dataset_overrides``): RETS builds ``K_r`` from the
    evaluation file's records (``constraint_records``) unless ``--set`` chose other records or
    the per-template pool. The unedited baseline and other editors get nothing.
    """
    if editor == UNEDITED:
        return {}
    return get_editor(editor).dataset_overrides(data, fmt, overrides)


def one_at_a_time(editor: EditorFn) -> EditorFn:
    """Apply ``editor`` to each request in turn, each on the model edited by the previous ones.

    Returns one delta holding all parts; the model is left unedited. Used for editors
    that take a single fact (ROME, RETS) when a case needs several requests (the
    relation perspective's add and remove).
    """

    def run(adapter: ModelAdapter, requests: list[EditRequest]) -> WeightDelta | None:
        applied: list[WeightDelta] = []
        with applied_in_turn(adapter) as apply:
            for request in requests:
                delta = editor(adapter, [request])
                if delta is not None:
                    apply(delta)
                    applied.append(delta)
        if not applied:
            return None
        return WeightDelta.concatenate(applied) if len(applied) > 1 else applied[0]

    return run


__all__ = ["EditorFn", "GroupEditor", "NamedEditor", "UNEDITED", "UnknownEditorError", "available_editors",
           "dataset_editor_kwargs", "named_editor", "one_at_a_time", "unedited"]
