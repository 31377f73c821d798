"""Resumable evaluation runs for the editing artefacts (a thin layer over ``run_evaluation``).

Usage::

    stats = evaluate_editor(ctx, folder / "runs" / "rome", "rome", cases, all_cases, label="ROME")
    stats.mean("entity", "efficacy"), stats.stats["entity"]["efficacy"].ci

Each run folder is a normal ``factscope evaluate`` run (manifest + results.jsonl), so
an interrupted reproduction resumes case by case and ``factscope summarize`` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factscope.reproduce.context import ReproContext


def load_counterfact(ctx: ReproContext, n: int) -> tuple[list[Any], list[Any], Path, str]:
    """The first ``n`` cases (original COUNTERFACT; the flattened file beyond its size), all cases, path, format."""
    from factscope.datasets import load_cases

    path, fmt = ctx.data.path("counterfact"), "counterfact"
    all_cases = load_cases(path, format=fmt)
    if n > len(all_cases) and ctx.data.counterfact_flat is not None:
        path, fmt = ctx.data.path("counterfact_flat"), "flat"
        all_cases = load_cases(path, format=fmt)
    return all_cases[:n], all_cases, path, fmt


def evaluate_editor(
    ctx: ReproContext,
    folder: Path,
    editor: str,
    cases: list[Any],
    all_cases: list[Any],
    data_path: Path,
    fmt: str,
    *,
    label: str,
    overrides: dict[str, Any] | None = None,
    perspective: str = "entity",
    mode: str = "single",
    batch_size: int | None = None,
    generation: bool | None = None,
    relation_requests: str | None = None,
) -> Any:
    """Run (or resume) one editor over ``cases`` into ``folder``; returns its ``RunStats``."""
    from factscope.evaluate.editors import dataset_editor_kwargs, named_editor
    from factscope.evaluate.runner import RunConfig, run_evaluation
    from factscope.evaluate.summary import summarize_run
    from factscope.evaluate.supplements import SupplementConfig, dataset_key
    from factscope.evaluate.text_metrics import load_idf

    generation = ctx.sizes.generation if generation is None else generation
    kwargs = {} if editor == "none" else ctx.editor_kwargs(editor, **(overrides or {}))
    config = RunConfig(
        editor=editor, data=str(Path(data_path).resolve()), format=fmt, n=len(cases), mode=mode, batch_size=batch_size,
        perspective=perspective, generation=generation, model=ctx.adapter.name, model_fingerprint=ctx.adapter.fingerprint,
        overrides=kwargs, label=label, seed=ctx.seed, dataset_key=dataset_key(data_path, fmt),
        supplement=SupplementConfig(seed=ctx.seed, corpus=str(ctx.data.path("corpus"))).to_dict(),
        relation_requests=relation_requests,
    )
    idf = load_idf(ctx.data.path("corpus")) if generation else None
    editor_fn = named_editor(editor, **kwargs, **dataset_editor_kwargs(editor, data_path, fmt, kwargs))
    run_evaluation(ctx.adapter, cases, editor_fn, config, folder, all_cases=all_cases, idf=idf,
                   progress=ctx.progress, group=ctx.sizes.edit_group if mode == "single" else 1)
    return summarize_run(folder)


def summarize_first(folder: Path, n: int) -> Any:
    """``RunStats`` of a run folder's first ``n`` cases only (to share a larger run with a smaller artefact)."""
    from factscope.evaluate.runner import load_run
    from factscope.evaluate.summary import RunStats, mean_ci

    manifest, records = load_run(folder)
    config = manifest["config"]
    records = [r for r in records if int(r["index"]) < n]
    run = RunStats(Path(folder), config.get("label") or config["editor"], config["editor"], "counterfact", config, n_planned=n)
    for perspective in sorted({r["perspective"] for r in records}):
        recs = [r for r in records if r["perspective"] == perspective]
        ok = [r for r in recs if not r.get("error")]
        run.n_cases[perspective], run.n_errors[perspective] = len(ok), len(recs) - len(ok)
        metrics = sorted({m for r in ok for m in (r.get("metrics") or {})})
        found = {m: mean_ci([r["metrics"][m] for r in ok if r["metrics"].get(m) is not None]) for m in metrics}
        run.stats[perspective] = {m: st for m, st in found.items() if st is not None}
    return run


def stat(run: Any, metric: str, perspective: str = "entity") -> tuple[float | None, float | None]:
    """(mean, 95 % CI half-width) of a metric, or (None, None)."""
    s = run.stats.get(perspective, {}).get(metric)
    return (s.mean, s.ci) if s is not None else (None, None)


def n_cases(run: Any, perspective: str = "entity") -> int:
    return int(run.n_cases.get(perspective, 0))


def compare_runs(claim: str, paper: str, run_a: Any, run_b: Any, metric: str, op: str, why: str, *,
                 perspective: str = "entity", metric_b: str | None = None, check: str = "") -> Any:
    """A :class:`Claim` comparing ``metric`` of two runs (``metric_b`` for run b) under the verdict rule.

    A claim that does not hold gets ``check`` (or the observed gap against its half-width)."""
    from factscope.reproduce.verdicts import FAILS, MIN_CASES, Claim, _fmt, compare, gap_check

    (a, ca), (b, cb) = stat(run_a, metric, perspective), stat(run_b, metric_b or metric, perspective)
    n = min(n_cases(run_a, perspective), n_cases(run_b, perspective))
    verdict = compare(a, b, op, n, MIN_CASES, ca, cb)
    if verdict == FAILS:
        check = "; ".join(filter(None, [check, gap_check(a, b, ca, cb, n)]))  # type: ignore[arg-type]
    else:
        check = ""
    return Claim(claim, paper, f"{_fmt(a, 100)} vs {_fmt(b, 100)}", verdict, why, check)
