"""Resumable evaluation runs: edit (single, batch or sequential), evaluate, append JSON lines.

Usage::

    config = RunConfig(editor="rome", data="counterfact_500.json", format="counterfact", n=20)
    run_evaluation(adapter, cases, named_editor("rome"), config, "runs/rome", all_cases=all_cases)

Modes:

* ``single``: per case, edit → evaluate → revert.
* ``batch``: the cases are cut into chunks of ``batch_size`` (default: all); each
  chunk is edited in one call, every case of it evaluated, then reverted. Chunk
  deltas are saved under ``deltas/`` so a resumed run does not recompute them.
* ``sequential``: edits are applied one after another, each computed on the model
  edited by all previous ones (deltas saved under ``deltas/``); after the last edit
  every case is evaluated on the accumulated model.

Perspectives: ``entity`` edits (s, r, o) → (s, r, o*); ``relation`` edits the
relation prompts (add for o*, remove for o, ``relation_edit_requests``; with
``relation_requests="add"`` the add request alone); ``both`` runs each. Every case is evaluated with all metrics; a line per (perspective, case).
Supplements (R-Specificity o2, Consistency references, zsRE loc predictions) are
computed with the unedited model before any edit and cached per model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from factscope.datasets.records import Case, EditCase, ZsreCase
from factscope.datasets.relations import RELATIONS
from factscope.datasets.supplements import relation_requests
from factscope.edit.delta import DeltaError, WeightDelta, applied_in_turn
from factscope.edit.probe import side_effect_summary
from factscope.edit.request import EditRequest
from factscope.edit.value_store import checkpoint_values
from factscope.evaluate.editors import EditorFn, GroupEditor
from factscope.evaluate.generation import GenerationConfig
from factscope.evaluate.metrics import evaluate_case
from factscope.evaluate.parts import all_records, done_pairs, part_folder
from factscope.evaluate.runlog import RunLog
from factscope.evaluate.supplements import CaseSupplement, SupplementConfig, SupplementStore
from factscope.evaluate.text_metrics import Idf
from factscope.io_utils import FolderLock, quarantine
from factscope.models.adapter import ModelAdapter
from factscope.parallel.ranks import Shard, shard_indices

MODES = ("single", "batch", "sequential")
PERSPECTIVES = ("entity", "relation", "both")
RELATION_REQUESTS = ("add+remove", "add")


class RunConfigError(ValueError):
    """Options that do not fit together (e.g. the relation perspective on zsRE)."""


@dataclass
class RunConfig:
    """Everything that determines a run's results; stored in the manifest."""

    editor: str
    data: str | None
    format: str
    n: int | None = None
    mode: str = "single"
    batch_size: int | None = None
    perspective: str = "entity"
    generation: bool = True
    model: str | None = None
    model_fingerprint: str | None = None
    hparams: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    seed: int = 0
    dataset_key: str | None = None
    supplement: dict[str, Any] = field(default_factory=lambda: SupplementConfig().to_dict())
    generation_config: dict[str, Any] = field(default_factory=lambda: GenerationConfig().to_dict())
    relation_requests: str | None = None  # relation edits: None/"add+remove" (both requests) or "add" (add only)

    def validate(self) -> "RunConfig":
        if self.mode not in MODES:
            raise RunConfigError(f"Unknown mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.perspective not in PERSPECTIVES:
            raise RunConfigError(f"Unknown perspective {self.perspective!r}; choose one of {', '.join(PERSPECTIVES)}.")
        if self.relation_requests not in (None, *RELATION_REQUESTS):
            raise RunConfigError(f"Unknown relation_requests {self.relation_requests!r}; choose one of {', '.join(RELATION_REQUESTS)}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise RunConfigError("batch_size must be at least 1.")
        if self.n is not None and self.n < 1:
            raise RunConfigError("n must be at least 1.")
        return self

    @property
    def display_label(self) -> str:
        if self.label:
            return self.label
        if not self.overrides:
            return self.editor
        return f"{self.editor} ({', '.join(f'{k}={v}' for k, v in sorted(self.overrides.items()))})"

    def perspectives(self) -> list[str]:
        return ["entity", "relation"] if self.perspective == "both" else [self.perspective]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSummary:
    folder: Path
    total: int
    new: int
    resumed: bool


def requests_for(case: Case, perspective: str, relation: str | None = None) -> list[EditRequest]:
    """The edit requests of one case under a perspective (``relation="add"``: the add request alone)."""
    if perspective == "entity":
        return [case.request]
    if not isinstance(case, EditCase):
        raise RunConfigError("The relation perspective needs COUNTERFACT-like cases with a relation_id.")
    requests = relation_requests(case)
    return requests[:1] if relation == "add" else requests


def _check_cases(cases: Sequence[Case], config: RunConfig) -> None:
    if not cases:
        raise RunConfigError("No cases to evaluate.")
    if "relation" in config.perspectives():
        bad = [c.case_id for c in cases if isinstance(c, ZsreCase) or c.relation_id not in RELATIONS]
        if bad:
            raise RunConfigError(
                f"The relation perspective needs a relation_id with a name in factscope.datasets.relations; "
                f"{len(bad)} case(s) lack one (first: {bad[0]!r}). zsRE and the flattened CounterFact format have none."
            )
    ids = [c.case_id for c in cases]
    if len(set(map(str, ids))) != len(ids):
        raise RunConfigError("Case ids repeat; every case needs its own id.")


class _Evaluator:
    """Evaluates cases on the current model and appends their records."""

    def __init__(self, adapter: ModelAdapter, config: RunConfig, supplements: dict, log: RunLog, idf: Idf | None, bar: tqdm):
        self.adapter = adapter
        self.config = config
        self.supplements = supplements
        self.log = log
        self.idf = idf
        self.bar = bar
        self.generation = GenerationConfig(**config.generation_config) if config.generation else None
        self.new = 0

    def record(self, perspective: str, index: int, case: Case, *, edit_seconds: float | None, error: str | None = None,
               delta: WeightDelta | None = None) -> None:
        base = {
            "perspective": perspective,
            "index": index,
            "case_id": case.case_id,
            "editor": self.config.display_label,
            "kind": case.kind,
            "edit_seconds": edit_seconds,
        }
        if delta is not None and "side_effects" in delta.metadata:
            base["side_effects"] = side_effect_summary(delta.metadata["side_effects"])
        if error is None:
            start = time.perf_counter()
            sup: CaseSupplement = self.supplements[case.case_id]
            result = evaluate_case(self.adapter, case, sup, generation=self.generation, idf=self.idf, seed=self.config.seed)
            base.update(result, eval_seconds=time.perf_counter() - start, error=None)
        else:
            base.update(metrics=None, details=None, eval_seconds=None, error=error)
        self.log.append(base)
        self.new += 1
        self.bar.update(1)


def _edit(editor: EditorFn, adapter: ModelAdapter, requests: list[EditRequest]) -> tuple[WeightDelta | None, float, str | None]:
    start = time.perf_counter()
    try:
        delta = editor(adapter, requests)
    except (ValueError, RuntimeError) as err:  # a case the editor cannot do: record it, go on
        return None, time.perf_counter() - start, f"{type(err).__name__}: {err}"
    return delta, time.perf_counter() - start, None


def _saved_delta(path: Path, compute) -> tuple[WeightDelta | None, float, str | None]:  # type: ignore[no-untyped-def]
    """Load a delta saved by an earlier (interrupted) run, or compute and save it."""
    if path.is_file():
        try:
            return WeightDelta.load(path), 0.0, None
        except DeltaError as err:  # a damaged saved delta is moved aside and recomputed
            quarantine(path, str(err), "saved delta")
    delta, seconds, error = compute()
    if delta is not None:
        delta.save(path)  # atomic: a unique temporary name, then os.replace
    return delta, seconds, error


def _chunks(n: int, size: int | None) -> Iterator[range]:
    size = size or n
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def shard_block(config: RunConfig, n_cases: int, group: int = 1) -> int:
    """Cases that must stay together on one rank: a batch-mode chunk, or a single-mode edit group."""
    if config.mode == "batch":
        return config.batch_size or n_cases
    return max(1, group)


def check_shardable(config: RunConfig, shard: Shard) -> None:
    """Sequential edits build on each other: such a run cannot be split."""
    if not shard.whole and config.mode == "sequential":
        raise RunConfigError("Sequential mode edits every case on top of the previous ones; it cannot be split "
                             "across ranks or shards (run it in one process).")


def run_evaluation(
    adapter: ModelAdapter,
    cases: Sequence[Case],
    editor: EditorFn,
    config: RunConfig,
    out: str | Path,
    *,
    all_cases: Sequence[Case] | None = None,
    idf: Idf | None = None,
    supplement_store: SupplementStore | None = None,
    progress: bool = True,
    group: int = 1,
    shard: Shard | None = None,
) -> RunSummary:
    """Evaluate ``cases`` after edits by ``editor``; resumes a run already in ``out``.

    ``group`` > 1 (single mode): compute that many cases' edits together when the
    editor is a ``GroupEditor`` (``named_editor``'s; ROME and RETS batch them); each case is still evaluated with
    its own edit alone, and the edits equal one-at-a-time editing up to float rounding.

    ``shard`` (``Shard(K, N)``, N > 1): evaluate only this share of the cases (blocks of
    ``group`` cases, or batch-mode chunks, dealt round-robin), writing ``out/parts/K-of-N``;
    its records equal those of a one-process run. See ``factscope.evaluate.parts``.
    """
    config.validate()
    _check_cases(cases, config)
    shard = shard or Shard()
    check_shardable(config, shard)
    part = part_folder(out, shard)
    # One writer per folder: a second process on the same --out (or the same shard of it) gets LockedError at once.
    with FolderLock(part, "--out folder" if shard.whole else f"--out folder's shard {shard}"):
        try:
            version = metadata.version("factscope")
        except metadata.PackageNotFoundError:
            version = "unknown"
        ids = [c.case_id for c in cases]
        extra = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "factscope_version": version, "model_name": adapter.name}
        if not shard.whole:  # the run's own manifest, shared by all its parts (identical content, atomic writes)
            RunLog(out).start(config.to_dict(), ids, extra=extra)
        log = RunLog(part)
        resumed = log.start(config.to_dict(), ids, extra=extra if shard.whole else {**extra, "shard": str(shard)})
        log.done()  # repairs this part's truncated last line
        mine = set(shard_indices(len(cases), shard, shard_block(config, len(cases), group)))
        done = {(p, i) for p, i in done_pairs(out) if i in mine}  # also what other parts or a merged file hold
        perspectives = config.perspectives()
        total = len(mine) * len(perspectives)
        if len(done) >= total:
            return RunSummary(log.folder, total, 0, resumed)

        store = supplement_store or SupplementStore(
            adapter,
            all_cases or cases,
            dataset_key=config.dataset_key or str(config.data),
            config=SupplementConfig.from_dict(config.supplement),
            progress=progress,
        )
        todo_cases = [c for i, c in enumerate(cases) if i in mine and any((p, i) not in done for p in perspectives)]
        supplements = store.get(todo_cases, references=config.generation)
        bar = tqdm(total=total, initial=len(done), desc=f"evaluate {config.display_label}", unit="case", disable=not progress)
        ev = _Evaluator(adapter, config, supplements, log, idf, bar)
        try:
            for perspective in perspectives:
                pending = [i for i in range(len(cases)) if i in mine and (perspective, i) not in done]
                if not pending:
                    continue
                if config.mode == "single":
                    _run_single(adapter, cases, editor, perspective, pending, ev, group)
                elif config.mode == "batch":
                    _run_batch(adapter, cases, editor, perspective, set(pending), ev, log.folder, config.batch_size)
                else:
                    _run_sequential(adapter, cases, editor, perspective, pending, ev, log.folder)
        finally:
            bar.close()
        return RunSummary(log.folder, total, ev.new, resumed)


def _edit_group(editor: EditorFn, adapter: ModelAdapter, request_lists: list[list[EditRequest]],
                ) -> list[tuple[WeightDelta | None, float, str | None]]:
    """Independent single edits of several cases; together where the editor is a ``GroupEditor``."""
    if not isinstance(editor, GroupEditor) or len(request_lists) == 1 or any(len(r) != 1 for r in request_lists):
        return [_edit(editor, adapter, r) for r in request_lists]
    start = time.perf_counter()
    try:
        deltas = editor.edit_each(adapter, [r[0] for r in request_lists])
    except (ValueError, RuntimeError):  # some case cannot be edited: edit one by one so only it fails
        return [_edit(editor, adapter, r) for r in request_lists]
    seconds = (time.perf_counter() - start) / len(request_lists)
    return [(delta, seconds, None) for delta in deltas]


def _run_single(adapter, cases, editor, perspective, pending, ev: _Evaluator, group: int) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(pending), max(1, group)):
        chunk = pending[start : start + max(1, group)]
        results = _edit_group(editor, adapter, [requests_for(cases[i], perspective, ev.config.relation_requests) for i in chunk])
        for i, (delta, seconds, error) in zip(chunk, results):
            if delta is None:
                ev.record(perspective, i, cases[i], edit_seconds=seconds, error=error)
                continue
            with delta.applied(adapter):
                ev.record(perspective, i, cases[i], edit_seconds=seconds, delta=delta)


def _run_batch(adapter, cases, editor, perspective, pending: set, ev: _Evaluator, folder: Path, size) -> None:  # type: ignore[no-untyped-def]
    deltas = folder / "deltas" / perspective
    deltas.mkdir(parents=True, exist_ok=True)
    for chunk in _chunks(len(cases), size):
        todo = [i for i in chunk if i in pending]
        if not todo:
            continue
        requests = [r for i in chunk for r in requests_for(cases[i], perspective, ev.config.relation_requests)]
        path = deltas / f"batch-{chunk.start:06d}-{chunk.stop:06d}.safetensors"
        with checkpoint_values(deltas / "values"):  # a killed batch edit resumes from its finished value chunks
            delta, seconds, error = _saved_delta(path, lambda: _edit(editor, adapter, requests))
        per_case = seconds / len(chunk)
        if delta is None:
            for i in todo:
                ev.record(perspective, i, cases[i], edit_seconds=per_case, error=error)
            continue
        with delta.applied(adapter):
            for i in todo:
                ev.record(perspective, i, cases[i], edit_seconds=per_case, delta=delta)


def _run_sequential(adapter, cases, editor, perspective, pending, ev: _Evaluator, folder: Path) -> None:  # type: ignore[no-untyped-def]
    deltas = folder / "deltas" / perspective
    deltas.mkdir(parents=True, exist_ok=True)
    info: dict[int, tuple[float, str | None]] = {}
    with applied_in_turn(adapter) as apply:
        for i, case in enumerate(tqdm(cases, desc="sequential edits", leave=False, disable=ev.bar.disable)):
            path = deltas / f"edit-{i:06d}.safetensors"
            delta, seconds, error = _saved_delta(path, lambda: _edit(editor, adapter, requests_for(case, perspective, ev.config.relation_requests)))
            info[i] = (seconds, error)
            if delta is not None:
                apply(delta)
        for i in pending:
            seconds, error = info[i]
            ev.record(perspective, i, cases[i], edit_seconds=seconds, error=error)


def load_run(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Manifest and records of a run folder and its parts (one per (perspective, index), in run order)."""
    manifest = RunLog(folder).manifest()
    if manifest is None:
        raise FileNotFoundError(f"{folder} is not a run folder (no manifest.json).")
    return manifest, all_records(folder)


__all__ = ["MODES", "PERSPECTIVES", "RELATION_REQUESTS", "RunConfig", "RunConfigError", "RunSummary", "check_shardable", "load_run", "requests_for", "run_evaluation",
           "shard_block"]
