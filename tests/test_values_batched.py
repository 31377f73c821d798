"""Value optimisation of several requests at once equals optimising each alone."""

from __future__ import annotations

import pytest
import torch

from factscope.edit.hparams import ValueOptimisation
from factscope.edit.values import optimize_values
from factscope.testing import example_requests, tiny_adapter

REQS = example_requests(3, with_true=False)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gptj", "gpt_neox"])
def test_batched_values_equal_one_at_a_time(arch) -> None:
    adapter = tiny_adapter(arch)
    # A random tiny model's logits barely move; a sharper unembedding and δ at the last token let the
    # requests reach the early stop at different steps, so that finished requests' rows are dropped.
    adapter.model.get_output_embeddings().weight.mul_(30)
    hp = ValueOptimisation(v_steps=10, v_lr=1.0, early_stop_nll=0.5, clamp_norm_factor=1e4, v_weight_decay=0.0)
    contexts = ["{}", "Some text. {}"]
    run = dict(kinds=("mlp", "attn"), lookup="last", contexts=contexts, hparams=hp)
    together = optimize_values(adapter, REQS, 1, **run)
    assert len(set(together.steps)) > 1, "requests should stop at different steps for this test to mean anything"
    for i, request in enumerate(REQS):
        alone = optimize_values(adapter, [request], 1, **run)
        assert together.steps[i] == alone.steps[0]
        for kind in ("mlp", "attn"):
            torch.testing.assert_close(together.delta[kind][i], alone.delta[kind][0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(together.init[kind][i], alone.init[kind][0], rtol=1e-5, atol=1e-6)
        assert together.nll[i] == pytest.approx(alone.nll[0], rel=1e-4, abs=1e-5)
