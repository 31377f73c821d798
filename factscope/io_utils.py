"""Ground-floor file helpers: atomic writes, content hashes, damaged-cache quarantine, folder locks.

Usage::

    from factscope.io_utils import atomic_write_text, save_tensors, load_tensors, read_json_cache

    atomic_write_text(path, "…")                       # unique temp name in path's folder + os.replace
    save_tensors(path, {"w": w}, {"factscope": "{}"})  # safetensors with a SHA-256 of the tensors in the header
    tensors, meta = load_tensors(path)                 # raises IntegrityError naming the file on any damage
    write_json_cache(path, obj); read_json_cache(path, "IDF cache")   # None (and the file moved aside) if damaged
    with FolderLock(run_folder): ...                   # a second holder gets LockedError at once

This module imports nothing from the rest of factscope, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

HASH_KEY = "factscope_sha256"  # safetensors metadata key / JSON envelope key of the content hash
DAMAGED_SUFFIX = ".damaged"


class IntegrityError(ValueError):
    """A file whose content does not match its recorded hash, or that cannot be parsed; the message names it."""


class LockedError(RuntimeError):
    """Another process holds the lock of a folder."""


# ----------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a unique temporary file next to ``path``; on success it replaces ``path`` atomically.

    Readers see the old file or the new one, never a torn one; two writers never share a
    temporary name. On an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_writer(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_writer(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, **dump_kwargs: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, **dump_kwargs))


# ---------------------------------------------------------------- content hashes
def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and raw bytes of ``tensors`` (order-independent)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.contiguous().reshape(-1)
        if flat.numel():
            digest.update(flat.cpu().view(torch.uint8).numpy())
    return digest.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write safetensors atomically with the tensors' SHA-256 in the header (checked by :func:`load_tensors`)."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    header = dict(metadata or {})
    header[HASH_KEY] = tensors_sha256(tensors)
    atomic_write_bytes(path, save(tensors, metadata=header))
    return path


def load_tensors(path: str | Path, *, require_hash: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of ``path``; :class:`IntegrityError` (naming the file) if damaged.

    ``require_hash=False`` accepts a file written before hashes were recorded.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as err:  # safetensors raises several types for a damaged file
        raise IntegrityError(f"{path} is damaged or not a safetensors file ({err}).") from None
    recorded = metadata.get(HASH_KEY)
    if recorded is None:
        if require_hash:
            raise IntegrityError(f"{path} carries no content hash (written by an older factscope); it cannot be verified.")
    elif tensors_sha256(tensors) != recorded:
        raise IntegrityError(f"{path} is damaged: its tensors do not match the SHA-256 recorded when it was written.")
    return tensors, metadata


# ------------------------------------------------------------ JSON caches, quarantine
def quarantine(path: str | Path, reason: str, what: str = "cache file") -> Path | None:
    """Move a damaged file aside to ``<name>.damaged`` and warn, naming it; returns the new path."""
    path = Path(path)
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        os.replace(path, target)
    except OSError:
        target = None  # another process moved or replaced it already
    warnings.warn(f"Ignoring unreadable {what} {path} ({reason}); moved it aside to {target}; recomputing.", stacklevel=3)
    return target


def _payload_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def write_json_cache(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as JSON atomically, wrapped with a SHA-256 of its canonical form."""
    payload = json.loads(json.dumps(payload, default=str))  # what a reader will see
    return atomic_write_json(path, {HASH_KEY: _payload_hash(payload), "payload": payload}, ensure_ascii=False)


def read_json_cache(path: str | Path, what: str = "cache file") -> Any | None:
    """The payload of a file written by :func:`write_json_cache`, or ``None`` when absent or damaged.

    A damaged file (unparsable, wrong hash, or from before hashes were recorded) is
    moved aside with a warning naming it, so that the caller recomputes it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        quarantine(path, f"unreadable: {err}", what)
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        quarantine(path, f"not valid JSON: {err}", what)
        return None
    if not isinstance(data, dict) or HASH_KEY not in data or "payload" not in data:
        quarantine(path, "written without a content hash by an older factscope", what)
        return None
    if _payload_hash(data["payload"]) != data[HASH_KEY]:
        quarantine(path, "content does not match its SHA-256", what)
        return None
    return data["payload"]


# ---------------------------------------------------------------- folders
_HELD: dict[str, list[Any]] = {}  # resolved lock path -> [open handle, depth]: re-entrant within a process


class FolderLock:
    """An exclusive, non-blocking lock on ``folder`` (``folder/.factscope.lock``), released on exit or death.

    Re-entrant within one process (a command may hold it around a library call that takes it too).
    """

    def __init__(self, folder: str | Path, what: str = "folder") -> None:
        self.folder = Path(folder)
        self.path = self.folder / ".factscope.lock"
        self.what = what
        self._key: str | None = None

    def acquire(self) -> "FolderLock":
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return self
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LockedError(f"{self.folder} is in use by {holder}; wait for it to finish or use another {self.what}.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        _HELD[key] = [handle, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            import fcntl

            del _HELD[self._key]
            fcntl.flock(entry[0].fileno(), fcntl.LOCK_UN)
            entry[0].close()
        self._key = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temp_dirs(parent: str | Path, prefix: str, *, older_than_s: float = 0.0) -> list[Path]:
    """Remove folders ``parent/<prefix>*`` left by killed processes (none holding their ``.lock``).

    A temporary folder made by :func:`locked_temp_dir` is locked while its creator runs, so
    only folders of dead processes (or older than ``older_than_s`` without a lock file) go.
    """
    import fcntl

    removed: list[Path] = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    for folder in parent.iterdir():
        if not (folder.name.startswith(prefix) and folder.is_dir()):
            continue
        lock = folder / ".lock"
        if lock.is_file():
            with open(lock, "a+") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its creator is still running
        elif time.time() - folder.stat().st_mtime < older_than_s:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextlib.contextmanager
def locked_temp_dir(parent: str | Path, prefix: str) -> Iterator[Path]:
    """A fresh temporary folder ``parent/<prefix>XXXX`` locked while in use, removed on error.

    The caller renames it into place before leaving the block; if the process is killed,
    :func:`remove_stale_temp_dirs` recognises it as stale because its lock is free.
    """
    import fcntl

    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    handle = open(tmp / ".lock", "w")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        handle.close()
