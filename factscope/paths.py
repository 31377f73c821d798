"""Where factscope keeps its cache and finds the shared datasets (the ground floor: imports nothing of factscope).

Usage::

    from factscope.paths import cache_dir, shared_data_dir
    cache_dir() / "stats"                       # $FACTSCOPE_CACHE or ~/.cache/factscope
    shared_data_dir() / "corpus"                # $FACTSCOPE_DATA or ../shared/data beside the working directory
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """factscope's cache folder: ``$FACTSCOPE_CACHE`` or ``$XDG_CACHE_HOME/factscope``."""
    env = os.environ.get("FACTSCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "factscope"


def shared_data_dir() -> Path:
    """The datasets folder: ``$FACTSCOPE_DATA``, else ``../shared/data`` seen from the working directory.

    The project is run from its checkout with the shared datasets beside it (as in CI);
    elsewhere set ``FACTSCOPE_DATA`` or pass the file options the commands offer.
    """
    env = os.environ.get("FACTSCOPE_DATA")
    if env:
        return Path(env).expanduser()
    return Path.cwd().parent / "shared" / "data"


def default_corpus_path() -> Path:
    """The corpus for IDF and reference passages: ``$FACTSCOPE_CORPUS`` or ``corpus/enwiki_sample.jsonl`` of the data folder."""
    env = os.environ.get("FACTSCOPE_CORPUS")
    if env:
        return Path(env).expanduser()
    return shared_data_dir() / "corpus" / "enwiki_sample.jsonl"
