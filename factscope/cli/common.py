"""Options and helpers shared by CLI commands.

Usage::

    @app.command()
    def mine(model: ModelOption = None, device: DeviceOption = None, dtype: DtypeOption = None):
        adapter = load_adapter(model, device, dtype)
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import typer

from factscope.models.adapter import ModelAdapter

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="HF model id, local folder or .gguf file; default: the bundled SmolLM2-135M-Instruct."),
]
DeviceOption = Annotated[Optional[str], typer.Option(help="torch device, e.g. cpu, cuda, cuda:1.")]
DtypeOption = Annotated[Optional[str], typer.Option(help="float32 | float16 | bfloat16 (default: the model's).")]
DeviceMapOption = Annotated[Optional[str], typer.Option("--device-map", help="Passed to transformers, e.g. auto (shards over GPUs).")]


def load_adapter(
    model: str | None, device: str | None = None, dtype: str | None = None, device_map: str | None = None
) -> ModelAdapter:
    """Load the model named on the command line, turning load errors into a clean exit."""
    from factscope.models import ModelLoadError, UnknownArchitectureError, load_model

    try:
        return load_model(model, device=device, dtype=dtype, device_map=device_map).adapter
    except (ModelLoadError, UnknownArchitectureError, ValueError) as err:
        fail(str(err))
        raise  # unreachable; keeps type checkers happy


def fail(message: str, code: int = 2) -> None:
    """Print an error for a person and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout."""
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
