"""The editor contract: what every editor declares, and the one place requests and hyperparameters are prepared.

Usage::

    from factscope.edit.registry import get_editor
    from factscope.testing import example_requests, tiny_adapter
    adapter = tiny_adapter("llama")
    editor = get_editor("rome")                                   # an EditorSpec
    editor.parse_overrides({"v_steps": "3", "layer": "2"})        # {'v_steps': 3, 'layer': 2}; no model needed
    job = editor.prepare(adapter, example_requests(1), overrides={"layer": 2, "v_steps": 3, "mom2_n_tokens": 64})
    job.layers                                                    # [2]: resolved and checked before any work
    delta = editor.edit(job)                                      # a WeightDelta; the model is unchanged

An editor is an :class:`Editor`: a name, a hyperparameter class (field groups of
``factscope.edit.hparams``), ``edit(job)`` and optionally ``edit_each(job)`` (independent
single edits computed together). :meth:`EditorSpec.prepare` builds the :class:`EditJob`
once: hyperparameters for the model (family defaults, then a file / dict / object, then
overrides, typed and validated), every request validated, every lookup token the
hyperparameters need located and the edited layers resolved, so an editor starts from
checked inputs and never repeats these steps. An editor that must read more before any
work (RETS: its constraint records) adds a ``prepare`` hook that returns the job with
``state`` filled in. ``RUN_OPTIONS`` plus ``EditorSpec.options`` are the keyword
arguments that are not hyperparameters (``corpus``, ``progress``; RETS: ``subject_pool``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from factscope.edit.delta import WeightDelta
from factscope.edit.hparams import EditHyperParams, HyperParamError
from factscope.edit.keys import lookup_index
from factscope.edit.request import EditRequest
from factscope.models.adapter import ModelAdapter

RUN_OPTIONS = ("corpus", "progress")  # keyword arguments every editor takes besides its hyperparameters

HParamsSource = EditHyperParams | str | Path | Mapping[str, Any] | None


@dataclass(frozen=True)
class EditJob:
    """Checked inputs of one editor call: validated requests, typed hyperparameters, resolved layers."""

    adapter: ModelAdapter
    requests: list[EditRequest]
    hparams: Any  # the editor's hyperparameter class
    layers: list[int]
    corpus: str | Path | None = None
    progress: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # the editor's own run options (EditorSpec.options)
    state: dict[str, Any] = field(default_factory=dict)  # what the editor's prepare hook read before any work

    @property
    def layer(self) -> int:
        """The edited layer (the last of a range)."""
        return self.layers[-1]


@runtime_checkable
class Editor(Protocol):
    """What the registry, ``factscope.edit.edit``, the evaluation and the CLI need of an editor."""

    name: str
    hparams_class: type[EditHyperParams]

    def parse_overrides(self, overrides: Mapping[str, Any]) -> dict[str, Any]: ...

    def hparams(self, adapter: ModelAdapter | None, source: HParamsSource = None,
                overrides: Mapping[str, Any] | None = None) -> EditHyperParams: ...

    def prepare(self, adapter: ModelAdapter, requests: Sequence[EditRequest], hparams: HParamsSource = None, *,
                overrides: Mapping[str, Any] | None = None) -> EditJob: ...

    def edit(self, job: EditJob) -> WeightDelta: ...

    def edit_each(self, job: EditJob) -> list[WeightDelta]: ...


@dataclass(frozen=True)
class EditorSpec:
    """An :class:`Editor` from functions: ``edit_fn(job)``, optional ``edit_each_fn(job)`` and ``prepare_fn(job)``.

    ``dataset_fn(data, fmt, overrides)`` (optional) gives hyperparameters an evaluation
    derives from its data file (RETS: ``constraint_records``).
    """

    name: str
    hparams_class: type[EditHyperParams]
    edit_fn: Callable[[EditJob], WeightDelta]
    edit_each_fn: Callable[[EditJob], list[WeightDelta]] | None = None
    prepare_fn: Callable[[EditJob], EditJob] | None = None
    options: tuple[str, ...] = ()
    dataset_fn: Callable[[str | Path, str, Mapping[str, Any]], dict[str, Any]] | None = None
    summary: str = ""

    # ------------------------------------------------------------------ hyperparameters
    @property
    def run_options(self) -> tuple[str, ...]:
        return (*RUN_OPTIONS, *self.options)

    def split_options(self, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(hyperparameter overrides, run options)``."""
        options = {k: v for k, v in overrides.items() if k in self.run_options}
        return {k: v for k, v in overrides.items() if k not in self.run_options}, options

    def parse_overrides(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Overrides typed and checked without a model (``corpus`` passes as a path string).

        Raises :class:`HyperParamError` naming the valid fields, or the field's type or
        choices; cross-field checks run on the generic defaults with the overrides applied.
        """
        changes, options = self.split_options(overrides)
        parsed = self.hparams_class.parse_changes(changes)
        self.hparams_class().override(**parsed)  # cross-field checks (e.g. PMET's update_attn without δ_attn)
        return {**parsed, **options}

    def hparams(self, adapter: ModelAdapter | None, source: HParamsSource = None,
                overrides: Mapping[str, Any] | None = None) -> EditHyperParams:
        """Family defaults for ``adapter``, then ``source`` (object, YAML/JSON path or dict), then ``overrides``."""
        cls = self.hparams_class
        if source is None:
            base = cls.for_model(adapter)
        elif isinstance(source, (str, Path)):
            base = cls.from_file(source, adapter)
        elif isinstance(source, Mapping):
            base = cls.from_dict(dict(source), adapter)
        elif isinstance(source, cls):
            base = source
        else:
            raise TypeError(f"hparams for {self.name} must be {cls.__name__}, a dict or a file path, not {type(source).__name__}.")
        changes, options = self.split_options(overrides or {})
        if options:
            raise HyperParamError(f"{', '.join(sorted(options))} are run options of {self.name}, not hyperparameters.")
        return base.override(**changes) if changes else base

    # ------------------------------------------------------------------ the one preparation
    def prepare(self, adapter: ModelAdapter, requests: Sequence[EditRequest], hparams: HParamsSource = None, *,
                overrides: Mapping[str, Any] | None = None) -> EditJob:
        """Everything checked before any work: hyperparameters, layers, requests and their lookup tokens."""
        changes, options = self.split_options(overrides or {})
        hp_obj = self.hparams(adapter, hparams, changes)
        layers = hp_obj.edited_layers(adapter)
        if isinstance(requests, EditRequest):
            requests = [requests]
        if not requests:
            raise ValueError("No edit requests given.")
        checked = [r.validate(adapter) for r in requests]
        for lookup in hp_obj.request_lookups():
            for r in checked:
                lookup_index(adapter.tokenizer, r.prompt, r.subject, lookup)
        job = EditJob(adapter, checked, hp_obj, layers, corpus=options.pop("corpus", None),
                      progress=bool(options.pop("progress", False)), options=options)
        return self.prepare_fn(job) if self.prepare_fn is not None else job

    # ------------------------------------------------------------------ work
    @property
    def batches_each(self) -> bool:
        """Whether :meth:`edit_each` computes the single edits together (else one at a time)."""
        return self.edit_each_fn is not None

    def edit(self, job: EditJob) -> WeightDelta:
        return self.edit_fn(job)

    def edit_each(self, job: EditJob) -> list[WeightDelta]:
        """One delta per request, each what :meth:`edit` gives for that request alone on the unedited model."""
        if self.edit_each_fn is not None:
            return self.edit_each_fn(job)
        return [self.edit_fn(dataclasses.replace(job, requests=[r])) for r in job.requests]

    def dataset_overrides(self, data: str | Path | None, fmt: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Hyperparameters an evaluation derives from its data file (none for most editors)."""
        if self.dataset_fn is None or data is None:
            return {}
        return self.dataset_fn(data, fmt, overrides)


__all__ = ["RUN_OPTIONS", "EditJob", "Editor", "EditorSpec", "HParamsSource"]
