"""Causal tracing: the fast grids equal the straightforward ones; bad input fails clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tracing_reference import reference_grid  # noqa: E402

from factscope.localize.tracing import (  # noqa: E402
    TraceConfig,
    TraceResult,
    corrupted_positions,
    plan_trace,
    trace,
    trace_kinds,
    window_layers,
)
from factscope.localize.tracing_fast import FastTracer  # noqa: E402
from factscope.scoring import EmptyTargetError  # noqa: E402
from factscope.testing import tiny_adapter  # noqa: E402
from factscope.tokens import EmptyRelationError, SubjectNotFoundError  # noqa: E402

PROMPT = "The mother tongue of Danielle Darrieux is"
SUBJECT = "Danielle Darrieux"
TOL = 1e-5


def sharp_adapter(arch: str):
    """A tiny random model with larger weights, so that probabilities and IEs are far from zero."""
    adapter = tiny_adapter(arch)
    with torch.no_grad():
        for param in adapter.model.parameters():
            if param.dim() == 2:
                param.mul_(8)
    return adapter


@pytest.fixture(scope="module", params=["llama", "gpt2", "gpt_neox", "gptj", "gemma2", "opt"])
def arch_adapter(request):
    return request.param, sharp_adapter(request.param)


VARIANTS = [("state", None, 10), ("mlp", None, 3), ("attn", None, 2), ("state", "mlp", 10), ("state", "attn", 10)]


@pytest.mark.parametrize("corrupt", ["subject", "relation"])
def test_fast_equals_reference(arch_adapter, corrupt):
    arch, adapter = arch_adapter
    plan = plan_trace(adapter, PROMPT, SUBJECT, None, TraceConfig(corrupt=corrupt, samples=3))
    tracer = FastTracer(adapter, plan, read_kinds=("mlp", "attn"))
    assert tracer.stepper.prefix_reuse
    strongest = 0.0
    # all variants in one shared pass per token (mixed mlp/attn edits, severed and windowed rows)
    grids = tracer.grids([(kind, window, severed) for kind, severed, window in VARIANTS])
    for (kind, severed, window), fast in zip(VARIANTS, grids):
        ref, clean_prob, corrupted_prob = reference_grid(adapter, plan, kind, window, severed)
        assert abs(clean_prob - tracer.clean_prob) < TOL
        assert abs(corrupted_prob - tracer.corrupted_prob) < TOL
        diff = (fast - ref).abs().max().item()
        assert diff < TOL, f"{arch} {corrupt} {kind} severed={severed}: max diff {diff:.2e}"
        strongest = max(strongest, (ref - corrupted_prob).abs().max().item())
    assert strongest > 1e-3, f"{arch}: indirect effects too small for the comparison to mean anything"


def test_without_prefix_reuse_and_tiny_batches_equal_reference():
    adapter = sharp_adapter("qwen2")
    plan = plan_trace(adapter, PROMPT, SUBJECT, None, TraceConfig(samples=2))
    tracer = FastTracer(adapter, plan, prefix_reuse=False, max_batch_tokens=8)
    assert not tracer.stepper.prefix_reuse
    for kind, window in (("state", 1), ("mlp", 4)):
        ref, _, _ = reference_grid(adapter, plan, kind, window)
        assert (tracer.grid(kind, window=window) - ref).abs().max().item() < TOL


def test_state_restoration_at_last_layer_last_token_gives_clean_prob():
    adapter = sharp_adapter("llama")
    result = trace(adapter, PROMPT, SUBJECT, samples=3)
    assert result.scores[-1, -1].item() == pytest.approx(result.clean_prob, abs=TOL)
    # restoring a token before the subject (unchanged by the noise) has no effect
    assert torch.all(result.ie[: min(result.corrupted)] == 0)


def test_trace_api_shapes_and_roundtrip():
    adapter = sharp_adapter("gpt_neox")
    result = trace(adapter, PROMPT, SUBJECT, target="French", corrupt="relation", kind="mlp", samples=2, window=2)
    n_tokens = len(adapter.tokenizer(PROMPT)["input_ids"])
    assert result.scores.shape == (n_tokens, adapter.n_layers)
    assert result.corrupted == sorted(set(result.groups["fr"] + result.groups["mr"] + result.groups["lr"]))
    assert result.corrupted and result.corrupted[-1] == n_tokens - 1
    back = TraceResult.from_dict(result.to_dict())
    assert torch.equal(back.scores, result.scores) and back.config == result.config


def test_seeded_noise_is_reproducible_and_seed_dependent():
    adapter = sharp_adapter("llama")
    a = trace(adapter, PROMPT, SUBJECT, samples=2, seed=1)
    b = trace(adapter, PROMPT, SUBJECT, samples=2, seed=1)
    c = trace(adapter, PROMPT, SUBJECT, samples=2, seed=2)
    assert torch.equal(a.scores, b.scores)
    assert not torch.equal(a.scores, c.scores)


def test_trace_kinds_share_runs_and_match_single_traces():
    adapter = sharp_adapter("gpt2")
    both = trace_kinds(adapter, PROMPT, SUBJECT, kinds=("state", "attn"), severed=("mlp",), samples=2, window=2)
    assert set(both) == {"state", "attn", "severed_mlp"}
    single = trace(adapter, PROMPT, SUBJECT, kind="attn", samples=2, window=2)
    assert torch.allclose(both["attn"].scores, single.scores, atol=TOL)


def test_noise_std_scales_with_embedding_std():
    adapter = sharp_adapter("llama")
    plan = plan_trace(adapter, PROMPT, SUBJECT, None, TraceConfig(noise=2.0))
    assert plan.noise_std == pytest.approx(2.0 * adapter.embedding_std())
    fixed = plan_trace(adapter, PROMPT, SUBJECT, None, TraceConfig(noise_std=0.7))
    assert fixed.noise_std == 0.7


def test_window_layers_follow_rome():
    assert list(window_layers(0, 10, 30)) == list(range(0, 5))
    assert list(window_layers(12, 10, 30)) == list(range(7, 17))
    assert list(window_layers(29, 10, 30)) == list(range(24, 30))
    assert list(window_layers(3, 1, 30)) == [3]


def test_relation_span_excludes_prefix_unless_asked():
    adapter = tiny_adapter("llama")
    plan = plan_trace(adapter, PROMPT, SUBJECT, None, TraceConfig(corrupt="relation"))
    groups = plan.groups
    assert plan.corrupted == groups.relation_tokens
    with_prefix = corrupted_positions(groups, "relation", relation_prefix=True)
    assert with_prefix == sorted(groups["rp"] + groups.relation_tokens)


def test_bad_input_errors():
    adapter = tiny_adapter("llama")
    with pytest.raises(EmptyRelationError):
        trace(adapter, "The mother tongue of Danielle Darrieux", SUBJECT, corrupt="relation")
    with pytest.raises(SubjectNotFoundError):
        trace(adapter, PROMPT, "Marie Curie")
    with pytest.raises(EmptyTargetError):
        trace(adapter, PROMPT, SUBJECT, target="  ")
    with pytest.raises(ValueError, match="kind"):
        trace(adapter, PROMPT, SUBJECT, kind="neurons")
    with pytest.raises(ValueError, match="Severed"):
        trace(adapter, PROMPT, SUBJECT, kind="mlp", severed="attn")
    with pytest.raises(ValueError, match="samples"):
        trace(adapter, PROMPT, SUBJECT, samples=0)


@pytest.mark.bundled
def test_bundled_fast_equals_reference_short_prompt(bundled):
    adapter = bundled
    plan = plan_trace(adapter, "Paris is the capital of", "Paris", None, TraceConfig(samples=2))
    tracer = FastTracer(adapter, plan)
    ref, clean_prob, corrupted_prob = reference_grid(adapter, plan, "mlp", 10)  # window path; ~150 forwards
    assert abs(clean_prob - tracer.clean_prob) < TOL
    assert abs(corrupted_prob - tracer.corrupted_prob) < TOL
    assert (tracer.grid("mlp", window=10) - ref).abs().max().item() < TOL
    assert clean_prob > corrupted_prob
