"""``factscope evaluate`` (resumable editing evaluation) and ``factscope summarize`` (tables).

Usage::

    factscope evaluate --editor rome --data ../shared/data/counterfact/counterfact_500.json --n 20 --out runs/rome
    factscope evaluate --editor rets --set no_subject_constraints=true --label "RETS w/o SC" ... --out runs/rets-nosc
    factscope evaluate --editor none --data ... --out runs/none          # the unedited model
    factscope evaluate --editor rome --perspective relation --relation-requests add ... --out runs/rome-rel-add
    factscope evaluate --editor rome --perspective relation --set requests_solve=joint ... --out runs/rome-rel-joint
    factscope summarize runs/* --plot --r-spec-rule both        # R-Specificity: ours and the reference rule
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from factscope.cli.common import check_input_file, check_output_dir, fail, load_adapter, print_json, set_threads
from factscope.cli.editor_args import check_editor, editor_overrides, model_hparams
from factscope.cli.options import HparamsOption, JsonOption, ModelSpec, SetOption, model_options
from factscope.cli._ranks import ShardOption, finish, join_ranks, shard_or_exit
from factscope.parallel.ranks import Shard
from factscope.io_utils import atomic_write_text


@model_options()
def evaluate(
    editor: Annotated[str, typer.Option("--editor", "-e", help="rets | rome | memit | pmet | ft | kn | mend | none (the unedited model) or any registered editor.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder (manifest.json + results.jsonl); rerun to resume.")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset file; default: the bundled example facts.")] = None,
    format: Annotated[str, typer.Option("--format", help="auto | counterfact | flat | zsre | examples.")] = "auto",
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="Evaluate the first N cases.")] = 200,
    mode: Annotated[str, typer.Option(help="single | batch | sequential.")] = "single",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Facts per edit in batch mode (default: all).")] = None,
    perspective: Annotated[str, typer.Option(help="entity | relation | both: which knowledge the edit rewrites.")] = "entity",
    relation_requests: Annotated[str, typer.Option("--relation-requests", help="Relation edits: add+remove (both requests; "
                                                   "ROME applies them in turn, --set requests_solve=joint solves them "
                                                   "together) or add (the add request alone).")] = "add+remove",
    no_generation: Annotated[bool, typer.Option("--no-generation", help="Skip Fluency and Consistency (text generation).")] = False,
    hparams: HparamsOption = None,
    set_: SetOption = [],  # noqa: B006
    label: Annotated[Optional[str], typer.Option(help="Row label in summaries (default: editor and overrides).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and R-Specificity relation choice.")] = 0,
    corpus: Annotated[Optional[Path], typer.Option(help="Corpus JSONL for IDF and reference passages (default: enwiki sample).")] = None,
    group: Annotated[int, typer.Option("--group", min=1, help="Single mode: cases whose edits are computed together "
                                       "(ROME, RETS; same edits; helps on GPUs, not on a small CPU). Each case is still evaluated alone.")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (1 helps on a busy machine; "
                                                   "default under torchrun: the cores split between the ranks).")] = None,
    as_json: JsonOption = False,
    shard: ShardOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Edit each case, measure every criterion, append one JSON line per case (resumable; data-parallel under torchrun)."""
    from factscope.evaluate.runner import MODES, PERSPECTIVES, RELATION_REQUESTS
    from factscope.io_utils import FolderLock, LockedError

    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if perspective not in PERSPECTIVES:
        fail(f"--perspective must be one of {', '.join(PERSPECTIVES)}, got {perspective!r}.")
    if relation_requests not in RELATION_REQUESTS:
        fail(f"--relation-requests must be one of {', '.join(RELATION_REQUESTS)}, got {relation_requests!r}.")
    check_input_file(data, "--data")
    check_input_file(corpus, "--corpus")
    if editor == "none":
        if hparams is not None or set_:
            fail("--editor none: the unedited baseline 'none' takes no hyperparameters (--hparams, --set).")
        overrides: dict[str, Any] = {}
    else:  # every key and value checked here, before the run folder or the model
        overrides = editor_overrides(check_editor(editor, extra=("none",)), set_, hparams)
    check_output_dir(out)
    share = shard_or_exit(shard)
    if mode == "sequential" and not share.whole:
        fail(f"--mode sequential cannot be split (--shard {share} / torchrun): each edit builds on all previous ones.")
    # One run per --out folder (per shard of it): a second `evaluate` on it exits here, before any model loads.
    folder = out if share.whole else out / "parts" / share.name
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    lock = FolderLock(folder, "--out folder" if share.whole else f"--out folder's shard {share}")
    try:
        lock.acquire()
    except (LockedError, OSError) as err:
        fail(str(err))
    ranks, model = join_ranks(share, model, threads)
    try:
        _evaluate_locked(editor, out, data, format, n, mode, batch_size, perspective, no_generation, hparams,
                         overrides, label, seed, corpus, group, model, relation_requests, as_json, share)
        lock.release()
        finish(ranks, out)
    finally:
        lock.release()
        ranks.close()
        if created and [p.name for p in folder.iterdir()] == [lock.path.name]:  # refused before anything was written
            lock.path.unlink()
            for made in created:
                if made.is_dir() and not any(made.iterdir()):
                    made.rmdir()


def _evaluate_locked(editor: str, out: Path, data: Optional[Path], format: str, n: Optional[int], mode: str,
                     batch_size: Optional[int], perspective: str, no_generation: bool, hparams: Optional[Path],
                     overrides: dict[str, Any], label: Optional[str], seed: int, corpus: Optional[Path], group: int,
                     model: ModelSpec, relation_requests: str = "add+remove", as_json: bool = False,
                     shard: Optional[Shard] = None) -> None:
    from factscope.datasets import DatasetFormatError, load_cases
    from factscope.evaluate.editors import UnknownEditorError, dataset_editor_kwargs, named_editor
    from factscope.evaluate.runlog import CorruptRunError, RunConfigMismatch
    from factscope.evaluate.runner import RunConfig, RunConfigError, run_evaluation
    from factscope.evaluate.supplements import SupplementConfig, dataset_key
    from factscope.evaluate.text_metrics import load_idf

    try:
        all_cases = load_cases(data, format=format)
    except DatasetFormatError as err:
        fail(str(err))
    if not all_cases:
        fail(f"--data {data}: the dataset has no cases.")
    fmt = format if format != "auto" else (all_cases[0].source_format if all_cases else format)
    cases = all_cases[:n] if n else all_cases
    try:
        # A batch edit of many facts takes long: show its own progress (value chunks, layers).
        extra = {"progress": True} if mode == "batch" and editor != "none" else {}
        extra.update(dataset_editor_kwargs(editor.lower(), data, fmt, overrides))  # RETS: K_r from --data's records
        editor_fn = named_editor(editor, str(hparams) if hparams else None, **overrides, **extra)
    except (UnknownEditorError, ValueError) as err:
        fail(str(err))
    supplement = SupplementConfig(seed=seed, corpus=str(corpus) if corpus else None)
    adapter = load_adapter(model)
    if editor != "none":
        model_hparams(check_editor(editor), adapter, hparams, overrides)  # e.g. a layer this model lacks, before any case
    config = RunConfig(
        editor=editor,
        data=str(data.resolve()) if data else None,
        format=fmt,
        n=len(cases),
        mode=mode,
        batch_size=batch_size,
        perspective=perspective,
        generation=not no_generation,
        model=model.name,
        model_fingerprint=adapter.fingerprint,
        hparams=str(hparams) if hparams else None,
        overrides=overrides,
        label=label,
        seed=seed,
        dataset_key=dataset_key(data, fmt),
        supplement=supplement.to_dict(),
        relation_requests=None if relation_requests == "add+remove" else relation_requests,
    )
    idf = None
    if not no_generation:
        try:
            idf = load_idf(corpus)
        except FileNotFoundError as err:
            fail(f"{err} (or pass --no-generation).")
        except ValueError as err:  # a corpus line that is not a {title, text} object
            fail(f"--corpus: {err}")
    try:
        result = run_evaluation(adapter, cases, editor_fn, config, out, all_cases=all_cases, idf=idf, group=group, shard=shard)
    except (RunConfigMismatch, RunConfigError, CorruptRunError) as err:
        fail(str(err))
    state = "resumed" if result.resumed else "started"
    if shard is not None and not shard.whole:
        state += f" (shard {shard})"
    if as_json:
        print_json({"folder": str(result.folder), "state": state, "new": result.new, "planned": result.total})
        return
    typer.echo(f"{result.folder}: {state}; {result.new} new line(s), {result.total} planned. Summarize with: factscope summarize {out}")


def summarize(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `factscope evaluate`.")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for summary.{md,csv,json,png} (default: <first run's parent>/summary).")] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Also write a bar chart PNG.")] = False,
    r_spec_rule: Annotated[str, typer.Option("--r-spec-rule", help="R-Specificity shown: both | ours (content-word o2) | "
                                             "reference (the RETS authors' evaluate_rs.py rule).")] = "both",
) -> None:
    """Side-by-side tables (RETS Table 3 layout) with 95 % CIs; writes Markdown, CSV and JSON."""
    from factscope.evaluate.summary import summarize_runs
    from factscope.reports.tables import plot_criteria, render_markdown, write_csv, write_json

    from factscope.evaluate.runlog import CorruptRunError

    from factscope.evaluate.summary import R_SPEC_RULES

    if r_spec_rule not in R_SPEC_RULES:
        fail(f"--r-spec-rule must be one of {', '.join(R_SPEC_RULES)}, got {r_spec_rule!r}.")
    folders = [r for r in runs if (r / "manifest.json").is_file()]
    skipped = [r for r in runs if r not in folders]
    for r in skipped:
        typer.secho(f"skipping {r}: not a run folder", fg=typer.colors.YELLOW, err=True)
    if not folders:
        fail("No run folders given.")
    dest = out or folders[0].parent / "summary"
    check_output_dir(dest)
    try:
        stats = summarize_runs(folders)
    except (CorruptRunError, KeyError, TypeError, ValueError) as err:
        fail(f"cannot summarize {', '.join(map(str, folders))}: {err}")
    text = render_markdown(stats, r_spec_rule)
    typer.echo(text)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "summary.md", text)
    write_csv(stats, dest / "summary.csv")
    write_json(stats, dest / "summary.json")
    written = ["summary.md", "summary.csv", "summary.json"]
    if plot:
        try:
            plot_criteria(stats, dest / "summary.png")
            written.append("summary.png")
        except ValueError as err:
            typer.secho(f"no plot: {err}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {', '.join(str(dest / w) for w in written)}")


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
    app.command()(summarize)
