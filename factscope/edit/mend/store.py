"""Where trained MEND editors and training checkpoints live, and how they are written and checked.

Usage::

    key = editor_key(adapter, hp, data_sha256=file_digest(path))   # EditorKey: config + data parts
    folder = run_folder(adapter, key)                      # cache_dir()/mend/<model>-<config>-<data>
    save_state(folder / STATE_FILE, net, optimizer, step=25, header={...})
    step, header = load_state(folder / STATE_FILE, net, optimizer)   # MENDCheckpointError if damaged
    save_editor(folder / EDITOR_FILE, net, header)
    found = find_editor(adapter, hp)                       # newest finished editor for this model/layers/settings

A run folder is keyed by the model fingerprint, the edited layers, the hyperparameters
of :func:`key_fields` (the *config* part) and the SHA-256 of the training and
validation files (the *data* part). Every file is safetensors with the SHA-256 of its
tensors in the header (``factscope.io_utils``), written atomically; the training state
holds the network, the optimizer, the torch RNG state and the step.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from factscope.edit.mend.hparams import MENDHyperParams, key_fields, resolve_mend_layers
from factscope.edit.mend.network import MENDNetwork
from factscope.io_utils import IntegrityError, load_tensors, read_json_cache, save_tensors, write_json_cache
from factscope.models.adapter import ModelAdapter
from factscope.models.file_hash import file_sha256
from factscope.models.loading import cache_dir

STATE_FILE = "state.safetensors"
EDITOR_FILE = "editor.safetensors"
LOG_FILE = "log.jsonl"
_FORMAT = "factscope-mend"
_VERSION = 1


class MENDCheckpointError(ValueError):
    """A MEND state or editor file that is damaged or belongs to other settings; the message names it."""


@dataclass(frozen=True)
class EditorKey:
    config: str  # fingerprint, layers and keyed hyperparameters
    data: str  # training (and validation) file hashes
    layers: tuple[int, ...]
    fields: dict[str, Any]

    @property
    def full(self) -> str:
        return f"{self.config}-{self.data}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a training file (memoised by path, size and mtime in the cache)."""
    return file_sha256(path, cache_dir() / "file-hashes.json")


def editor_key(adapter: ModelAdapter, hp_: MENDHyperParams, data_sha256: str | None, val_sha256: str | None = None) -> EditorKey:
    layers = tuple(resolve_mend_layers(adapter, hp_.layers))
    fields = key_fields(hp_)
    config = _digest({"model": adapter.fingerprint, "layers": layers, "hparams": fields, "version": _VERSION})
    data = _digest({"train": data_sha256, "val": val_sha256}) if data_sha256 else "*"
    return EditorKey(config, data, layers, fields)


def mend_root() -> Path:
    return cache_dir() / "mend"


def run_folder(adapter: ModelAdapter, key: EditorKey) -> Path:
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", adapter.name)[-40:] or "model"
    return mend_root() / f"{model}-{key.full}"


def build_network(adapter: ModelAdapter, layers: list[int] | tuple[int, ...], hp_: MENDHyperParams) -> MENDNetwork:
    """A fresh network for ``layers``, initialised from ``hp_.seed`` (the global RNG is left as it was)."""
    shapes = {}
    for layer in layers:
        out_dim, in_dim = adapter.mlp_down_weight(layer).matrix.shape
        shapes[layer] = (int(in_dim), int(out_dim))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp_.seed)
        return MENDNetwork(shapes, rank=hp_.rank, n_blocks=hp_.n_blocks, edit_lr=hp_.edit_lr, shared=hp_.shared)


# ------------------------------------------------------------------ files
def _header(header: dict[str, Any], kind: str) -> dict[str, str]:
    return {"factscope-mend": json.dumps({"format": _FORMAT, "version": _VERSION, "kind": kind, **header}, default=str)}


def _read(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        tensors, raw = load_tensors(path)
    except IntegrityError as err:
        raise MENDCheckpointError(f"MEND {kind} file {err}") from None
    try:
        header = json.loads(raw["factscope-mend"])
        if header.get("format") != _FORMAT or header.get("kind") != kind:
            raise ValueError("not a MEND " + kind)
    except (KeyError, ValueError, TypeError) as err:
        raise MENDCheckpointError(f"{path} is not a factscope MEND {kind} file ({err}).") from None
    return tensors, header


def _load_net(net: MENDNetwork, tensors: dict[str, torch.Tensor], path: Path) -> None:
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    own = net.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise MENDCheckpointError(f"{path} holds a MEND network of another shape than these settings make.")
    net.load_state_dict(state)


def save_state(path: Path, net: MENDNetwork, optimizer: torch.optim.Optimizer, *, step: int, header: dict[str, Any]) -> Path:
    """Network, optimizer, RNG state and step, atomically."""
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, slot in opt["state"].items():
        for name, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {**header, "step": step, "param_groups": opt["param_groups"], "opt_scalars": scalars}
    return save_tensors(path, tensors, _header(meta, "state"))


def load_state(path: Path, net: MENDNetwork, optimizer: torch.optim.Optimizer, *, key: EditorKey) -> tuple[int, dict[str, Any]]:
    """Restore what :func:`save_state` wrote; returns ``(step, header)``."""
    tensors, header = _read(path, "state")
    if header.get("key") != key.full:
        raise MENDCheckpointError(f"{path} was written for other settings (key {header.get('key')}, expected {key.full}).")
    _load_net(net, tensors, path)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, field = name.split(".", 2)
            state.setdefault(int(index), {})[field] = value
    for name, value in header.get("opt_scalars", {}).items():
        index, field = name.split(".", 1)
        state.setdefault(int(index), {})[field] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": header["param_groups"]})
    except (KeyError, ValueError) as err:
        raise MENDCheckpointError(f"{path}: the optimizer state does not fit ({err}).") from None
    torch.set_rng_state(tensors["rng.torch"])
    return int(header["step"]), header


def save_editor(path: Path, net: MENDNetwork, header: dict[str, Any]) -> Path:
    return save_tensors(path, {f"net.{k}": v for k, v in net.state_dict().items()},
                        _header({**header, "finished_at": time.time()}, "editor"))


def read_editor_header(path: Path) -> dict[str, Any] | None:
    """The header of an editor file without reading its tensors (``None`` if unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {})["factscope-mend"])
    except Exception:  # any damage: the file is checked properly when it is loaded
        return None
    return header if header.get("kind") == "editor" else None


_LOADED: dict[str, tuple[str, MENDNetwork, dict[str, Any]]] = {}


def load_editor(path: Path, adapter: ModelAdapter) -> tuple[MENDNetwork, dict[str, Any]]:
    """A trained network (checked by hash; memoised while the file is unchanged) and its header."""
    path = Path(path)
    if not path.is_file():
        raise MENDCheckpointError(f"MEND editor file {path} does not exist.")
    stat = path.stat()
    identity = f"{stat.st_size}|{stat.st_mtime_ns}"
    memo = _LOADED.get(str(path.resolve()))
    if memo is not None and memo[0] == identity:
        return memo[1], memo[2]
    tensors, header = _read(path, "editor")
    if header.get("model_fingerprint") != adapter.fingerprint:
        raise MENDCheckpointError(f"MEND editor {path} was trained for model fingerprint {header.get('model_fingerprint')}, "
                                  f"this model is {adapter.fingerprint}.")
    trained = MENDHyperParams.for_model(adapter).override(**header.get("hparams", {}))
    net = build_network(adapter, [int(x) for x in header["layers"]], trained)
    _load_net(net, tensors, path)
    net.eval()
    _LOADED[str(path.resolve())] = (identity, net, header)
    return net, header


def find_editor(adapter: ModelAdapter, hp_: MENDHyperParams) -> Path | None:
    """The editor file these settings select: ``editor_file``, the ``train_data`` run, or the newest match."""
    if hp_.editor_file:
        return Path(hp_.editor_file)
    data = file_digest(hp_.train_data) if hp_.train_data else None
    key = editor_key(adapter, hp_, data)
    if data is not None:
        exact = [run_folder(adapter, key) / EDITOR_FILE]
        candidates = [p for p in exact if p.is_file()]
    else:
        candidates = list(mend_root().glob(f"*-{key.config}-*/{EDITOR_FILE}"))
    found = [(h.get("finished_at", 0.0), p) for p in candidates if (h := read_editor_header(p)) is not None]
    return max(found)[1] if found else None


# ------------------------------------------------------------------ timings (for ETA messages)
def _timings_path() -> Path:
    return mend_root() / "timings.json"


def record_seconds_per_step(adapter: ModelAdapter, key: EditorKey, seconds: float) -> None:
    data = read_json_cache(_timings_path(), "MEND timings") or {}
    data[f"{adapter.fingerprint}|{key.config}"] = seconds
    write_json_cache(_timings_path(), data)


def recorded_seconds_per_step(adapter: ModelAdapter, key: EditorKey) -> float | None:
    value = (read_json_cache(_timings_path(), "MEND timings") or {}).get(f"{adapter.fingerprint}|{key.config}")
    return float(value) if isinstance(value, (int, float)) else None
