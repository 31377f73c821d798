"""One entry point for every editor.

Usage::

    from factscope.edit import EditRequest, edit, edit_each, hparams_for
    from factscope.testing import example_requests, tiny_adapter
    adapter = tiny_adapter("llama")
    request = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")
    fast = dict(v_steps=3, mom2_n_tokens=64, n_constraint_records=20)
    delta = edit(adapter, [request], editor="rets", layer=2, **fast)   # keyword overrides of the hyperparameters
    hp = hparams_for("memit", adapter)                                  # the defaults an editor would use
    deltas = edit_each(adapter, example_requests(2), editor="rome", v_steps=3, mom2_n_tokens=64)  # one delta per request

Every editor is found in ``factscope.edit.registry``; its ``prepare`` validates all
requests and hyperparameters before any work (``factscope.edit.contract``). The model
is never left changed, and the returned :class:`WeightDelta`'s metadata names the
editor, its hyperparameters, the requests and the model fingerprint. Each delta is then
checked by a cheap side-effect probe (``factscope.edit.probe``; report in
``delta.metadata["side_effects"]``): ``probe="warn"`` (default) warns about a
destructive edit, ``"strict"`` raises ``EditSideEffectError``, ``"record"`` only
records, ``"off"`` skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factscope.edit.contract import HParamsSource
from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import EditHyperParams
from factscope.edit.probe import check_probe_mode, check_side_effects
from factscope.edit.registry import EDITORS, get_editor
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter


def hparams_for(editor: str, adapter: ModelAdapter | None = None) -> EditHyperParams:
    """Default hyperparameters of ``editor`` for ``adapter``'s model family."""
    return get_editor(editor).hparams(adapter)


def edit(
    adapter: ModelAdapter,
    requests: EditRequest | Sequence[EditRequest],
    editor: str = "rome",
    hparams: HParamsSource = None,
    probe: str = "warn",
    **overrides: Any,
) -> WeightDelta:
    """Run ``editor`` on ``requests``; ``hparams`` may be an object, a YAML/JSON path or a dict.

    ``overrides`` are hyperparameters, or the run options ``corpus`` and ``progress``
    (and the editor's own, e.g. RETS's ``subject_pool``).
    """
    spec = get_editor(editor)
    check_probe_mode(probe)
    job = spec.prepare(adapter, requests if not isinstance(requests, EditRequest) else [requests], hparams,
                       overrides=overrides)
    delta = spec.edit(job)
    check_side_effects(adapter, delta, job.requests, probe)
    return delta


def edit_each(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    editor: str = "rome",
    hparams: HParamsSource = None,
    probe: str = "warn",
    **overrides: Any,
) -> list[WeightDelta]:
    """One delta per request, each what ``edit(adapter, [request], editor)`` returns on the unedited model.

    For ROME and RETS the value optimisations of all requests run as one batch
    (finished requests drop out); the deltas agree with one-at-a-time editing up to
    float rounding. The batch helps where one edit leaves the device idle (GPUs); on
    a 2-core CPU it measured no faster. Other editors edit one request at a time.
    """
    spec = get_editor(editor)
    check_probe_mode(probe)
    job = spec.prepare(adapter, requests, hparams, overrides=overrides)
    deltas = spec.edit_each(job)
    for request, delta in zip(job.requests, deltas):
        check_side_effects(adapter, delta, [request], probe)
    return deltas


__all__ = ["EDITORS", "edit", "edit_each", "hparams_for"]
