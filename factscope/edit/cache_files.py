"""Safetensors cache files with a JSON metadata record, written atomically and hash-checked.

Usage::

    write_tagged(path, {"mom2": C}, {"key": {...}, "count": 4096})
    found = read_tagged(path, "statistics file")   # (tensors, meta), or None (absent / damaged, warned)

A crash never leaves a half-written file under the final name (unique temporary
name, then ``os.replace``). Each file records a SHA-256 of its tensors; a file that is
unreadable or does not match it is moved aside to ``*.damaged`` with a warning naming
it, and the caller gets ``None`` and recomputes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from factscope.io_utils import IntegrityError, load_tensors, quarantine, save_tensors


def write_tagged(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` with ``meta`` (JSON) and their content hash to ``path`` atomically."""
    save_tensors(path, tensors, {"factscope": json.dumps(meta)})


def read_tagged(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Tensors and metadata of ``path``, or ``None`` when it is absent or damaged (``what`` names it in the warning)."""
    if not path.is_file():
        return None
    try:
        tensors, header = load_tensors(path)
        meta = json.loads(header["factscope"])
    except (IntegrityError, KeyError, ValueError) as err:  # truncated, flipped bytes, wrong format: recompute
        quarantine(path, str(err), what)
        return None
    return tensors, meta
