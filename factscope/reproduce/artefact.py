"""What a reproduction step hands to the report, and the resumable step runner.

Usage::

    result = ArtefactResult("rets_table1", "RETS Table 1: AIER by position", paper_md, ours_md, claims, ["a.png"], n=8)
    result.save(folder)                 # folder/result.json marks the step complete
    ArtefactResult.load(folder)
    run_step(ctx, "rets_table1", step_fn)   # skips when folder/result.json exists
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from factscope.io_utils import atomic_write_json
from factscope.reproduce.verdicts import Claim

RESULT_NAME = "result.json"


@dataclass
class ArtefactResult:
    """One artefact: the paper's side, ours, the checked claims and the figures (paths relative to out/)."""

    name: str
    title: str
    paper: str  # Markdown
    ours: str  # Markdown
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    n: str = ""  # the sample sizes used, in words
    notes: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)  # the numbers behind the tables

    def save(self, folder: Path) -> Path:
        path = folder / RESULT_NAME
        return atomic_write_json(path, asdict(self), indent=1, default=_json_default)

    @classmethod
    def load(cls, folder: Path) -> "ArtefactResult":
        data = json.loads((folder / RESULT_NAME).read_text())
        data["claims"] = [Claim(**c) for c in data.get("claims", [])]
        return cls(**data)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


StepFn = Callable[[Any, Path], ArtefactResult]


def is_complete(folder: Path) -> bool:
    return (folder / RESULT_NAME).is_file()


def run_step(ctx: Any, name: str, fn: StepFn) -> tuple[ArtefactResult, bool]:
    """Run ``fn(ctx, folder)`` unless ``out/name/result.json`` exists; returns (result, computed)."""
    folder = ctx.artefact_dir(name)
    if is_complete(folder):
        return ArtefactResult.load(folder), False
    start = time.perf_counter()
    result = fn(ctx, folder)
    result.seconds = time.perf_counter() - start
    result.save(folder)
    return result, True
