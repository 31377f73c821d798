"""Options and helpers shared by CLI commands.

Usage::

    @app.command()
    @model_options()
    def mine(as_json: JsonOption = False, model: ModelSpec = ModelSpec()) -> None:
        adapter = load_adapter(model)  # --model/-m, --device, --dtype, --device-map, parsed into one ModelSpec

    @app.command()
    def small(model: ModelOption = None) -> None:  # only --model
        adapter = load_adapter(model)
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from factscope.models.adapter import ModelAdapter

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="HF model id, local folder or .gguf file; default: the bundled SmolLM2-135M-Instruct."),
]
DeviceOption = Annotated[Optional[str], typer.Option(help="torch device, e.g. cpu, cuda, cuda:1.")]
DtypeOption = Annotated[Optional[str], typer.Option(help="float32 | float16 | bfloat16 (default: the model's).")]
DeviceMapOption = Annotated[Optional[str], typer.Option("--device-map", help="Passed to transformers, e.g. auto (shards over GPUs).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

Command = TypeVar("Command", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how: the values of ``--model``, ``--device``, ``--dtype`` and ``--device-map``."""

    name: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    device_map: Optional[str] = None


# The options behind a ``ModelSpec``, in ModelSpec field order; the keys are the parameter names Typer sees.
_MODEL_SPEC_OPTIONS = {"model": ModelOption, "device": DeviceOption, "dtype": DtypeOption, "device_map": DeviceMapOption}


def model_options(*, device_map: bool = True) -> Callable[[Command], Command]:
    """Usage: ``@model_options()`` on a command with a ``model: ModelSpec = ModelSpec()`` parameter.

    Typer sees ``--model/-m``, ``--device``, ``--dtype`` and (unless ``device_map=False``) ``--device-map``
    in that parameter's place, all defaulting to None; the command receives them as one ``ModelSpec``.
    """
    names = [name for name in _MODEL_SPEC_OPTIONS if device_map or name != "device_map"]

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        if "model" not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a `model: ModelSpec` parameter for @model_options.")
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name != "model":
                params.append(param)
                continue
            params += [inspect.Parameter(name, param.kind, default=None, annotation=_MODEL_SPEC_OPTIONS[name])
                       for name in names]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            spec = ModelSpec(*(kwargs.pop(name, None) for name in _MODEL_SPEC_OPTIONS))
            return command(*args, model=spec, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": signature.return_annotation}
        return wrapper  # type: ignore[return-value]

    return decorate


def load_adapter(model: ModelSpec | str | None) -> ModelAdapter:
    """Load the model named on the command line (``ModelSpec`` or bare ``--model``); load errors exit cleanly."""
    from factscope.models import ModelLoadError, UnknownArchitectureError, load_model

    spec = model if isinstance(model, ModelSpec) else ModelSpec(model)
    try:
        return load_model(spec.name, device=spec.device, dtype=spec.dtype, device_map=spec.device_map).adapter
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
