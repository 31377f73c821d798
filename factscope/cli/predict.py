"""``factscope predict``: the model's top next tokens for a prompt.

Usage::

    factscope predict "The capital of France is" --k 5 --json --threads 1
"""

from __future__ import annotations

from typing import Annotated

import typer

from factscope.cli.common import check_k, check_prompt_fits, fail, load_adapter, print_json, set_threads
from factscope.cli.options import JsonOption, ModelSpec, ThreadsOption, model_options


@model_options()
def predict(
    prompt: Annotated[str, typer.Argument(help="Text whose next token to predict.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many tokens to show.")] = 10,
    as_json: JsonOption = False,
    threads: ThreadsOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Show the top-k next tokens and their probabilities."""
    from factscope.scoring import top_k_next_tokens

    if not prompt.strip():
        fail("The prompt is empty.")
    set_threads(threads)
    adapter = load_adapter(model)
    check_k(adapter, k)
    check_prompt_fits(adapter, prompt)
    top = top_k_next_tokens(adapter, prompt, k=k)
    if as_json:
        print_json({"model": adapter.name, "prompt": prompt, "top": [{"token": t, "prob": p} for t, p in top]})
        return
    typer.echo(f"{adapter.name}: {prompt!r} →")
    for rank, (token, prob) in enumerate(top, 1):
        typer.echo(f"{rank:>3}. {token!r:<20} {prob:7.4f}  {'█' * int(round(prob * 40))}")


def register(app: typer.Typer) -> None:
    app.command()(predict)
