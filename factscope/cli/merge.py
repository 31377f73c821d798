"""``factscope merge``: join the parts of a run split by ``--shard`` or torchrun into one results file.

Usage::

    factscope merge runs/rome            # runs/rome/parts/*/results.jsonl -> runs/rome/results.jsonl
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factscope.cli.common import fail


def merge(
    runs: Annotated[list[Path], typer.Argument(help="Run folders whose parts/ to merge.")],
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Merge even when some cases are not done yet.")] = False,
) -> None:
    """Write each run's results.jsonl as the union of its parts (one line per case, in dataset order)."""
    from factscope.evaluate.parts import done_pairs, merge_parts, planned
    from factscope.evaluate.runlog import CorruptRunError, RunLog
    from factscope.io_utils import LockedError

    for run in runs:  # check every folder before writing any
        try:
            manifest = RunLog(run).manifest()
        except CorruptRunError as err:
            fail(str(err))
            return
        if manifest is None:
            fail(f"{run} is not a run folder (no manifest.json).")
            return
        try:
            missing = planned(manifest) - len(done_pairs(run))
        except CorruptRunError as err:
            fail(str(err))
            return
        if missing > 0 and not allow_missing:
            fail(f"{run}: {missing} case line(s) not done yet; finish the shards (rerun them) or pass --allow-missing.")
    for run in runs:
        try:
            report = merge_parts(run)
        except LockedError as err:
            fail(str(err))
            return
        state = "complete" if report.complete else f"{report.missing} missing"
        typer.echo(f"{run}: {report.records} record(s) from {report.parts} part file(s) ({state}) -> {run / 'results.jsonl'}")


def register(app: typer.Typer) -> None:
    app.command()(merge)
