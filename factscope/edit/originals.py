"""Saved edited models and their original weights: what ``factscope apply`` writes and ``revert`` reads.

Usage::

    from factscope.edit import edit
    from factscope.edit.originals import read_originals, restore_originals, save_edited_model
    from factscope.models import load_model
    from factscope.testing import example_requests, tiny_adapter
    adapter = tiny_adapter("llama")
    delta = edit(adapter, example_requests(1), editor="ft", ft_steps=2)
    save_edited_model(adapter, delta, "edited-model/", source="delta.safetensors")  # weights + originals + delta info
    delta.revert(adapter)
    originals = read_originals("edited-model/")     # OriginalsError if missing or damaged
    edited = load_model("edited-model/").adapter
    restore_originals(edited, originals)            # the weights as they were, bit-exactly

An edited folder is a ``save_pretrained`` model plus ``factscope-originals.safetensors``
(every changed matrix as it was before the edit, with its content hash: ``W + ΔW − ΔW``
is not ``W`` in floating point) and ``factscope-delta.json`` (the delta's metadata).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from factscope.edit.delta import WeightDelta
from factscope.io_utils import IntegrityError, atomic_write_json, load_tensors, save_tensors
from factscope.models.adapter import ModelAdapter

ORIGINALS_FILE = "factscope-originals.safetensors"
DELTA_INFO_FILE = "factscope-delta.json"


class OriginalsError(ValueError):
    """A folder without usable original weights, or originals that do not fit the model; the message names the file."""


@dataclass(frozen=True)
class Originals:
    """The original weights of an edited folder, by entry key (``"mlp_key.5"``)."""

    path: Path
    tensors: dict[str, torch.Tensor]
    hashed: bool  # False: written by an older factscope without a content hash (damage cannot be detected)


def save_edited_model(adapter: ModelAdapter, delta: WeightDelta, out: str | Path, *, source: str | Path | None = None) -> Path:
    """Apply ``delta`` (it stays applied) and write the edited model, its original weights and the delta's metadata."""
    out = Path(out)
    delta.apply(adapter)
    out.mkdir(parents=True, exist_ok=True)
    adapter.model.save_pretrained(out)
    adapter.tokenizer.save_pretrained(out)
    save_tensors(out / ORIGINALS_FILE, delta.original_weights(), {"factscope": json.dumps({"delta": str(source)})})
    atomic_write_json(out / DELTA_INFO_FILE, delta.metadata, indent=2, default=str)
    return out


def read_originals(folder: str | Path) -> Originals:
    """The original weights saved in ``folder`` by :func:`save_edited_model`."""
    path = Path(folder) / ORIGINALS_FILE
    if not path.is_file():
        raise OriginalsError(f"{path} not found: `factscope revert` needs a folder written by `factscope apply`.")
    try:
        tensors, header = load_tensors(path, require_hash=False)
    except IntegrityError as err:  # damaged: restoring from it would write wrong weights
        raise OriginalsError(f"{err} The original weights cannot be restored from it.") from err
    return Originals(path, tensors, "factscope_sha256" in header)


def restore_originals(adapter: ModelAdapter, originals: Originals) -> int:
    """Copy the original weights into ``adapter``'s model; every entry is checked first, so nothing is half-restored."""
    pairs = []
    for key, tensor in originals.tensors.items():
        site_kind, _, layer = key.rpartition(".")
        try:
            weight = adapter.weight(site_kind, adapter.check_layer(int(layer)))
        except (ValueError, KeyError) as err:
            raise OriginalsError(f"{originals.path}: entry {key!r} does not fit this model ({err}).") from err
        if weight.parameter.shape != tensor.shape:
            raise OriginalsError(f"{originals.path}: entry {key!r} has shape {tuple(tensor.shape)}, the model's weight "
                                 f"{tuple(weight.parameter.shape)}.")
        pairs.append((weight, tensor))
    with torch.no_grad():
        for weight, tensor in pairs:
            weight.parameter.copy_(tensor.to(weight.parameter.device))
    return len(pairs)


__all__ = ["DELTA_INFO_FILE", "ORIGINALS_FILE", "Originals", "OriginalsError", "read_originals", "restore_originals",
           "save_edited_model"]
