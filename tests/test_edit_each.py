"""edit_each: independent single edits computed together equal editing one request at a time."""

from __future__ import annotations

import pytest
import torch

from factscope.edit import EditRequest, edit, edit_each
from factscope.testing import example_requests, fast_overrides, same_weights, tiny_adapter, weights_snapshot

FAST = dict(context_lengths=[[3, 2]], v_steps=4, mom2_n_tokens=64)
REQS = example_requests(3)
pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.mark.parametrize("editor,arch", [("rome", "gpt2"), ("rome", "llama"), ("rets", "gpt_neox"), ("ft", "llama")])
def test_each_delta_equals_its_single_edit(editor, arch) -> None:
    adapter = tiny_adapter(arch)
    fast = fast_overrides(editor)
    before = weights_snapshot(adapter)
    together = edit_each(adapter, REQS, editor=editor, **fast)
    assert same_weights(adapter, before)
    assert len(together) == len(REQS)
    for request, delta in zip(REQS, together):
        alone = edit(adapter, [request], editor=editor, **fast)
        assert delta.metadata["requests"] == alone.metadata["requests"]
        (a,), (b,) = delta.entries, alone.entries
        assert (a.site_kind, a.layer) == (b.site_kind, b.layer)
        torch.testing.assert_close(a.dense(), b.dense(), rtol=1e-3, atol=1e-6)


def test_each_validates_every_request_before_work(monkeypatch) -> None:
    adapter = tiny_adapter("gpt2")
    import factscope.edit.rome as rome_mod

    monkeypatch.setattr(rome_mod, "rank_one_edits", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ValueError, match="target"):
        edit_each(adapter, [*REQS, EditRequest("The capital of {} is", "France", " ")], editor="rome", **FAST)
    with pytest.raises(ValueError):
        edit_each(adapter, [*REQS, EditRequest("no slot here", "Nobody", "x")], editor="rome", **FAST)
    with pytest.raises(ValueError, match="No edit requests"):
        edit_each(adapter, [], editor="rome")
