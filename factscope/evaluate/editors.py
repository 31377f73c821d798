"""Editors as the runner sees them: ``(adapter, requests) -> WeightDelta | None``.

Usage::

    fn = named_editor("rome")                                    # factscope.edit.edit(..., editor="rome")
    fn = named_editor("rets", subject_constraints=False)         # overrides go to the editor
    fn = named_editor("none")                                    # the unedited model: no delta
    fn = one_at_a_time(fn)                                       # several requests, applied in turn
    kwargs = dataset_editor_kwargs("rets", "counterfact_500.json", "counterfact", overrides)  # K_r from the data
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from factscope.edit.delta import WeightDelta
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter

EditorFn = Callable[[ModelAdapter, list[EditRequest]], "WeightDelta | None"]
UNEDITED = "none"


class UnknownEditorError(ValueError):
    """An editor name that ``factscope.edit.EDITORS`` does not know."""


def unedited(adapter: ModelAdapter, requests: list[EditRequest]) -> None:
    """The baseline: validate the requests, change nothing."""
    for request in requests:
        request.validate(adapter)
    return None


def available_editors() -> list[str]:
    """``"none"`` plus the names registered in ``factscope.edit.EDITORS`` (if the registry exists)."""
    try:
        from factscope.edit import EDITORS  # type: ignore[attr-defined]
    except ImportError:
        return [UNEDITED]
    return [UNEDITED, *sorted(EDITORS)]


def named_editor(name: str, hparams: str | Path | Any | None = None, **overrides: Any) -> EditorFn:
    """The editor registered as ``name``, bound to its hyperparameters and overrides."""
    if name == UNEDITED:
        if hparams is not None or overrides:
            raise UnknownEditorError("The unedited baseline 'none' takes no hyperparameters.")
        return unedited
    names = available_editors()
    if name not in names:
        raise UnknownEditorError(f"Unknown editor {name!r}; available: {', '.join(names)}.")
    from factscope.edit import edit  # type: ignore[attr-defined]

    overrides.setdefault("probe", "record")  # each case's record keeps the side-effect probe, without warnings

    def run(adapter: ModelAdapter, requests: list[EditRequest]) -> WeightDelta:
        return edit(adapter, requests, editor=name, hparams=hparams, **overrides)

    def each(adapter: ModelAdapter, requests: list[EditRequest]) -> list[WeightDelta]:
        from factscope.edit import edit_each  # type: ignore[attr-defined]

        return edit_each(adapter, requests, editor=name, hparams=hparams, **overrides)

    run.__name__ = f"edit_{name}"
    run.each = each  # type: ignore[attr-defined]  # independent single edits, computed together
    return run


def dataset_editor_kwargs(editor: str, data: str | Path | None, fmt: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Editor arguments that an evaluation derives from its data file (not hyperparameters the user set).

    RETS builds ``K_r`` from the evaluation file's records (``constraint_records``,
    as the authors' code does from its COUNTERFACT file) unless ``--set`` chose
    other records or the per-template pool. Each edit leaves out every record of its
    own subject. Other editors and other formats get nothing.
    """
    if editor != "rets" or data is None or fmt not in ("counterfact", "examples"):
        return {}
    if "constraint_records" in overrides or overrides.get("constraint_source", "records") != "records":
        return {}
    return {"constraint_records": str(Path(data).resolve())}


def one_at_a_time(editor: EditorFn) -> EditorFn:
    """Apply ``editor`` to each request in turn, each on the model edited by the previous ones.

    Returns one delta holding all parts; the model is left unedited. Used for editors
    that take a single fact (ROME, RETS) when a case needs several requests (the
    relation perspective's add and remove).
    """

    def run(adapter: ModelAdapter, requests: list[EditRequest]) -> WeightDelta | None:
        applied: list[WeightDelta] = []
        try:
            for request in requests:
                delta = editor(adapter, [request])
                if delta is not None:
                    delta.apply(adapter)
                    applied.append(delta)
        finally:
            for delta in reversed(applied):
                delta.revert(adapter)
        if not applied:
            return None
        return WeightDelta.concatenate(applied) if len(applied) > 1 else applied[0]

    return run
