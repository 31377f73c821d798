"""A whole `factscope predict` process against the same prediction by a plain transformers script, in one run.

Usage::

    python benchmarks/bench_startup.py                                  # bundled SmolLM2, 3 repetitions
    python benchmarks/bench_startup.py --model ~/.cache/factscope/gguf-sources/gemma-3-270m-q4_k_m.gguf --reps 5

Both sides start a fresh Python process and read the same cached float32 conversion
(the first, converting call is made before timing). The plain script is what a user
would write: ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` on the folder,
one forward, softmax, top-k, print. factscope adds its checks (weights hash, tokenizer
identity, fingerprint) and the CLI, and loads faster: the tokenizer from its compact
copy, the garbage collector paused through imports and the load, and an exit without
interpreter teardown. Prints the median wall seconds of each, their ratio, and whether
the two printed the same tokens and probabilities (to 1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPT = "The capital of France is"

PLAIN = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, prompt, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
with torch.no_grad():
    logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
probs, ids = torch.softmax(logits.float(), -1).topk(k)
print(json.dumps({"top": [{"token": tokenizer.decode([int(i)]), "prob": float(p)} for p, i in zip(probs, ids)]}))
"""


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, dict]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - began, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="Model name, folder or .gguf file (default: bundled).")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="Torch threads on both sides (default: torch's).")
    args = parser.parse_args()

    from factscope.models import loading

    env = dict(os.environ)
    threads = ["--threads", str(args.threads)] if args.threads else []
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    model_args = ["--model", args.model] if args.model else []
    ours = [sys.executable, "-m", "factscope", "predict", PROMPT, "--k", str(args.k), "--json", *threads, *model_args]
    subprocess.run(ours, capture_output=True, check=True, env=env)  # converts and memoises on a first use
    folder = loading._weights_folder(args.model)
    plain = [sys.executable, "-c", PLAIN, str(folder), PROMPT, str(args.k)]

    timings: dict[str, list[float]] = {"factscope predict": [], "plain transformers": []}
    outputs: dict[str, dict] = {}
    for _ in range(args.reps):  # interleaved, so a change in the machine's load hits both
        for name, argv in (("factscope predict", ours), ("plain transformers", plain)):
            seconds, outputs[name] = _run(argv, env)
            timings[name].append(seconds)
    fast, slow = (statistics.median(timings[n]) for n in ("factscope predict", "plain transformers"))
    for name, values in timings.items():
        print(f"{name:20s} median {statistics.median(values):6.2f} s   runs " + " ".join(f"{v:.2f}" for v in values))
    print(f"ratio plain / factscope: {slow / fast:.2f}×")
    a, b = outputs["factscope predict"]["top"], outputs["plain transformers"]["top"]
    same = [x["token"] for x in a] == [y["token"] for y in b] and all(
        abs(x["prob"] - y["prob"]) <= 1e-6 for x, y in zip(a, b))
    print("same top-k tokens and probabilities:", same, [(x["token"], round(x["prob"], 4)) for x in a])


if __name__ == "__main__":
    main()
