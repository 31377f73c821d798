"""Safetensors cache files with a JSON metadata record, written atomically.

Usage::

    write_tagged(path, {"mom2": C}, {"key": {...}, "count": 4096})
    found = read_tagged(path, "statistics file")   # (tensors, meta), or None (absent / unreadable, warned)

A crash never leaves a half-written file under the final name (write to a temporary
name, then ``os.replace``). Any reading error means "recompute": the caller gets
``None`` and a warning naming the file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def write_tagged(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` with ``meta`` (JSON) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"factscope": json.dumps(meta)})
    os.replace(tmp, path)


def read_tagged(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Tensors and metadata of ``path``, or ``None`` when it is absent or unreadable (``what`` names it in the warning)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["factscope"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        return tensors, meta
    except Exception as err:  # truncated, garbage, wrong format: all mean "recompute"
        warnings.warn(f"Ignoring unreadable {what} {path} ({err}); recomputing.", stacklevel=3)
        return None
