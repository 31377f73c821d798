"""``factscope reproduce``: regenerate the papers' artefacts on a model and write a report.

Usage::

    factscope reproduce --quick --out reports/quick                      # ~minutes, tiny samples
    factscope reproduce --standard --out docs/reproduction/standard      # every claim sized to be decided (~5 h CPU)
    factscope reproduce --full --out reports/full --data-dir ../shared/data   # paper-like sizes (hours)
    factscope reproduce --quick --out reports/q --sizes lens_facts=80 --only rets_table1,rets_fig2
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli.common import check_output_dir, fail, load_adapter, set_threads
from factscope.cli.options import ModelSpec, ThreadsOption, model_options

GPU_EDIT_GROUP = 8  # single edits computed together on a GPU (docs/evaluation.md ran the perspectives with --group 8)


@model_options(device_map=False)
def reproduce(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (one subfolder per artefact; rerun to resume).")],
    quick: Annotated[bool, typer.Option("--quick", help="Small samples (default).")] = False,
    standard: Annotated[bool, typer.Option("--standard", help="Sizes from the power calculation: every decidable claim decided (about 5 h on a 2-core CPU).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Paper-like sample sizes (hours on a CPU).")] = False,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Folder with knowns/, counterfact/, corpus/ (shared/data).")] = Path("../shared/data"),
    sizes: Annotated[list[str], typer.Option("--sizes", help="Override a size KEY=VALUE (repeatable), e.g. lens_facts=80.")] = [],
    preset_name: Annotated[Optional[str], typer.Option("--preset", help="quick | standard | full | tiny (overrides --quick/--standard/--full).")] = None,
    only: Annotated[Optional[str], typer.Option("--only", help="Comma-separated artefacts to run (default: all).")] = None,
    threads: ThreadsOption = None,  # default: the preset's (1)
    seed: Annotated[int, typer.Option(help="Seed for noise, sampling and relation choice.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Run every artefact of SPEC §6 (resumable) and write OUT/report.md."""
    from factscope.reproduce import STEPS, DataFiles, preset
    from factscope.io_utils import FolderLock, LockedError
    from factscope.reproduce import reproduce as run

    if quick + standard + full > 1:
        fail("Choose only one of --quick and --full (or --standard).")
    check_output_dir(out)
    name = preset_name or ("full" if full else "standard" if standard else "quick")
    try:
        chosen = preset(name).override(list(sizes))
        data = DataFiles.from_dir(data_dir)
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
        return
    steps = [s.strip() for s in only.split(",") if s.strip()] if only else None
    if steps and any(s not in STEPS for s in steps):
        fail(f"--only names unknown artefacts; available: {', '.join(STEPS)}.")
    set_threads(threads or chosen.threads)
    try:  # one reproduction per report folder at a time
        lock = FolderLock(out, "--out folder").acquire()
    except (LockedError, OSError) as err:
        fail(str(err))
        return
    try:
        adapter = load_adapter(model)
        if adapter.device.type == "cuda" and not any(item.partition("=")[0].strip() == "edit_group" for item in sizes):
            chosen = replace(chosen, edit_group=GPU_EDIT_GROUP)  # independent edits together pay on a GPU only
        command = "factscope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        report = run(adapter, out, data=data, sizes=chosen, command=command, steps=steps, progress=not quiet, seed=seed)
    finally:
        lock.release()
    typer.echo(f"wrote {report}")


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
