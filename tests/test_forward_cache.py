"""The KV-cache argument name follows the model's forward signature (transformers 5.24 renamed it)."""

from __future__ import annotations

import warnings

import pytest
import torch

from factscope.models.forward import cache_kwargs, returned_cache
from factscope.testing import tiny_adapter


class _OldStyle(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None):  # noqa: D401 - signature only
        return None


class _NewStyle(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None):
        return None


def test_the_argument_name_comes_from_the_signature():
    assert cache_kwargs(_OldStyle(), "kv") == {"past_key_values": "kv"}
    assert cache_kwargs(_NewStyle(), "kv") == {"cache": "kv"}
    assert returned_cache({"past_key_values": 1}) == 1 and returned_cache({"cache": 2}) == 2
    with pytest.raises(KeyError, match="use_cache=True"):
        returned_cache({"logits": 0})


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_a_cached_suffix_equals_the_full_forward_without_deprecation_warnings(arch):
    model = tiny_adapter(arch).model
    ids = torch.tensor([[3, 17, 42, 9, 88, 5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        with torch.no_grad():
            full = model(input_ids=ids).logits
            prefix = returned_cache(model(input_ids=ids[:, :4], use_cache=True))
            rest = model(input_ids=ids[:, 4:], use_cache=True, **cache_kwargs(model, prefix)).logits
    assert torch.allclose(rest, full[:, 4:], atol=1e-5)
