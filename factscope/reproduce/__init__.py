"""Regenerate the seed papers' tables and figures on any model (SPEC §6).

Usage::

    from factscope.reproduce import reproduce, preset, DataFiles
    reproduce(adapter, "reports/quick", data=DataFiles.from_dir("../shared/data"), sizes=preset("quick"))

Artefacts (one folder each under ``out/``): see :data:`STEPS`; the report is
``out/report.md``. Command line: ``factscope reproduce --quick --out reports/quick``.
"""

from factscope.reproduce.context import DataFiles, ReproContext
from factscope.reproduce.pipeline import STEPS, reproduce
from factscope.reproduce.sizes import FULL, QUICK, TINY, Sizes, preset

__all__ = ["DataFiles", "FULL", "QUICK", "ReproContext", "STEPS", "Sizes", "TINY", "preset", "reproduce"]
