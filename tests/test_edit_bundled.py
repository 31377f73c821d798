"""ROME and RETS on the bundled SmolLM2-135M: the new target becomes the top prediction."""

from __future__ import annotations

from pathlib import Path

import pytest

from factscope.edit import EditRequest, edit
from factscope.scoring import top_k_next_tokens
from factscope.testing import assert_edit_contract

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "corpus" / "enwiki_sample.jsonl"
REQ = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French")


def _corpus() -> dict:
    # The shared Wikipedia sample when present (fast); else a small model-generated corpus.
    return {"corpus": CORPUS, "mom2_n_tokens": 2048} if CORPUS.is_file() else {"mom2_n_tokens": 1024}


@pytest.mark.bundled
@pytest.mark.parametrize("editor", ["rome", "rets"])
def test_edit_makes_target_top_prediction(bundled, editor) -> None:
    prompt = "Danielle Darrieux's mother tongue is"
    assert top_k_next_tokens(bundled, prompt, 1)[0][0].strip() == "French"
    delta = assert_edit_contract(bundled, lambda: edit(bundled, REQ, editor=editor, **_corpus()))
    with delta.applied(bundled):
        assert top_k_next_tokens(bundled, prompt, 1)[0][0].strip() == "English"
        assert top_k_next_tokens(bundled, REQ.filled, 1)[0][0].strip() == "English"
    assert top_k_next_tokens(bundled, prompt, 1)[0][0].strip() == "French"
