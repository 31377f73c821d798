"""Keep Python's cyclic garbage collector out of start-up work.

Usage::

    from factscope.gc_control import paused_gc
    with paused_gc():
        import torch

Importing torch and transformers and building a model allocate millions of objects
that live as long as the process. The collector is triggered by allocation counts, so
during that work it runs about a hundred times and rescans the growing heap in each
full collection, finding almost nothing to free (about 300 objects for a Gemma-3
``predict``): 0.5-0.7 s of a 4-5 s command on this project's 2-core CPU. Pausing it for
such a block changes no result; the block's few cycles are freed at the first
collection after it.

That first collection still walks everything the block allocated. A process that runs
one command and exits (the console script) calls :func:`freeze_after_pauses`, and what
survives a paused block is then frozen (``gc.freeze``) instead: never scanned again, and
never freed, which is what a one-command process wants of its model and modules. A
library process does not freeze, so a model it drops can still be collected.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


_freeze_after_pause = False


def freeze_after_pauses() -> None:
    """Freeze what survives each paused block from now on; only for a process that runs one command and exits."""
    global _freeze_after_pause
    _freeze_after_pause = True
    gc.freeze()  # what the process has imported so far


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block with the cyclic collector off; a collector that was off stays off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freeze_after_pause:
            gc.freeze()
        if was_enabled:
            gc.enable()
