"""Run every artefact step (resumable) and write the report.

Usage::

    report = reproduce(adapter, "reports/quick", data=DataFiles.from_dir("../shared/data"), sizes=QUICK,
                       command="factscope reproduce --quick --out reports/quick")

A step whose ``out/<artefact>/result.json`` exists is skipped, so an interrupted run
resumes; the partially done work inside a step (traces, evaluation cases) resumes too.
With ``shard=Shard(k, n)`` the call runs only share k of the artefacts
(:mod:`factscope.reproduce.shares`); whichever share finishes last writes the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from factscope.models.adapter import ModelAdapter
from factscope.parallel.filelock import waiting_lock
from factscope.parallel.ranks import Shard
from factscope.reproduce import batch, editing, lens, tracing
from factscope.reproduce.artefact import StepFn, is_complete, run_step
from factscope.reproduce.context import DataFiles, ReproContext
from factscope.reproduce.cost import estimate, format_seconds
from factscope.reproduce.report import write_report
from factscope.reproduce.shares import artefact_share
from factscope.reproduce.sizes import Sizes
from factscope.io_utils import atomic_write_text

STEPS: dict[str, StepFn] = {
    "rets_table1": tracing.rets_table1,
    "rets_fig2": tracing.rets_fig2,
    "rets_fig3_table2": lens.rets_fig3_table2,
    "rets_table3": editing.rets_table3,
    "rets_fig5": editing.rets_fig5,
    "seed001_tables12": editing.seed001_tables12,
    "seed001_fig2": tracing.seed001_fig2,
    "seed001_fig3": tracing.seed001_fig3,
    "pmet_fig2": lens.pmet_fig2,
    "pmet_table1": batch.pmet_table1,
    "pmet_table3": batch.pmet_table3,
}


def _reused_layers(adapter: ModelAdapter, sizes: Sizes) -> dict[str, int]:
    """ROME's and RETS's default layers (Figure 5 takes these points from Table 3), or none if unknown."""
    try:
        return editing.default_layers(adapter, sizes.editor_specific)
    except (ValueError, TypeError):
        return {}


class _Eta:
    """Estimated time left: the cost model's seconds, rescaled by how the finished artefacts compared to it."""

    def __init__(self, planned: dict[str, float]) -> None:
        self.left = dict(planned)
        self.spent = self.expected = 0.0

    def _ratio(self) -> float:
        return self.spent / self.expected if self.expected > 0 else 1.0

    def before(self, name: str) -> str:
        if name not in self.left:
            return "already complete"
        own = self.left[name] * self._ratio()
        return (f"estimated {format_seconds(own)}; all remaining artefacts {format_seconds(sum(self.left.values()) * self._ratio())}"
                + ("" if self.expected else " (CPU cost model, docs/reproduction.md)"))

    def done(self, name: str, seconds: float) -> None:
        self.spent += seconds
        self.expected += self.left.pop(name, 0.0)

    def after(self) -> str:
        if not self.left:
            return ""
        return f"; ETA for the {len(self.left)} remaining: {format_seconds(sum(self.left.values()) * self._ratio())}"


def _version() -> str:
    try:
        return metadata.version("factscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def _deviations(sizes: Sizes) -> str:
    parts = []
    if sizes.editor_overrides:
        parts.append("editor settings changed for speed: " + ", ".join(f"{k}={v}" for k, v in sizes.editor_overrides.items()))
    if not sizes.generation:
        parts.append("no text generation (Fluency/Consistency not measured)")
    if sizes.name == "standard":
        parts.append("sample sizes of the 'standard' preset (a power calculation, docs/reproduction.md), below the papers'")
    elif sizes.name != "full":
        parts.append(f"sample sizes of the '{sizes.name}' preset, far below the papers'")
    return "; ".join(parts)


def reproduce(
    adapter: ModelAdapter,
    out: str | Path,
    *,
    data: DataFiles,
    sizes: Sizes,
    command: str = "",
    steps: Sequence[str] | None = None,
    progress: bool = True,
    seed: int = 0,
    shard: Shard | None = None,
) -> Path | None:
    """Run the chosen (default: all) steps into ``out`` and write ``out/report.md``; returns its path.

    With ``shard``: this share's artefacts only; the report is written (and its path returned)
    by the call that finds every chosen artefact complete, else ``None``.
    """
    names = list(steps) if steps else list(STEPS)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"Unknown artefact(s) {', '.join(unknown)}; available: {', '.join(STEPS)}.")
    sizes.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = ReproContext(adapter, out, data, sizes, progress=progress, seed=seed)
    share = shard or Shard()
    timings_path = out / "timings.json" if share.whole else out / "_work" / "shares" / share.name / "timings.json"
    seconds: dict[str, float] = _read_timings(timings_path)
    planned = {k: v[2] for k, v in estimate(sizes, adapter.n_layers, reused_layers=_reused_layers(adapter, sizes)).items()}
    chosen, names = names, (names if share.whole else artefact_share(names, share, planned))
    if progress and not share.whole:
        print(f"[reproduce] share {share}: {', '.join(names) or 'nothing (more shares than work groups)'}", flush=True)
    eta = _Eta({n: planned[n] for n in names if not is_complete(out / n)})
    start = time.perf_counter()
    results = []
    for i, name in enumerate(names, 1):
        if progress:
            print(f"[reproduce] {i}/{len(names)} {name}: {eta.before(name)}", flush=True)
        t0 = time.perf_counter()
        result, computed = run_step(ctx, name, STEPS[name])
        if computed:
            seconds[name] = time.perf_counter() - t0
            timings_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(timings_path, json.dumps(seconds, indent=1))
            eta.done(name, seconds[name])
        if progress:
            print(f"[reproduce] {i}/{len(names)} {name}: {'done' if computed else 'already complete'} "
                  f"({seconds.get(name, result.seconds):.0f} s){eta.after()}", flush=True)
        results.append(result)
    if not share.whole:
        return _report_when_complete(adapter, out, data=data, sizes=sizes, command=command, steps=chosen,
                                     progress=progress, seed=seed)
    # Every data file a step may read is named, including those read by skipped (complete) steps.
    data.used |= {"knowns", "attributes", "counterfact", "corpus"}
    if sizes.batch_cases > 500 and data.counterfact_flat is not None:
        data.used.add("counterfact_flat")
    header = {
        "command": command or "factscope.reproduce.reproduce(...)",
        "model": adapter.name,
        "fingerprint": adapter.fingerprint,
        "n_layers": adapter.n_layers,
        "version": _version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "sizes": sizes.to_dict(),
        "data_sha256": data.sha256(),
        "seconds": {**_share_timings(out), **seconds},
        "estimated_seconds": planned,
        "not_run": [n for n in STEPS if n not in names],
        "total_seconds": time.perf_counter() - start,
        "deviations": _deviations(sizes),
    }
    atomic_write_text(out / "run.json", json.dumps(header, indent=1))
    return write_report(out, results, header)


def _read_timings(path: Path) -> dict[str, float]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _share_timings(out: Path) -> dict[str, float]:
    """Wall seconds per artefact recorded by the shares of split runs into ``out``."""
    merged: dict[str, float] = {}
    for path in sorted((out / "_work" / "shares").glob("*/timings.json")):
        merged.update(_read_timings(path))
    return merged


def _report_when_complete(adapter: ModelAdapter, out: Path, *, steps: list[str], **kwargs: object) -> Path | None:
    """The report, written once every chosen artefact is complete (by the share that finishes last)."""
    with waiting_lock(out / "_work" / "shares" / "report.lock"):  # two shares finishing together write it in turn
        missing = [n for n in steps if not is_complete(out / n)]
        if missing:
            if kwargs.get("progress"):
                print(f"[reproduce] this share is done; the report waits for {', '.join(missing)} "
                      f"(other shares; rerun without --shard to write it once they are complete)", flush=True)
            return None
        return reproduce(adapter, out, steps=steps, **kwargs)  # type: ignore[arg-type]
