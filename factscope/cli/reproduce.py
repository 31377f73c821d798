"""``factscope reproduce``: regenerate the papers' artefacts on a model and write a report.

Usage::

    factscope reproduce --quick --out reports/quick                      # ~minutes, tiny samples
    factscope reproduce --standard --out docs/reproduction/standard      # every claim sized to be decided (~5 h CPU)
    factscope reproduce --full --out reports/full --data-dir ../shared/data   # paper-like sizes (hours)
    factscope reproduce --quick --out reports/q --sizes lens_facts=80 --only rets_table1,rets_fig2
    factscope reproduce --standard --out R --shard 0/2 & factscope reproduce --standard --out R --shard 1/2
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli._ranks import join_ranks, shard_or_exit
from factscope.cli.common import check_output_dir, fail, load_adapter
from factscope.cli.options import ModelSpec, ThreadsOption, model_options

ReproShardOption = Annotated[Optional[str], typer.Option(
    "--shard", help="K/N: run share K (0-based) of N of the artefacts (whole work groups, balanced by cost); "
    "the share that finishes last writes the report. Under torchrun the rank and world size choose the share.")]

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
    shard: ReproShardOption = None,
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
    share = shard_or_exit(shard)
    # One reproduction per report folder (per share of it) at a time.
    folder, what = (out, "--out folder") if share.whole else (out / "_work" / "shares" / share.name, f"--out folder's share {share}")
    try:
        lock = FolderLock(folder, what).acquire()
    except (LockedError, OSError) as err:
        fail(str(err))
        return
    ranks, model = join_ranks(share, model, threads or chosen.threads)
    try:
        adapter = load_adapter(model)
        if adapter.device.type == "cuda" and not any(item.partition("=")[0].strip() == "edit_group" for item in sizes):
            chosen = replace(chosen, edit_group=GPU_EDIT_GROUP)  # independent edits together pay on a GPU only
        command = "factscope " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        report = run(adapter, out, data=data, sizes=chosen, command=command, steps=steps, progress=not quiet, seed=seed,
                     shard=None if share.whole else share)
    finally:
        lock.release()
        ranks.close()
    if report is not None:
        typer.echo(f"wrote {report}")


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
