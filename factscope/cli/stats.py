"""``factscope covariance``: compute (and cache) the key statistics an editor needs, on one or many ranks.

Usage::

    factscope covariance --layer 5 --corpus enwiki_sample.jsonl --n-tokens 100000
    torchrun --standalone --nproc-per-node 4 -m factscope -- covariance --layer 3 --layer 4 --n-tokens 1000000

Under torchrun each rank sums its share of the corpus; rank 0 writes the cache file
that ROME/MEMIT/PMET later read (same key: model, site, layer, corpus, tokens, dtype).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli.common import ModelSpec, check_corpus_file, fail, load_adapter, model_options, parse_layer


@model_options()
def covariance(
    layer: Annotated[list[str], typer.Option("--layer", help="Layer index (repeatable).")],
    site: Annotated[str, typer.Option(help="mlp_key (ROME/MEMIT) | attn_key (PMET's attention keys).")] = "mlp_key",
    corpus: Annotated[Optional[Path], typer.Option(help="Text/JSONL corpus (default: text the model generates).")] = None,
    n_tokens: Annotated[int, typer.Option("--n-tokens", min=1, help="Tokens to average over (the editors' mom2_n_tokens).")] = 4096,
    accumulate: Annotated[str, typer.Option("--accumulate", help="Accumulation dtype: float64 | float32 (the editors' mom2_dtype).")] = "float64",
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads (default under torchrun: the cores split between ranks).")] = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Second moment E[k kᵀ] of the keys at each --layer, cached for the editors (split across torchrun ranks)."""
    from factscope.cli._ranks import join_ranks, shard_or_exit

    if site not in ("mlp_key", "attn_key"):
        fail(f"--site must be mlp_key or attn_key, got {site!r}.")
    if accumulate not in ("float64", "float32"):
        fail(f"--accumulate must be float64 or float32, got {accumulate!r}.")
    check_corpus_file(corpus)
    layers = [parse_layer(value, "--layer") for value in layer]
    if any(not isinstance(l, int) for l in layers):
        fail("--layer takes layer indices (integers).")
    shard = shard_or_exit(None)
    ranks, model = join_ranks(shard, model, threads)
    try:
        _compute(ranks, model, [int(l) for l in layers if l is not None], site, corpus, n_tokens, accumulate)
    finally:
        ranks.close()


def _compute(ranks, model: ModelSpec, layers: list[int], site: str, corpus: Optional[Path], n_tokens: int,  # type: ignore[no-untyped-def]
             dtype: str) -> None:
    from factscope.cli.common import check_layer_index
    from factscope.edit.corpus import CorpusError, corpus_from
    from factscope.edit.covariance import key_second_moments

    adapter = load_adapter(model)
    for l in layers:
        check_layer_index(adapter, l)
    try:
        stats = key_second_moments(adapter, layers, site_kind=site, corpus=corpus_from(corpus), n_tokens=n_tokens,
                                   dtype=dtype, progress=ranks.main, ranks=ranks)
    except (CorpusError, ValueError) as err:
        fail(f"--corpus: {err}")
        return
    if ranks.main:
        for l, c in sorted(stats.items()):
            typer.echo(f"{site} layer {l}: E[k kᵀ] {tuple(c.shape)} {c.dtype}, trace {float(c.trace()):.12g} "
                       f"({n_tokens} tokens, {ranks.shard.count} rank(s))")


def register(app: typer.Typer) -> None:
    app.command()(covariance)
