"""One entry point for every editor.

Usage::

    from factscope.edit import edit, EditRequest
    delta = edit(adapter, [EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")],
                 editor="rets", layer=22)             # keyword overrides of the hyperparameters
    hp = hparams_for("memit", adapter)                 # the defaults an editor would use
    deltas = edit_each(adapter, requests, editor="rome")   # one independent delta per request, computed together

Every editor validates all requests before any work, never leaves the model changed,
and returns a :class:`WeightDelta` whose metadata names the editor, its
hyperparameters, the requests and the model fingerprint. Each delta is then checked
by a cheap side-effect probe (``factscope.edit.probe``; report in
``delta.metadata["side_effects"]``): ``probe="warn"`` (default) warns about a
destructive edit, ``"strict"`` raises ``EditSideEffectError``, ``"record"`` only
records, ``"off"`` skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import EditHyperParams
from factscope.edit.probe import check_probe_mode, check_side_effects
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter


def _editors() -> dict[str, tuple[Callable[..., WeightDelta], type[EditHyperParams]]]:
    from factscope.edit.rets import RETSHyperParams, rets_edit
    from factscope.edit.rome import ROMEHyperParams, rome_edit

    table: dict[str, tuple[Callable[..., WeightDelta], type[EditHyperParams]]] = {
        "rome": (rome_edit, ROMEHyperParams),
        "rets": (rets_edit, RETSHyperParams),
    }
    try:
        from factscope.edit.memit import MEMITHyperParams, memit_edit

        table["memit"] = (memit_edit, MEMITHyperParams)
    except ImportError:
        pass
    try:
        from factscope.edit.pmet import PMETHyperParams, pmet_edit

        table["pmet"] = (pmet_edit, PMETHyperParams)
    except ImportError:
        pass
    from factscope.edit.kn import KNHyperParams, kn_edit

    table["kn"] = (kn_edit, KNHyperParams)
    from factscope.edit.mend import MENDHyperParams, mend_edit

    table["mend"] = (mend_edit, MENDHyperParams)
    try:
        from factscope.edit.ft import FTHyperParams, ft_edit

        table["ft"] = (ft_edit, FTHyperParams)
    except ImportError:
        pass
    return table


EDITORS = _editors()


def _batched_single_editors() -> dict[str, Callable[..., list[WeightDelta]]]:
    """Editors whose independent single edits can share one batched value optimisation."""
    from factscope.edit.rets import rets_edit_each
    from factscope.edit.rome import rome_edit_each

    return {"rome": rome_edit_each, "rets": rets_edit_each}


EACH = _batched_single_editors()


def hparams_for(editor: str, adapter: ModelAdapter | None = None) -> EditHyperParams:
    """Default hyperparameters of ``editor`` for ``adapter``'s model family."""
    return _lookup(editor)[1].for_model(adapter)


def _lookup(editor: str) -> tuple[Callable[..., WeightDelta], type[EditHyperParams]]:
    key = editor.lower()
    if key not in EDITORS:
        raise ValueError(f"Unknown editor {editor!r}; available: {', '.join(sorted(EDITORS))}.")
    return EDITORS[key]


def _hparams_object(cls: type[EditHyperParams], editor: str, hparams: Any, adapter: ModelAdapter) -> EditHyperParams:
    if hparams is None:
        return cls.for_model(adapter)
    if isinstance(hparams, (str, Path)):
        return cls.from_file(hparams, adapter)
    if isinstance(hparams, dict):
        return cls.from_dict(hparams, adapter)
    if isinstance(hparams, cls):
        return hparams
    raise TypeError(f"hparams for {editor} must be {cls.__name__}, a dict or a file path, not {type(hparams).__name__}.")


def _split_extra(overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the editor functions that are not hyperparameters."""
    return {k: overrides.pop(k) for k in ("corpus", "progress", "subject_pool") if k in overrides}


def edit(
    adapter: ModelAdapter,
    requests: EditRequest | Sequence[EditRequest],
    editor: str = "rome",
    hparams: EditHyperParams | str | Path | dict[str, Any] | None = None,
    probe: str = "warn",
    **overrides: Any,
) -> WeightDelta:
    """Run ``editor`` on ``requests``; ``hparams`` may be an object, a YAML/JSON path or a dict."""
    fn, cls = _lookup(editor)
    check_probe_mode(probe)
    if isinstance(requests, EditRequest):
        requests = [requests]
    if not requests:
        raise ValueError("No edit requests given.")
    extra = _split_extra(overrides)
    hp_obj = _hparams_object(cls, editor, hparams, adapter).override(**overrides)
    delta = fn(adapter, list(requests), hp_obj, **extra)
    check_side_effects(adapter, delta, list(requests), probe)
    return delta


def edit_each(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    editor: str = "rome",
    hparams: EditHyperParams | str | Path | dict[str, Any] | None = None,
    probe: str = "warn",
    **overrides: Any,
) -> list[WeightDelta]:
    """One delta per request, each what ``edit(adapter, [request], editor)`` returns on the unedited model.

    For ROME and RETS the value optimisations of all requests run as one batch
    (finished requests drop out); the deltas agree with one-at-a-time editing up to
    float rounding. The batch helps where one edit leaves the device idle (GPUs); on
    a 2-core CPU it measured no faster. Other editors edit one request at a time.
    """
    _, cls = _lookup(editor)
    check_probe_mode(probe)
    if not requests:
        raise ValueError("No edit requests given.")
    batched = EACH.get(editor.lower())
    if batched is None:
        return [edit(adapter, [r], editor, hparams, probe=probe, **overrides) for r in requests]
    extra = _split_extra(overrides)
    hp_obj = _hparams_object(cls, editor, hparams, adapter).override(**overrides)
    deltas = batched(adapter, list(requests), hp_obj, **extra)
    for request, delta in zip(requests, deltas):
        check_side_effects(adapter, delta, [request], probe)
    return deltas
