"""Options shared by CLI commands, declared once: model, device, output, threads, editor, hyperparameters.

Usage::

    from factscope.cli.options import JsonOption, ModelSpec, SetOption, ThreadsOption, model_options

    @model_options()
    def mine(sets: SetOption = [], as_json: JsonOption = False, threads: ThreadsOption = None,
             model: ModelSpec = ModelSpec()) -> None:
        ...   # --set, --json, --threads; --model/-m, --device, --dtype, --device-map as one ModelSpec

Every command that computes takes ``--model`` (with ``--device``/``--dtype``/``--device-map``
through :func:`model_options`), ``--json`` and ``--threads``; the editing commands take
``--editor``, ``--hparams`` and ``--set`` (parsed by ``factscope.cli.editor_args``).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="HF model id, local folder or .gguf file; default: the bundled SmolLM2-135M-Instruct."),
]
DeviceOption = Annotated[Optional[str], typer.Option(help="torch device, e.g. cpu, cuda, cuda:1.")]
DtypeOption = Annotated[Optional[str], typer.Option(help="float32 | float16 | bfloat16 (default: the model's).")]
DeviceMapOption = Annotated[Optional[str], typer.Option("--device-map", help="Passed to transformers, e.g. auto (shards over GPUs).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

ThreadsOption = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (1 helps on a busy machine).")]
EditorOption = Annotated[str, typer.Option("--editor", "-e", help="A registered editor: rome | rets | memit | pmet | ft | kn | mend "
                                                                  "(`factscope edit-params EDITOR` lists its hyperparameters).")]
HparamsOption = Annotated[Optional[Path], typer.Option("--hparams", help="YAML/JSON file of editor hyperparameters.")]
SetOption = Annotated[list[str], typer.Option("--set", help="Override an editor hyperparameter, key=value (repeatable); "
                                                            "`factscope edit-params EDITOR` lists the fields.")]
CorpusOption = Annotated[Optional[Path], typer.Option("--corpus", help="Text/JSONL file for the key covariance "
                                                                       "(default: text the model generates).")]

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
