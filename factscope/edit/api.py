"""One entry point for every editor.

Usage::

    from factscope.edit import edit, EditRequest
    delta = edit(adapter, [EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")],
                 editor="rets", layer=22)             # keyword overrides of the hyperparameters
    hp = hparams_for("memit", adapter)                 # the defaults an editor would use

Every editor validates all requests before any work, never leaves the model changed,
and returns a :class:`WeightDelta` whose metadata names the editor, its
hyperparameters, the requests and the model fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import EditHyperParams
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
    try:
        from factscope.edit.ft import FTHyperParams, ft_edit

        table["ft"] = (ft_edit, FTHyperParams)
    except ImportError:
        pass
    return table


EDITORS = _editors()


def hparams_for(editor: str, adapter: ModelAdapter | None = None) -> EditHyperParams:
    """Default hyperparameters of ``editor`` for ``adapter``'s model family."""
    return _lookup(editor)[1].for_model(adapter)


def _lookup(editor: str) -> tuple[Callable[..., WeightDelta], type[EditHyperParams]]:
    key = editor.lower()
    if key not in EDITORS:
        raise ValueError(f"Unknown editor {editor!r}; available: {', '.join(sorted(EDITORS))}.")
    return EDITORS[key]


def edit(
    adapter: ModelAdapter,
    requests: EditRequest | Sequence[EditRequest],
    editor: str = "rome",
    hparams: EditHyperParams | str | Path | dict[str, Any] | None = None,
    **overrides: Any,
) -> WeightDelta:
    """Run ``editor`` on ``requests``; ``hparams`` may be an object, a YAML/JSON path or a dict."""
    fn, cls = _lookup(editor)
    if isinstance(requests, EditRequest):
        requests = [requests]
    if not requests:
        raise ValueError("No edit requests given.")
    extra = {k: overrides.pop(k) for k in ("corpus", "progress", "subject_pool") if k in overrides}
    if hparams is None:
        hp_obj = cls.for_model(adapter)
    elif isinstance(hparams, (str, Path)):
        hp_obj = cls.from_file(hparams, adapter)
    elif isinstance(hparams, dict):
        hp_obj = cls.from_dict(hparams, adapter)
    elif isinstance(hparams, cls):
        hp_obj = hparams
    else:
        raise TypeError(f"hparams for {editor} must be {cls.__name__}, a dict or a file path, not {type(hparams).__name__}.")
    hp_obj = hp_obj.override(**overrides)
    return fn(adapter, list(requests), hp_obj, **extra)
