"""Evaluation throughput with 1 rank against 2 torchrun ranks on this machine (the CPU threads split).

Usage::

    python benchmarks/bench_distributed.py --n 8
    python benchmarks/bench_distributed.py --n 8 --editor none          # evaluation alone
    python benchmarks/bench_distributed.py --n 6 --editor rome --set v_steps=5 --model path/to/model --threads 2

Runs ``factscope evaluate`` (no generation metrics) on the same cases twice: one
process with ``--threads`` torch threads, then ``torchrun --standalone
--nproc-per-node 2`` whose ranks get half the threads each. A warm-up run first fills
the caches that both would otherwise build (supplements, key covariance, context
templates), so the timings compare evaluation alone. Prints the wall time of each
command, the time inside the case loop (sum of the records' edit and evaluation
seconds, per rank), the start-up overhead (wall minus the slowest rank's loop), cases
per minute, and whether the two runs' records are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "counterfact" / "counterfact_500.json"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _strip(records: list[dict]) -> list[str]:
    return [json.dumps({k: v for k, v in r.items() if k not in ("edit_seconds", "eval_seconds")}, sort_keys=True) for r in records]


def _loop_seconds(folder: Path) -> list[float]:
    """Seconds each rank spent editing and evaluating (its part's records)."""
    parts = sorted((folder / "parts").glob("*/results.jsonl")) or [folder / "results.jsonl"]
    return [sum((r["edit_seconds"] or 0) + (r["eval_seconds"] or 0) for r in _records(p)) for p in parts]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8, help="cases")
    parser.add_argument("--editor", default="rome")
    parser.add_argument("--set", action="append", default=[], help="editor override KEY=VALUE (repeatable)")
    parser.add_argument("--model", default=None, help="default: the bundled SmolLM2-135M-Instruct")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the 1-rank run, split by 2 ranks")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"dataset {args.data} not found")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": str(max(1, args.threads // 2)), "MKL_NUM_THREADS": str(max(1, args.threads // 2))}
    common = ["--data", str(args.data), "--no-generation"] + (["--model", args.model] if args.model else [])
    common += [f"--set={item}" for item in args.set]
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        out = Path(tmp)
        cli = [sys.executable, "-m", "factscope", "evaluate"]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "factscope", "--", "evaluate"]
        # Warm-up: supplements of all cases, the editor's covariance and contexts (cached, shared by both runs).
        _timed([*cli, "--editor", "none", *common, "--n", str(args.n), "--out", str(out / "warm-none")], env)
        _timed([*cli, "--editor", args.editor, *common, "--n", "1", "--out", str(out / "warm")], env)
        one_wall = _timed([*cli, "--editor", args.editor, *common, "--n", str(args.n), "--threads", str(args.threads),
                           "--out", str(out / "one")], env)
        two_wall = _timed([*torchrun, "--editor", args.editor, *common, "--n", str(args.n),
                           "--threads", str(max(1, args.threads // 2)), "--out", str(out / "two")], env)
        one_loop, two_loop = _loop_seconds(out / "one"), _loop_seconds(out / "two")
        same = _strip(_records(out / "one" / "results.jsonl")) == _strip(_records(out / "two" / "results.jsonl"))
    print(f"editor {args.editor}, {args.n} cases, model {args.model or 'bundled'}, {os.cpu_count()} CPU(s), "
          f"1 rank × {args.threads} thread(s) vs 2 ranks × {max(1, args.threads // 2)}")
    for name, wall, loop in (("1 rank ", one_wall, one_loop), ("2 ranks", two_wall, two_loop)):
        print(f"{name}: wall {wall:6.1f} s, {60 * args.n / wall:5.1f} cases/min; case loop per rank "
              f"{', '.join(f'{s:.1f}' for s in loop)} s; start-up and merge overhead {wall - max(loop):.1f} s")
    print(f"speed-up (wall) {one_wall / two_wall:.2f}x; records identical: {same}")


if __name__ == "__main__":
    main()
