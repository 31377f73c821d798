"""The MEND editor: a trained network turns each request's fine-tuning gradient into a low-rank edit.

Usage::

    delta = mend_edit(adapter, [EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")])
    delta = edit(adapter, requests, editor="mend")                       # through the editor registry
    delta = mend_edit(adapter, requests, editor_file="…/editor.safetensors")
    mend_edit(adapter, requests, train_if_missing=True, train_data="counterfact-train.json")

The gradient factors of the requests' edit loss (the sum of each request's mean
target NLL) are read at the edited layers; the network maps them to
ΔW_l = −α_l Σ_t δ̃_t ũ_tᵀ, returned as one low-rank entry per layer
(``u = −α δ̃ᵀ`` [out, r], ``v = ũᵀ`` [in, r], r = tokens with a non-zero gradient).
Without a trained editor, :class:`MENDNotTrainedError` says how to train one and
about how long it takes on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from factscope.edit.contract import EditJob, EditorSpec
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.edit.mend.data import MENDExample
from factscope.edit.mend.hparams import MENDHyperParams
from factscope.edit.mend.network import MENDNetwork
from factscope.edit.mend.store import (
    MENDCheckpointError, build_network, editor_key, find_editor, load_editor, mend_root, recorded_seconds_per_step,
)
from factscope.edit.mend.training import edit_factors, train_mend, train_step
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter


class MENDNotTrainedError(ValueError):
    """No trained MEND editor fits this model, its layers and hyperparameters."""


def delta_from_network(adapter: ModelAdapter, net: MENDNetwork, requests: Sequence[EditRequest]) -> WeightDelta:
    """The edit ``net`` makes for ``requests`` (one batch edit), as a low-rank delta without metadata."""
    examples = [MENDExample(r, (), ()) for r in requests]
    net.eval()
    with torch.no_grad():
        factors = edit_factors(adapter, net, examples)
    entries = []
    for layer in net.layers:
        weight = adapter.mlp_down_weight(layer)
        up, vp = factors[layer]
        dtype, device = weight.parameter.dtype, weight.parameter.device
        entries.append(DeltaEntry("mlp_key", layer, up.detach().to(device, dtype).contiguous(),
                                  vp.detach().to(device, dtype).contiguous()))
    return WeightDelta(entries)


def estimate_seconds_per_step(adapter: ModelAdapter, hp_: MENDHyperParams) -> tuple[float, str]:
    """Seconds per training step: recorded by an earlier run of these settings, else timed on two example steps."""
    key = editor_key(adapter, hp_, None)
    recorded = recorded_seconds_per_step(adapter, key)
    if recorded is not None:
        return recorded, "measured by an earlier training run"
    from factscope.datasets import load_example_facts
    from factscope.edit.mend.data import example_from_case

    examples = [example_from_case(c) for c in load_example_facts(n=2)]
    net = build_network(adapter, list(key.layers), hp_)
    optimizer = torch.optim.Adam(net.parameters(), lr=hp_.lr)
    with torch.random.fork_rng(devices=[]):
        train_step(adapter, net, optimizer, examples[:1] * hp_.batch_size, hp_)  # warm-up
        began = time.perf_counter()
        train_step(adapter, net, optimizer, examples[1:2] * hp_.batch_size, hp_)
    return time.perf_counter() - began, "timed on one example step now"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _not_trained(adapter: ModelAdapter, hp_: MENDHyperParams) -> MENDNotTrainedError:
    seconds, how = estimate_seconds_per_step(adapter, hp_)
    eta = seconds * hp_.steps
    model = "" if adapter.name in ("", "smollm2-135m-instruct") else f" --model {adapter.name}"
    data = hp_.train_data or "../shared/data/counterfact/counterfact-train.json"
    return MENDNotTrainedError(
        f"No trained MEND editor for {adapter.name} (layers {list(editor_key(adapter, hp_, None).layers)}, these "
        f"hyperparameters{', training file ' + hp_.train_data if hp_.train_data else ''}) in {mend_root()}. "
        f"Train one: `factscope train-mend --data {data}{model} --steps {hp_.steps}` "
        f"(about {_duration(eta)} here: {seconds:.2f} s/step, {how}), "
        "or pass train_if_missing=true with train_data=<file> to train before editing."
    )


def edit_with_mend(job: EditJob) -> WeightDelta:
    """The registry's entry: edit ``job.requests`` together with the trained MEND editor its settings select."""
    adapter, hp_, requests = job.adapter, job.hparams, job.requests
    path = find_editor(adapter, hp_)
    if path is None:
        if not hp_.train_if_missing:
            raise _not_trained(adapter, hp_)
        if not hp_.train_data:
            raise MENDNotTrainedError("train_if_missing needs train_data=<COUNTERFACT or zsRE training file>.")
        path = train_mend(adapter, hp_.train_data, hp_, progress=job.progress).editor_path
    if path is None or not Path(path).is_file():
        raise MENDCheckpointError(f"MEND editor file {path} does not exist.")
    net, header = load_editor(Path(path), adapter)
    delta = delta_from_network(adapter, net, requests)
    delta.metadata = {
        "editor": "mend",
        "hparams": hp_.to_dict(),
        "requests": [r.to_dict() for r in requests],
        "model_fingerprint": adapter.fingerprint,
        "layers": list(net.layers),
        "mend_editor": {"file": str(path), "key": header.get("key"), "steps": header.get("steps"),
                        "train_sha256": header.get("train_sha256"), "trained_hparams": header.get("hparams"),
                        "alpha": [float(a) for a in net.log_alpha.detach().exp()]},
    }
    return delta


EDITOR = EditorSpec("mend", MENDHyperParams, edit_with_mend,
                    summary="MEND: a trained network maps the fine-tuning gradient's factors to a low-rank edit")


def mend_edit(
    adapter: ModelAdapter,
    requests: Sequence[EditRequest],
    hparams: MENDHyperParams | None = None,
    *,
    progress: bool = False,
    **overrides: Any,
) -> WeightDelta:
    """``edit_with_mend`` on inputs checked once by the editor contract (no side-effect probe)."""
    return EDITOR.edit(EDITOR.prepare(adapter, requests, hparams, overrides={**overrides, "progress": progress}))
