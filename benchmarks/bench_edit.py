"""Editing speed on the bundled model: single edits, batch edits, covariance throughput.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_edit.py                 # sizes 100 and 1000
    python benchmarks/bench_edit.py --sizes 10,100 --skip-batch       # choose what to run
    python benchmarks/bench_edit.py --device cuda                     # on a GPU

Prints, in one run:
* seconds per single ROME and RETS edit with the key covariance already cached, beside the
  same edit with the value optimisation done straightforwardly (full forward every step),
  their ratio and how far apart the two weight changes are;
* seconds per edit when ``--group`` independent single edits are computed together
  (``edit_each``), and how far their deltas are from one-at-a-time editing;
* MEMIT and PMET seconds for n facts of ../shared/data/counterfact/counterfact-edit.json
  (covariance cached), with the share of rewrite prompts where P(new) > P(true) after;
* covariance throughput (tokens/s) with forward passes that stop at the needed
  layer vs full forward passes over the same tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
EDIT_FILE = DATA / "counterfact" / "counterfact-edit.json"
CORPUS = DATA / "corpus" / "enwiki_sample.jsonl"


def load_requests(n: int):
    from factscope.edit import EditRequest

    records = json.loads(EDIT_FILE.read_text())
    out = []
    for r in records:
        if len(out) == n:
            break
        if r["subject"] in r["prompt"] and r["target_new"].strip() and r["target_new"].strip() != r["ground_truth"].strip():
            out.append(EditRequest(r["prompt"].replace(r["subject"], "{}", 1), r["subject"], r["target_new"],
                                   r["ground_truth"], case_id=r["case_id"]))
    return out


def efficacy(adapter, requests) -> float:
    from factscope.scoring import continuation_ids, next_token_logprobs

    lp = next_token_logprobs(adapter, [r.filled for r in requests])
    tok = adapter.tokenizer
    wins = [float(lp[i, continuation_ids(tok, r.filled, r.target_new)[0]] > lp[i, continuation_ids(tok, r.filled, r.target_true)[0]])
            for i, r in enumerate(requests)]
    return sum(wins) / len(wins)


@contextlib.contextmanager
def straightforward_values():
    """Value optimisation the straightforward way, as reference code does it: every step is a
    full forward pass over the whole prefixed prompts from the embeddings (no reused prefix
    KV cache, no reused lower layers). Logits stay restricted to the target positions."""
    from factscope.edit import values

    real_runner = values.SuffixRunner

    def full_runner(adapter, seqs, split, start_layer=0, **kw):
        return real_runner(adapter, seqs, split, start_layer, reuse_prefix=False, reuse_lower_layers=False)

    values.SuffixRunner = full_runner
    try:
        yield
    finally:
        values.SuffixRunner = real_runner


def _timed_edit(adapter, name, request, corpus):
    from factscope.edit import edit

    t0 = time.perf_counter()
    delta = edit(adapter, request, editor=name, corpus=corpus)
    return time.perf_counter() - t0, delta


def bench_single(adapter, corpus, reps: int, compare: bool, group: int) -> None:
    from factscope.edit import edit, edit_each, hparams_for
    from factscope.edit.covariance import key_second_moments
    from factscope.edit.hparams import resolve_layer

    requests = load_requests(reps)
    for name in ("rome", "rets"):
        hp = hparams_for(name, adapter)
        key_second_moments(adapter, [resolve_layer(adapter, hp.layer)], corpus=corpus, n_tokens=hp.mom2_n_tokens)
        edit(adapter, requests[0], editor=name, corpus=corpus, v_steps=1)  # warm-up: contexts cached
        times, slow_times, wins, diffs = [], [], [], []
        for request in requests:
            seconds, delta = _timed_edit(adapter, name, request, corpus)
            times.append(seconds)
            with delta.applied(adapter):
                wins.append(efficacy(adapter, [request]))
            if compare:
                with straightforward_values():
                    slow_seconds, slow_delta = _timed_edit(adapter, name, request, corpus)
                slow_times.append(slow_seconds)
                fast_w, slow_w = delta.entries[0].dense(), slow_delta.entries[0].dense()
                diffs.append(float((fast_w - slow_w).norm() / slow_w.norm()))
        line = (f"{name.upper():5} single edit: {statistics.mean(times):6.1f} s/edit (n={len(times)}, "
                f"min {min(times):.1f}, max {max(times):.1f}); efficacy {sum(wins):.0f}/{len(wins)}")
        if compare:
            line += (f"; straightforward {statistics.mean(slow_times):6.1f} s/edit, x {statistics.mean(slow_times) / statistics.mean(times):.2f}"
                     f", max relative |dW diff| {max(diffs):.1e}")
        print(line, flush=True)
        if group > 1:
            many = load_requests(group)
            alone = [edit(adapter, r, editor=name, corpus=corpus) for r in many[: len(requests)]]
            t0 = time.perf_counter()
            together = edit_each(adapter, many, editor=name, corpus=corpus)
            seconds = (time.perf_counter() - t0) / len(many)
            diff = max(float((t.entries[0].dense() - a.entries[0].dense()).norm() / a.entries[0].dense().norm())
                       for t, a in zip(together, alone))
            print(f"{name.upper():5} {len(many)} independent edits together: {seconds:6.1f} s/edit "
                  f"(x {statistics.mean(times) / seconds:.2f} vs one at a time); max relative |dW diff| {diff:.1e}", flush=True)


def bench_batch(adapter, corpus, sizes: list[int]) -> None:
    from factscope.edit import edit, hparams_for
    from factscope.edit.covariance import key_second_moments
    from factscope.edit.hparams import resolve_layers

    for name in ("memit", "pmet"):
        hp = hparams_for(name, adapter)
        key_second_moments(adapter, resolve_layers(adapter, hp.layers), corpus=corpus, n_tokens=hp.mom2_n_tokens)
        for n in sizes:
            requests = load_requests(n)
            before = efficacy(adapter, requests)
            t0 = time.perf_counter()
            delta = edit(adapter, requests, editor=name, corpus=corpus, progress=True)
            seconds = time.perf_counter() - t0
            with delta.applied(adapter):
                after = efficacy(adapter, requests)
            print(f"{name.upper():5} {n:5d} facts: {seconds:8.1f} s ({seconds / n:.2f} s/fact); "
                  f"efficacy {before:.2f} → {after:.2f}", flush=True)


def bench_covariance(adapter, corpus, layer: int, n_tokens: int) -> None:
    from factscope.edit import covariance as cov
    from factscope.edit.covariance import key_second_moment
    t0 = time.perf_counter()
    key_second_moment(adapter, layer, corpus=corpus, n_tokens=n_tokens, cache=False, progress=False)
    early = n_tokens / (time.perf_counter() - t0)
    real_trace = cov.SiteTrace

    def no_stop(adapter_, read=(), edit=None, *, stop=False, **kw):  # same reads, full forward incl. logits
        return real_trace(adapter_, read=read, edit=edit, stop=False, **kw)

    cov.SiteTrace = no_stop
    try:
        t0 = time.perf_counter()
        key_second_moment(adapter, layer, corpus=corpus, n_tokens=n_tokens, cache=False, progress=False)
        full = n_tokens / (time.perf_counter() - t0)
    finally:
        cov.SiteTrace = real_trace
    print(f"covariance layer {layer}, {n_tokens} tokens: {early:7.1f} tok/s stopping at the layer vs "
          f"{full:7.1f} tok/s full forward ({early / full:.1f}x)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="Batch sizes for MEMIT/PMET (comma-separated).")
    parser.add_argument("--reps", type=int, default=3, help="Single edits timed per editor.")
    parser.add_argument("--group", type=int, default=8, help="Independent single edits computed together (1: skip).")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--no-compare", action="store_true", help="Skip the straightforward single-edit timing.")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-covariance", action="store_true")
    parser.add_argument("--cov-tokens", type=int, default=1024)
    parser.add_argument("--device", default=None, help="e.g. cuda (default: the CPU).")
    args = parser.parse_args()
    if not EDIT_FILE.is_file() or not CORPUS.is_file():
        raise SystemExit(f"Needs {EDIT_FILE} and {CORPUS} (the shared data folder).")
    from factscope.models import load_model

    adapter = load_model(device=args.device).adapter
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {adapter.name} on {adapter.device}; torch threads {torch.get_num_threads()}; load average {load:.1f}; corpus {CORPUS.name}", flush=True)
    if not args.skip_single:
        bench_single(adapter, CORPUS, args.reps, not args.no_compare, args.group)
    if not args.skip_batch:
        bench_batch(adapter, CORPUS, [int(s) for s in args.sizes.split(",") if s.strip()])
    if not args.skip_covariance:
        bench_covariance(adapter, CORPUS, 5, args.cov_tokens)
        bench_covariance(adapter, CORPUS, 22, args.cov_tokens)


if __name__ == "__main__":
    main()
