"""Checks and helpers shared by CLI commands (the options themselves are declared in ``options.py``).

Usage::

    @app.command()
    @model_options()
    def mine(as_json: JsonOption = False, model: ModelSpec = ModelSpec()) -> None:
        adapter = load_adapter(model)  # --model/-m, --device, --dtype, --device-map, parsed into one ModelSpec

    check_input_file(path, "--data")      # exit 2 with one error line before any model loads
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer

# Kept importable from here for older command modules; declared in options.py.
from factscope.cli.options import (  # noqa: F401
    DeviceMapOption,
    DeviceOption,
    DtypeOption,
    JsonOption,
    ModelOption,
    ModelSpec,
    ThreadsOption,
    model_options,
)
from factscope.models.adapter import ModelAdapter

def check_model_spec(spec: ModelSpec) -> None:
    """Exit cleanly on a ``--device``/``--dtype``/``--device-map`` that cannot work, before anything loads."""
    import torch

    from factscope.models.loading import _resolve_dtype

    try:
        _resolve_dtype(spec.dtype)
    except ValueError as err:
        fail(f"--dtype: {err}")
    if spec.device is not None:
        try:
            device = torch.device(spec.device)
        except (RuntimeError, ValueError):
            fail(f"--device {spec.device!r} is not a torch device; use e.g. cpu, cuda, cuda:1.")
            return
        if device.type == "cuda":
            if not torch.cuda.is_available():
                fail(f"--device {spec.device}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu.")
            if device.index is not None and device.index >= torch.cuda.device_count():
                fail(f"--device {spec.device}: only {torch.cuda.device_count()} CUDA device(s) here.")
        elif device.type == "mps" and not torch.backends.mps.is_available():
            fail(f"--device {spec.device}: MPS is not available on this machine.")
        elif device.type not in ("cpu", "cuda", "mps", "meta", "xpu"):
            fail(f"--device {spec.device!r}: unsupported device type {device.type!r}; use cpu or cuda.")


def load_adapter(model: ModelSpec | str | None) -> ModelAdapter:
    """Load the model named on the command line (``ModelSpec`` or bare ``--model``); load errors exit cleanly."""
    from factscope.models import ModelLoadError, UnknownArchitectureError, load_model

    spec = model if isinstance(model, ModelSpec) else ModelSpec(model)
    check_model_spec(spec)
    try:
        return load_model(spec.name, device=spec.device, dtype=spec.dtype, device_map=spec.device_map).adapter
    except (ModelLoadError, UnknownArchitectureError, ValueError, OSError) as err:
        fail(str(err))
        raise  # unreachable; keeps type checkers happy


# ------------------------------------------------------------------ early checks of inputs and outputs
def _probe_writable(folder: Path) -> str | None:
    """Why no file can be created in the existing folder ``folder``, or ``None``."""
    try:
        fd, name = tempfile.mkstemp(prefix=".factscope-probe-", dir=folder)
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    os.unlink(name)
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_folder(folder: Path, label: str) -> None:
    """Exit unless ``folder`` is, or can be created as, a folder where files can be written."""
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        where = "is a file, not a folder" if existing == folder.absolute() else f"lies under {existing}, a file, not a folder"
        fail(f"{label} {where}.")
    problem = _probe_writable(existing)
    if problem:
        fail(f"{label}: cannot write in {existing} ({problem}).")


def check_output_dir(path: Path | None, option: str = "--out") -> Path | None:
    """Exit unless ``path`` is (or can become) a writable folder; creates nothing."""
    if path is not None:
        _check_folder(path, f"{option} {path}")
    return path


def check_output_file(path: Path | None, option: str) -> Path | None:
    """Exit unless the file ``path`` can be written (its folder exists or can be created, and is writable)."""
    if path is None:
        return None
    if path.is_dir():
        fail(f"{option} {path} is a folder; give a file name.")
    if path.exists() and not os.access(path, os.W_OK):
        fail(f"{option} {path}: the file is not writable.")
    if path.parent.absolute() != path.absolute() and not path.parent.absolute().is_dir():
        existing = _nearest_existing(path.parent.absolute())
        if not existing.is_dir():
            fail(f"{option} {path} lies under {existing}, a file, not a folder.")
    _check_folder(path.parent, f"{option} {path}")
    return path


def check_input_file(path: Path | None, option: str) -> Path | None:
    """Exit unless ``path`` is an existing, readable file."""
    if path is None:
        return None
    if not path.exists():
        fail(f"{option} {path} does not exist.")
    if not path.is_file():
        fail(f"{option} {path} is not a file.")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        fail(f"{option} {path} is not readable ({err.strerror or err}).")
    return path


def check_corpus_file(path: Path | None, option: str = "--corpus") -> Path | None:
    """Exit unless ``path`` is a corpus for key statistics whose every record reads and which holds some text."""
    from factscope.edit.corpus import CorpusError, TextFileCorpus

    if check_input_file(path, option) is None:
        return None
    has_text = False
    try:
        for text in TextFileCorpus(path).texts():  # every record, so a bad line fails here and not mid-run
            has_text = has_text or bool(text.strip())
    except (CorpusError, UnicodeDecodeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        fail(f"{option} {err}" if str(path) in str(err) else f"{option} {path}: {err}")
        return None
    if not has_text:
        fail(f"{option} {path} contains no text.")
    return path


def check_hparams_file(path: Path | None, option: str = "--hparams") -> Path | None:
    """Exit unless ``path`` is a readable YAML (``.yaml``/``.yml``) or JSON file holding a mapping."""
    if path is None:
        return None
    check_input_file(path, option)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{option} {path} is not a UTF-8 text file.")
        return None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:  # includes !!python/... tags, which safe_load refuses
            detail = " ".join(str(err).split())
            fail(f"{option} {path} is not valid (safe) YAML: {detail[:200]}")
            return None
        data = {} if data is None else data
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            fail(f"{option} {path} is not valid JSON: {err} (use .yaml/.yml for YAML).")
            return None
    if not isinstance(data, dict):
        fail(f"{option} {path}: expected a mapping of hyperparameters, got {type(data).__name__}.")
    return path


def parse_layer(value: str | None, option: str = "--layer") -> int | float | None:
    """An integer layer index, or a fraction of depth in [0, 1) (e.g. 0.5)."""
    if value is None:
        return None
    text = value.strip()
    try:
        number: int | float = float(text) if "." in text else int(text)
    except ValueError:
        fail(f"{option} expects a layer index (e.g. 5) or a fraction of depth (e.g. 0.4), got {value!r}.")
        raise
    if isinstance(number, float) and not 0.0 <= number < 1.0:
        fail(f"{option} {value}: a fraction of depth must lie in [0, 1).")
    return number


def check_layer_index(adapter: ModelAdapter, layer: int | float | None, option: str = "--layer") -> None:
    """Exit unless an integer ``layer`` exists in the loaded model (negative counts from the end)."""
    if isinstance(layer, int) and not 0 <= layer < adapter.n_layers:
        fail(f"{option} {layer} is out of range for {adapter.name} with {adapter.n_layers} layers "
             f"(valid: 0..{adapter.n_layers - 1}).")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (validated ≥ 1 by the option's ``min``)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def check_prompt_fits(adapter: ModelAdapter, text: str, option: str = "prompt", *, extra_tokens: int = 0) -> None:
    """Exit if ``text`` (plus ``extra_tokens``) is longer than the model's context."""
    limit = adapter.max_positions
    if limit is None:
        return
    n = len(adapter.tokenizer(text)["input_ids"]) + extra_tokens
    if n > limit:
        fail(f"The {option} is {n} tokens long; {adapter.name} takes at most {limit} tokens.")


def check_k(adapter: ModelAdapter, k: int, option: str = "--k") -> None:
    """Exit if top-``k`` asks for more tokens than the vocabulary has."""
    vocab = int(adapter.unembed.weight.shape[0]) if hasattr(adapter.unembed, "weight") else len(adapter.tokenizer)
    if k > vocab:
        fail(f"{option} {k} is larger than the vocabulary of {adapter.name} ({vocab} tokens).")


def fail(message: str, code: int = 2) -> None:
    """Print an error for a person and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout."""
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
