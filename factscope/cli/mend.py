"""``factscope train-mend``: train the MEND editor that ``factscope edit --editor mend`` uses.

Usage::

    factscope train-mend --data ../shared/data/counterfact/counterfact-train.json --steps 300 --threads 1
    factscope train-mend --data counterfact-train.json --val-data counterfact-val.json --set rank=64 --set lr=3e-4
    factscope train-mend --data zsre_train.json --fresh        # discard a checkpoint of the same settings

A killed run resumes from its last checkpoint when the same command is run again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli.editor_args import parse_set_items
from factscope.cli.common import (
    ModelSpec,
    check_hparams_file,
    check_input_file,
    fail,
    load_adapter,
    model_options,
    print_json,
    set_threads,
)


@model_options()
def train_mend_cmd(
    data: Annotated[Path, typer.Option("--data", help="Training edits: COUNTERFACT (original or flattened) or zsRE JSON.")],
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="Validation edits (default: the last val_size training records).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=0, help="Training steps (default: the hyperparameters').")] = None,
    n: Annotated[Optional[int], typer.Option("--n", min=2, help="Use only the first N training records.")] = None,
    hparams: Annotated[Optional[Path], typer.Option("--hparams", help="YAML/JSON file of MEND hyperparameters.")] = None,
    sets: Annotated[list[str], typer.Option("--set", help="Override a hyperparameter, key=value (repeatable). See `factscope edit-params mend`.")] = [],  # noqa: B006
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard a checkpoint of the same settings and start again.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads (1 helps on a busy machine).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Train (or resume) a MEND editor for the model; validation reports edit success and locality."""
    from factscope.edit.mend import MENDCheckpointError, MENDDataError, MENDHyperParams, train_mend
    from factscope.io_utils import LockedError

    check_input_file(data, "--data")
    check_input_file(val_data, "--val-data")
    check_hparams_file(hparams)
    overrides: dict[str, object] = dict(parse_set_items(sets))
    if steps is not None:
        overrides["steps"] = steps
    set_threads(threads)
    adapter = load_adapter(model)
    try:
        base = MENDHyperParams.from_file(hparams, adapter) if hparams else MENDHyperParams.for_model(adapter)
        hp_ = base.override(**overrides)
        # every record is checked before the run folder is touched
        result = train_mend(adapter, data, hp_, val_data=val_data, n=n, fresh=fresh, progress=not as_json)
    except (MENDDataError, MENDCheckpointError, LockedError) as err:
        fail(f"{err}{' Start again with --fresh to discard it.' if isinstance(err, MENDCheckpointError) else ''}")
        return
    except ValueError as err:  # a hyperparameter that does not fit
        fail(str(err))
        return
    if as_json:
        print_json({"editor": str(result.editor_path), "steps": result.step, "resumed_from": result.resumed_from,
                    "seconds_per_step": result.seconds_per_step, "validation": result.validation})
        return
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    typer.echo(f"MEND editor for {adapter.name} after {result.step} steps{resumed}: {result.editor_path}")
    if result.seconds_per_step == result.seconds_per_step:  # not NaN: this call trained
        typer.echo(f"  {result.seconds_per_step:.2f} s/step")
    for name, value in result.validation.items():
        typer.echo(f"  val {name:20} {value:.4f}")


def register(app: typer.Typer) -> None:
    app.command("train-mend")(train_mend_cmd)
