"""The prefix/lower-layer reusing runner equals a plain forward pass on every architecture."""

from __future__ import annotations

import pytest
import torch

from factscope.edit.keys import pad_rows
from factscope.edit.runner import SuffixRunner
from factscope.hooks import Site, SiteTrace


@pytest.mark.parametrize("split", [[3, 7, 2, 5], [3, 0, 2, 5]], ids=["prefixes", "one-row-without-prefix"])
@pytest.mark.parametrize("reuse_prefix,reuse_lower", [(True, True), (True, False), (False, True)])
def test_runner_matches_full_forward(any_tiny, reuse_prefix, reuse_lower, split) -> None:
    adapter = any_tiny
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (9, 14, 6, 11)]
    last = Site("resid", adapter.n_layers - 1)
    site = Site("mlp", 2)
    delta = torch.randn(adapter.d_model, generator=g)

    def add(positions):
        def edit(_s, x):
            x = x.clone()
            for row, pos in enumerate(positions):
                x[row, pos] = x[row, pos] + delta
            return x

        return edit

    ids, mask = pad_rows(seqs, 1)
    with SiteTrace(adapter, read=[last], edit={site: add(split)}) as trace:
        adapter.model(input_ids=ids, attention_mask=mask)
    reference = trace[last]
    runner = SuffixRunner(adapter, seqs, split, start_layer=2, reuse_prefix=reuse_prefix, reuse_lower_layers=reuse_lower)
    assert runner.split == (split if reuse_prefix else [0] * len(split))
    hidden = runner.run({site: add([runner.suffix_index(r, p) for r, p in enumerate(split)])})
    for row, seq in enumerate(seqs):
        s = runner.split[row]
        torch.testing.assert_close(hidden[row, : len(seq) - s], reference[row, s : len(seq)], rtol=1e-4, atol=1e-5)
    assert all(type(layer).__name__ != "_CachedLayer" for layer in adapter.layers)


def test_runner_refuses_edits_below_the_reused_layers() -> None:
    from factscope.testing import tiny_adapter

    adapter = tiny_adapter("gpt2")
    runner = SuffixRunner(adapter, [[5, 6, 7, 8]], [2], start_layer=2)
    with pytest.raises(ValueError, match="below start_layer"):
        runner.run({Site("mlp", 1): lambda s, x: x})


def test_kept_rows_run_as_before(any_tiny) -> None:
    """Dropping rows (finished requests) leaves the remaining rows' results unchanged."""
    adapter = any_tiny
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (9, 14, 6, 11)]
    split = [3, 7, 2, 5]
    runner = SuffixRunner(adapter, seqs, split, start_layer=2)
    before = runner.run()
    if not runner.keep_rows([3, 1]):
        pytest.skip(f"{type(runner.cache).__name__} cannot select rows")
    after = runner.run()
    assert after.shape[0] == 2 and runner.split == [5, 7]
    for new, old in ((0, 3), (1, 1)):
        n = len(seqs[old]) - split[old]
        torch.testing.assert_close(after[new, :n], before[old, :n], rtol=1e-4, atol=1e-5)
