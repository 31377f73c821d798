"""Causal tracing speed: batched suffix engine vs one restoration per forward (ROME's way).

Usage::

    python benchmarks/bench_tracing.py                    # 5 known facts, subject corruption
    python benchmarks/bench_tracing.py --facts 2 --corrupt relation --samples 10

Times the full grid (state + mlp + attn, window 10) for the first ``--facts`` known facts
the bundled model predicts correctly, with both implementations in one run, and prints
both times, their ratio and the largest absolute difference between the grids.
The straightforward method lives in ``tests/tracing_reference.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tracing_reference import reference_grid  # noqa: E402

from factscope.datasets import load_knowns  # noqa: E402
from factscope.localize.tracing import TraceConfig, plan_trace  # noqa: E402
from factscope.localize.tracing_dataset import greedy_matches  # noqa: E402
from factscope.localize.tracing_fast import FastTracer  # noqa: E402
from factscope.models.loading import load_model  # noqa: E402

KNOWNS = ROOT / ".." / "shared" / "data" / "knowns" / "known_1000.json"
KINDS = ("state", "mlp", "attn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, default=5)
    parser.add_argument("--skip", type=int, default=0, help="Skip the first N qualifying facts (to split a run).")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--corrupt", default="subject", choices=("subject", "relation"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--data", type=Path, default=KNOWNS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.exists():
        sys.exit(f"known facts not found at {args.data}")
    adapter = load_model().adapter
    facts = [f for f in load_knowns(args.data, n=60) if greedy_matches(adapter, f)[0]][args.skip : args.skip + args.facts]
    config = TraceConfig(corrupt=args.corrupt, samples=args.samples, window=args.window)
    print(f"{adapter.name}: {len(facts)} facts, corrupt {args.corrupt}, kinds {KINDS}, samples {args.samples}, "
          f"window {args.window}, torch threads {torch.get_num_threads()}")
    fast_total = ref_total = 0.0
    worst = 0.0
    for fact in facts:
        plan = plan_trace(adapter, fact.prompt, fact.subject, fact.attribute, config)
        t0 = time.perf_counter()
        tracer = FastTracer(adapter, plan)
        fast = dict(zip(KINDS, tracer.grids([(kind, args.window, None) for kind in KINDS])))
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = {kind: reference_grid(adapter, plan, kind, args.window)[0] for kind in KINDS}
        t_ref = time.perf_counter() - t0
        diff = max((fast[k] - ref[k]).abs().max().item() for k in KINDS)
        worst = max(worst, diff)
        fast_total += t_fast
        ref_total += t_ref
        print(f"  {fact.prompt!r} ({plan.n_tokens} tokens): fast {t_fast:7.1f} s, straightforward {t_ref:7.1f} s, "
              f"x{t_ref / t_fast:5.2f}, max |diff| {diff:.1e}", flush=True)
    print(f"total: fast {fast_total:.1f} s, straightforward {ref_total:.1f} s, speed-up x{ref_total / fast_total:.2f}, "
          f"max |grid difference| {worst:.2e}")


if __name__ == "__main__":
    main()
