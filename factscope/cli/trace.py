"""``factscope trace`` and ``factscope trace-dataset``: causal tracing from the command line.

Usage::

    factscope trace "The mother tongue of Danielle Darrieux is" --subject "Danielle Darrieux" \\
        --corrupt relation --kind all --out out/trace
    factscope trace "The capital of France is" --subject France --kind state --out out/t --json --threads 1
    factscope trace-dataset --data ../shared/data/knowns/known_1000.json --n 50 --corrupt both --out out/knowns --threads 1
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli._ranks import ShardOption, join_ranks, shard_or_exit
from factscope.cli.common import check_input_file, check_output_dir, check_prompt_fits, fail, load_adapter, print_json, set_threads
from factscope.cli.options import JsonOption, ModelSpec, ThreadsOption, model_options
from factscope.io_utils import atomic_write_text

KIND_CHOICES = ("state", "mlp", "attn", "all")

SamplesOption = Annotated[int, typer.Option(min=1, help="Noise samples.")]
NoiseOption = Annotated[float, typer.Option(help="Noise std as a multiple of the embedding std.")]
WindowOption = Annotated[int, typer.Option(min=1, help="Layers restored together for mlp/attn.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the noise generator.")]


def _kinds(kind: str) -> tuple[str, ...]:
    if kind not in KIND_CHOICES:
        fail(f"--kind must be one of {', '.join(KIND_CHOICES)}, got {kind!r}.")
    return ("state", "mlp", "attn") if kind == "all" else (kind,)


@model_options()
def trace(
    prompt: Annotated[str, typer.Argument(help="The filled prompt, e.g. 'The capital of France is'.")],
    subject: Annotated[str, typer.Option("--subject", "-s", help="Subject as it appears in the prompt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for trace.json and PNG heatmaps.")],
    target: Annotated[Optional[str], typer.Option(help="Object whose first token is traced; default: greedy prediction.")] = None,
    corrupt: Annotated[str, typer.Option(help="subject (entity perspective) | relation (tokens after the subject).")] = "subject",
    kind: Annotated[str, typer.Option(help="What to restore: state | mlp | attn | all.")] = "all",
    severed: Annotated[Optional[str], typer.Option(help="Also trace states with later mlp|attn frozen (seed 001).")] = None,
    samples: SamplesOption = 10,
    noise: NoiseOption = 3.0,
    noise_std: Annotated[Optional[float], typer.Option(help="Fixed noise std (overrides --noise).")] = None,
    window: WindowOption = 10,
    seed: SeedOption = 0,
    relation_prefix: Annotated[bool, typer.Option(help="With --corrupt relation, also noise the tokens before the subject.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the traces as JSON (trace.json's content) instead of heatmaps.")] = False,
    threads: ThreadsOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Trace one prompt: print compact heatmaps (or JSON) and write trace.json plus PNGs."""
    from factscope.localize.tracing import TraceConfig, trace_kinds
    from factscope.reports.heatmaps import plot_trace, plot_traces, text_heatmap

    kinds = _kinds(kind)
    if corrupt not in ("subject", "relation"):
        fail(f"--corrupt must be subject or relation, got {corrupt!r}.")
    try:
        TraceConfig(corrupt=corrupt, window=window, samples=samples, noise=noise, noise_std=noise_std,
                    severed=severed, seed=seed)
    except ValueError as err:
        fail(str(err))
    if not prompt.strip():
        fail("The prompt is empty.")
    check_output_dir(out)
    set_threads(threads)
    adapter = load_adapter(model)
    check_prompt_fits(adapter, prompt + (f" {target}" if target else ""))
    try:
        results = trace_kinds(adapter, prompt, subject, target, kinds=kinds, corrupt=corrupt, window=window,
                              samples=samples, noise=noise, noise_std=noise_std,
                              severed=(severed,) if severed else (), seed=seed, relation_prefix=relation_prefix,
                              progress=not as_json)
    except ValueError as err:  # subject not found, empty relation, empty target, ...
        fail(str(err))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        if not as_json:
            typer.echo(text_heatmap(result))
            typer.echo("")
        plot_trace(result, out / f"trace_{name}.png")
    if len(results) > 1:
        plot_traces(results, out / "trace_all.png")
    data = {k: r.to_dict() for k, r in results.items()}
    atomic_write_text(out / "trace.json", json.dumps(data, indent=1))
    message = f"wrote {out / 'trace.json'} and {len(results) + (len(results) > 1)} PNG file(s) to {out}"
    if as_json:
        print_json(data)
        typer.echo(message, err=True)
        return
    typer.echo(message)


def _format_table(summary: dict, kinds: tuple[str, ...]) -> str:
    lines = []
    for corrupt, part in summary.items():
        lines.append(f"corrupt {corrupt} ({part['n_facts']} facts; corrupted groups {', '.join(part['corrupted_groups'])})")
        lines.append("  group " + "".join(f"{k:>10}" for k in kinds) + "   (average IE over layers, %)")
        for group, row in part["table"].items():
            cells = "".join(f"{'-':>10}" if row.get(k) is None else f"{100 * row[k]:>10.3f}" for k in kinds)
            lines.append(f"  {group:<5} {cells}")
        for k, peak in part["peaks"].items():
            lines.append(f"  peak {k}: group {peak['group']}, layer {peak['layer']}, AIE {100 * peak['aie']:.3f}%")
    return "\n".join(lines)


@model_options()
def trace_dataset(
    data: Annotated[Path, typer.Option("--data", help="known_1000.json-style file of known facts.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for traces.jsonl, summary JSON and heatmaps.")],
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="Trace the first N correctly predicted facts.")] = None,
    corrupt: Annotated[str, typer.Option(help="subject | relation | both.")] = "both",
    kind: Annotated[str, typer.Option(help="state | mlp | attn | all.")] = "all",
    samples: SamplesOption = 10,
    noise: NoiseOption = 3.0,
    window: WindowOption = 10,
    seed: SeedOption = 0,
    relation_prefix: Annotated[bool, typer.Option(help="With relation corruption, also noise the tokens before the subject.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (summary.json's content) instead of a table.")] = False,
    threads: ThreadsOption = None,
    shard: ShardOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Trace correctly predicted known facts and average IE per position group (RETS Table 1, Fig. 2; data-parallel under torchrun)."""
    from factscope.datasets import DatasetFormatError, load_knowns
    from factscope.localize.tracing_dataset import trace_dataset as run_dataset

    kinds = _kinds(kind)
    corrupts = {"both": ("subject", "relation"), "subject": ("subject",), "relation": ("relation",)}.get(corrupt)
    if corrupts is None:
        fail(f"--corrupt must be subject, relation or both, got {corrupt!r}.")
        return
    check_input_file(data, "--data")
    check_output_dir(out)
    share = shard_or_exit(shard)
    try:
        facts = load_knowns(data)
    except DatasetFormatError as err:
        fail(str(err))
        return
    ranks, model = join_ranks(share, model, threads)
    try:
        adapter = load_adapter(model)
        settings = dict(corrupts=corrupts, kinds=kinds, window=window, samples=samples, noise=noise, seed=seed,
                        relation_prefix=relation_prefix)
        if share.whole:
            run = run_dataset(adapter, facts, **settings, out_dir=out, max_traced=n)
        else:
            merged = _traced_share(adapter, facts, ranks, out, n, settings)
            if merged is None:
                return
            run = merged
        _write_dataset_outputs(adapter, run, out, kinds, as_json)
    finally:
        ranks.close()


def _traced_share(adapter, facts, ranks, out: Path, n: Optional[int], settings: dict):  # type: ignore[no-untyped-def]
    """This rank's share into out/parts/K-of-N; the merged run on rank 0 (or the last --shard), else None."""
    from factscope.localize.tracing_shards import merged_trace, trace_share, traced_prefix

    visited = traced_prefix(adapter, facts, n, settings["corrupts"])
    part = trace_share(adapter, visited, ranks.shard, out, progress=ranks.main, **settings)
    ranks.barrier()
    if ranks.distributed and not ranks.main:
        return None
    run = merged_trace(visited, out, model=adapter.name, settings=part.settings)
    if run is None:
        typer.echo(f"{out}: shard {ranks.shard} done; rerun any shard once all are done to write the summary.")
    return run


def _write_dataset_outputs(adapter, run, out: Path, kinds: tuple[str, ...], as_json: bool) -> None:  # type: ignore[no-untyped-def]
    from factscope.reports.heatmaps import plot_group_grid

    for c, part in run.summary.items():
        for k, grid in part["grids"].items():
            plot_group_grid(grid, list(part["table"]), k, out / f"aie_{c}_{k}.png",
                            corrupted=set(part["corrupted_groups"]), n_facts=part["n_facts"],
                            title=f"{adapter.name}: AIE restoring {k}, corrupt {c} ({part['n_facts']} facts)")
    summary = run.to_dict(with_records=False)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    atomic_write_text(out / "traces.json", json.dumps(run.to_dict(with_records=True)))
    wrong = sum(1 for s in run.skipped if s.get("reason") == "wrong prediction")
    message = f"skipped {wrong} wrongly predicted fact(s), {len(run.skipped) - wrong} other; wrote {out}"
    if as_json:
        print_json(summary)
        typer.echo(message, err=True)
        return
    typer.echo(_format_table(run.summary, kinds))
    typer.echo(message)


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)
    app.command("trace-dataset")(trace_dataset)
