"""A blocking lock between processes on one machine or a shared file system (``flock``).

Usage::

    with waiting_lock(Path("stats/x.lock")):   # the second process waits here until the first is done
        ...                                    # e.g. compute a cache file unless it exists by now

Unlike ``io_utils.FolderLock`` (which refuses at once), this one waits: it lets
ranks that need the same cached result compute it once, the others reading it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def waiting_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), waiting for other holders; released on exit or death."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
