"""SHA-256 of large files, memoised by file identity so a second call is instant.

Usage::

    from factscope.models.file_hash import file_sha256
    digest = file_sha256("model.gguf", memo="/tmp/hashes.json")   # later calls read the memo
    remember_sha256("moved/model.gguf", digest, memo="/tmp/hashes.json")  # the same bytes under a new path

The memo (a JSON file; factscope keeps ``cache_dir()/file-hashes.json``) maps a file's resolved path, size and
modification time to its digest; a file that changes gets hashed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from factscope.io_utils import atomic_write_json

_CHUNK = 1 << 22


def file_identity(path: Path) -> str:
    """``resolved path|size|mtime_ns``: changes whenever the file is replaced or written."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _read_memo(memo: Path) -> dict[str, str]:
    try:
        data = json.loads(memo.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged memo: hashes are recomputed, nothing is trusted from it
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def file_sha256(path: str | Path, memo: str | Path) -> str:
    """Hex SHA-256 of ``path``'s bytes, memoised in the JSON file ``memo`` by (resolved path, size, mtime)."""
    path = Path(path)
    memo_file = Path(memo)
    memo = _read_memo(memo_file)
    key = file_identity(path)
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return remember_sha256(path, digest.hexdigest(), memo_file)


def remember_sha256(path: str | Path, digest: str, memo: str | Path) -> str:
    """Record ``digest`` as ``path``'s SHA-256 in ``memo``: for a file just hashed under another name and renamed.

    A rename keeps size and mtime but changes the resolved path, so without this the
    next :func:`file_sha256` would read the whole file again (0.8 s for a 1 GB model).
    """
    path, memo_file = Path(path), Path(memo)
    entries = _read_memo(memo_file)
    entries[file_identity(path)] = digest
    atomic_write_json(memo_file, entries)
    return digest
