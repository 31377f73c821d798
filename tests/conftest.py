"""Shared fixtures: seeded tiny models of every architecture and the bundled model."""

from __future__ import annotations

import os

import pytest
import torch

from factscope.testing import TINY_ARCHITECTURES, tiny_adapter


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh FACTSCOPE_CACHE per test (covariances, contexts, value checkpoints)."""
    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(params=TINY_ARCHITECTURES)
def any_tiny(request: pytest.FixtureRequest):
    """A fresh tiny adapter of each supported architecture."""
    return tiny_adapter(request.param)


@pytest.fixture(scope="session")
def bundled():
    """The bundled SmolLM2-135M-Instruct adapter, loaded once per test session (do not leave it edited)."""
    if os.environ.get("FACTSCOPE_SKIP_BUNDLED") == "1":
        pytest.skip("FACTSCOPE_SKIP_BUNDLED=1")
    from factscope.models import load_model

    return load_model().adapter


@pytest.fixture
def saved_tiny_run_inputs(tmp_path):
    """A tiny Llama saved as a model folder and a tiny COUNTERFACT file: ``(model_dir, data_file)``."""
    from factscope.evaluate.fixtures import tiny_counterfact_records, write_json
    from factscope.testing import tiny_model

    model, tokenizer = tiny_model("llama")
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model", write_json(tiny_counterfact_records(), tmp_path / "cf.json")
