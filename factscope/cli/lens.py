"""``factscope lens``, ``lens-dataset`` and ``dynamics``: the vocabulary lens and component dynamics.

Usage::

    factscope lens "Vinson Massif is located in the continent of" --subject "Vinson Massif" \\
        --position lr --k 10 --object Antarctica
    factscope lens-dataset --data known_1000.json --attributes relation_related_attributes.json --n 200 --out out/lens
    factscope dynamics --data known_1000.json --n 200 --out out/dynamics
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from factscope.cli.common import (
    check_input_file,
    check_k,
    check_layer_index,
    check_output_dir,
    check_prompt_fits,
    fail,
    load_adapter,
    print_json,
    set_threads,
)
from factscope.cli._ranks import ShardOption, join_ranks, shard_or_exit
from factscope.cli.options import JsonOption, ModelSpec, ThreadsOption, model_options
from factscope.io_utils import atomic_write_text

KOption = Annotated[int, typer.Option("--k", "-k", min=1, help="Top-k tokens per layer (RETS/PMET: 50).")]
RawOption = Annotated[bool, typer.Option("--raw", help="Plain unembedding without the final norm (as RETS did).")]
KnownsOption = Annotated[Path, typer.Option(help="Known facts JSON (known_1000.json format).")]
BatchSizeOption = Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")]


def _user_errors() -> tuple[type[BaseException], ...]:
    from factscope.datasets import DatasetFormatError
    from factscope.localize.attributes import UnknownRelationError
    from factscope.localize.lens import PositionOutOfRangeError
    from factscope.models.adapter import LayerOutOfRangeError
    from factscope.scoring import EmptyTargetError
    from factscope.tokens import EmptyPromptError, EmptyRelationError, SubjectNotFoundError

    return (
        DatasetFormatError, UnknownRelationError, PositionOutOfRangeError, LayerOutOfRangeError, EmptyTargetError,
        EmptyPromptError, EmptyRelationError, SubjectNotFoundError, ValueError,
    )


@model_options()
def lens(
    prompt: Annotated[str, typer.Argument(help="The prompt to look into.")],
    subject: Annotated[Optional[str], typer.Option(help="Subject in the prompt (needed for --position lr/ls).")] = None,
    position: Annotated[str, typer.Option(help="last | lr | ls | a token index (negative counts from the end).")] = "last",
    k: KOption = 50,
    object_: Annotated[Optional[str], typer.Option("--object", help="Object text; its first token's rank is shown.")] = None,
    raw: RawOption = False,
    attributes: Annotated[Optional[Path], typer.Option(help="relation_id -> [strings] JSON, for the attributes rate.")] = None,
    relation: Annotated[Optional[str], typer.Option(help="Relation id whose attributes A(r) to use (with --attributes).")] = None,
    as_json: JsonOption = False,
    threads: ThreadsOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Per layer: top-k tokens of the projected hidden state, object rank/probability, attributes rate."""
    from factscope.localize.attributes import AttributeSets
    from factscope.localize.lens import vocab_lens

    if not prompt.strip():
        fail("The prompt is empty.")
    if (attributes is None) != (relation is None):
        fail("--attributes and --relation go together.")
    check_input_file(attributes, "--attributes")
    set_threads(threads)
    adapter = load_adapter(model)
    check_k(adapter, k)
    check_prompt_fits(adapter, prompt)
    try:
        attribute_ids = None
        if attributes is not None:
            attribute_ids = AttributeSets.from_file(adapter.tokenizer, attributes).ids(relation)  # type: ignore[arg-type]
        result = vocab_lens(adapter, prompt, subject=subject, position=position, k=k, object=object_, raw=raw,
                            attribute_ids=attribute_ids, relation_id=relation)
    except _user_errors() as err:
        fail(str(err))
        return
    if as_json:
        print_json(result.to_dict())
        return
    head = f"{adapter.name}: {prompt!r} @ token {result.position} ({result.position_token!r})"
    if result.object_id is not None:
        head += f", object {result.object_token!r}"
    typer.echo(head + (" [raw]" if raw else ""))
    shown = min(8, result.k)
    for row in result.layers:
        cells = [f"{row.layer:>3}"]
        if row.object_rank is not None:
            cells.append(f"rank {row.object_rank:>6} p={row.object_prob:.4f}")
        if row.attributes_rate is not None:
            cells.append(f"AR {100 * row.attributes_rate:5.1f}%")
        cells.append(" ".join(repr(t) for t in row.top_tokens[:shown]))
        typer.echo("  ".join(cells))


@model_options()
def lens_dataset(
    data: KnownsOption,
    attributes: Annotated[Path, typer.Option(help="relation_id -> [attribute strings] JSON.")],
    out: Annotated[Path, typer.Option(help="Output folder for JSON and PNG plots.")],
    n: Annotated[Optional[int], typer.Option(min=1, help="Use the first N usable facts (default: all).")] = None,
    k: KOption = 50,
    raw: RawOption = False,
    batch_size: BatchSizeOption = 16,
    knockout: Annotated[bool, typer.Option("--knockout/--no-knockout", help="Run the MLP/attention knock-out.")] = True,
    knockout_n: Annotated[Optional[int], typer.Option(min=1, help="Knock out on the first N facts only (default: all).")] = None,
    window: Annotated[int, typer.Option(min=0, help="Layers zeroed per knock-out window.")] = 10,
    eval_layer: Annotated[Optional[int], typer.Option(help="Layer where the AR decline is read (default: last).")] = None,
    attribute_tokens: Annotated[str, typer.Option(help="all (RETS: every token of each attribute) | first.")] = "all",
    seed: Annotated[int, typer.Option(help="Seed of the random-token draw.")] = 0,
    threads: ThreadsOption = None,
    shard: ShardOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """RETS Figure 3 / Table 2 over a dataset: AR by layer, rank flow, Spearman ρ, knock-out declines (data-parallel under torchrun)."""
    from factscope.datasets import load_knowns, load_relation_attributes
    from factscope.localize.attributes import AttributeSets
    from factscope.localize.lens_dataset import LensSettings, run_lens_dataset
    from factscope.reports.lens_plots import plot_attributes_rate, plot_knockout, plot_rank_flow

    if attribute_tokens not in ("all", "first"):
        fail(f"--attribute-tokens must be all or first, got {attribute_tokens!r}.")
    check_input_file(data, "--data")
    check_input_file(attributes, "--attributes")
    check_output_dir(out)
    share = shard_or_exit(shard)
    ranks = None
    try:
        facts = load_knowns(data)
        mapping = load_relation_attributes(attributes)
        ranks, model = join_ranks(share, model, threads)
        adapter = load_adapter(model)
        check_k(adapter, k)
        check_layer_index(adapter, eval_layer, "--eval-layer")
        sets = AttributeSets(adapter.tokenizer, mapping, mode=attribute_tokens)
        settings = dict(n=n, k=k, raw=raw, batch_size=batch_size, knockout=knockout, knockout_n=knockout_n,
                        window=window, eval_layer=eval_layer, seed=seed)
        if share.whole:
            result = run_lens_dataset(adapter, facts, sets, **settings)
        else:
            result = _lens_share(adapter, facts, sets, LensSettings(**settings).check(adapter), ranks, out)
    except _user_errors() as err:
        fail(str(err))
        return
    finally:
        if ranks is not None:
            ranks.close()
    if result is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    summary = {"model": adapter.name, "data": str(data), "attributes": str(attributes), "k": k, "raw": raw,
               "attribute_tokens": attribute_tokens, **result.summary()}
    _write_json(out / "lens_dataset.json", result.to_dict())
    _write_json(out / "summary.json", summary)
    plots = [plot_attributes_rate(result, out / "attributes_rate.png"), plot_rank_flow(result, out / "rank_flow.png")]
    if result.knockout:
        plots.append(plot_knockout(result, out / "knockout.png"))
    print_json(summary)
    typer.echo(f"wrote {out / 'lens_dataset.json'}, {out / 'summary.json'}, " + ", ".join(str(p) for p in plots), err=True)


@model_options()
def dynamics(
    data: KnownsOption,
    out: Annotated[Path, typer.Option(help="Output folder for JSON and PNG.")],
    n: Annotated[Optional[int], typer.Option(min=1, help="Use the first N facts (default: all).")] = None,
    k: KOption = 50,
    raw: RawOption = False,
    batch_size: BatchSizeOption = 16,
    threads: ThreadsOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """PMET Figure 2: cosine and top-k Jaccard of h^{l-1} vs a^l and vs m^l at the last token."""
    from factscope.datasets import load_knowns
    from factscope.localize.dynamics import component_dynamics, dynamics_summary
    from factscope.reports.lens_plots import plot_dynamics

    check_input_file(data, "--data")
    check_output_dir(out)
    try:
        facts = load_knowns(data, n=n)
        set_threads(threads)
        adapter = load_adapter(model)
        check_k(adapter, k)
        result = component_dynamics(adapter, [f.prompt for f in facts], k=k, raw=raw, batch_size=batch_size)
    except _user_errors() as err:
        fail(str(err))
        return
    numbers = dynamics_summary(result, adapter.n_layers)
    ffn_stable = numbers["ffn_stable_layer"]["both"]
    summary = {"model": adapter.name, "data": str(data), "n": result.n, "k": k, "raw": raw, **numbers}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "dynamics.json", {**result.to_dict(), "summary": summary})
    plot = plot_dynamics(result, out / "dynamics.png", stable_layer=ffn_stable)
    print_json(summary)
    typer.echo(f"wrote {out / 'dynamics.json'}, {plot}", err=True)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))


def _lens_share(adapter, facts, sets, settings, ranks, out: Path):  # type: ignore[no-untyped-def]
    """This rank's share into out/parts/K-of-N; the merged result on rank 0 (or the last --shard), else None."""
    from factscope.localize.lens_shards import lens_share, merged_lens

    lens_share(adapter, facts, sets, settings, ranks.shard, out, progress=ranks.main)
    ranks.barrier()
    if ranks.distributed and not ranks.main:
        return None
    result = merged_lens(adapter, facts, sets, settings, out)
    if result is None:
        typer.echo(f"{out}: shard {ranks.shard} done; rerun any shard once all are done to write the summary.")
    return result


def register(app: typer.Typer) -> None:
    app.command()(lens)
    app.command("lens-dataset")(lens_dataset)
    app.command()(dynamics)
