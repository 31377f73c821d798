"""The on-disk state of a run: manifest (config) and results (JSON lines), crash-tolerant.

Usage::

    log = RunLog(Path("runs/rome"))
    log.start(config_dict, case_ids)          # writes manifest.json, or checks it on resume
    done = log.done()                          # {(perspective, index)} of finished cases
    log.append({"perspective": "entity", "index": 3, ...})   # written, flushed and fsynced

A run folder holds ``manifest.json`` and ``results.jsonl``. A last line without its
newline (the process was killed mid-write) is cut off when the run resumes; a
damaged line anywhere else is an error. Resuming with a different configuration or a
different case list is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from factscope.io_utils import atomic_write_json

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"


class RunConfigMismatch(RuntimeError):
    """The run folder was started with another configuration."""


class CorruptRunError(RuntimeError):
    """A results file with a damaged line that is not the last one."""


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def read_results(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Complete records of a results file; with ``repair`` cut off a truncated last line."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:  # unterminated last line: a write that was cut short
            if repair:
                with open(path, "r+b") as handle:
                    handle.truncate(offset)
            break
        line = data[offset:end]
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CorruptRunError(f"{path}: line at byte {offset} is not valid JSON ({err}).") from None
        offset = end + 1
    return records


class RunLog:
    """Manifest and results of one run folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest_path = self.folder / MANIFEST
        self.results_path = self.folder / RESULTS

    def manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CorruptRunError(f"{self.manifest_path} is damaged ({err}); use another --out folder.") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise CorruptRunError(f"{self.manifest_path} is not a factscope run manifest; use another --out folder.")
        return manifest

    def start(self, config: dict[str, Any], case_ids: list[Any], extra: dict[str, Any] | None = None) -> bool:
        """Create the manifest, or check it against ``config``; True when resuming."""
        config = _normalise(config)
        case_ids = _normalise(case_ids)
        old = self.manifest()
        if old is not None:
            diffs = sorted(k for k in set(old["config"]) | set(config) if old["config"].get(k) != config.get(k))
            if diffs:
                detail = "; ".join(f"{k}: {old['config'].get(k)!r} → {config.get(k)!r}" for k in diffs)
                raise RunConfigMismatch(
                    f"{self.folder} holds a run with another configuration ({detail}). "
                    "Use another --out folder, or rerun with the original options to resume."
                )
            if old.get("case_ids") != case_ids:
                raise RunConfigMismatch(f"{self.folder}: the dataset's cases differ from those the run started with.")
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = {"config": config, "case_ids": case_ids, **(extra or {})}
        atomic_write_json(self.manifest_path, manifest, indent=2, default=str)
        return False

    def records(self) -> list[dict[str, Any]]:
        return read_results(self.results_path)

    def done(self) -> set[tuple[str, int]]:
        """Finished (perspective, index) pairs; repairs a truncated last line."""
        return {(r["perspective"], int(r["index"])) for r in read_results(self.results_path, repair=True)}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with open(self.results_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
