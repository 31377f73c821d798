"""The forward engine (factscope/models/batch, forward, prefix, decoding): reuse and padding change no result."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from factscope.models.batch import Batch, encode_texts, pad_batch, pad_id, positions_from_mask
from factscope.models.decoding import Decoder
from factscope.models.forward import forward_inputs, takes_argument
from factscope.models.prefix import PrefixCache, layer_key_values
from factscope.testing import TINY_ARCHITECTURES, tiny_adapter

# Learned positions (gpt2, opt), rotary (llama, gemma*, gpt_neox, gptj, qwen2, mistral).
ARCHS = TINY_ARCHITECTURES
ROWS = [[5, 17, 42, 9, 88, 5, 61, 7], [3, 30, 12], [44, 2, 19, 71, 8, 23]]


def _row_logits(model, row: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([row])).logits[0]


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return tiny_adapter(request.param).model


# ----------------------------------------------------------------- pad rule
@pytest.mark.parametrize(
    "ids,expected",
    [((7, 2, 1), 7), ((None, 2, 1), 2), ((None, None, 1), 1), ((None, None, None), 0)],
)
def test_pad_id_prefers_pad_then_eos_then_bos(ids, expected) -> None:
    tokenizer = SimpleNamespace(pad_token_id=ids[0], eos_token_id=ids[1], bos_token_id=ids[2])
    assert pad_id(tokenizer) == expected


def test_padding_and_cache_handling_live_only_in_the_engine() -> None:
    """Outside factscope/models no module picks a pad id, pads with the tokenizer, probes the forward or touches a cache."""
    root = Path(__file__).resolve().parents[1] / "factscope"
    patterns = re.compile(
        r"padding_side|padding=True|pad_token_id if|batch_select_indices|batch_repeat_interleave"
        r"|get_seq_length|signature\(\w*\.?model|\"position_ids\" in|past_key_values"
    )
    offenders = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in root.rglob("*.py")
        if "models" not in path.relative_to(root).parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if patterns.search(line)
    ]
    assert offenders == []


def test_pad_batch_masks_and_positions() -> None:
    right = pad_batch([[5, 6, 7], [8, 9], []], 1)
    assert right.input_ids.tolist() == [[5, 6, 7], [8, 9, 1], [1, 1, 1]]
    assert right.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert right.position_ids is None and right.last_index.tolist() == [2, 1, -1]
    left = pad_batch([[5, 6, 7], [8, 9]], 1, left=True)
    assert left.input_ids.tolist() == [[5, 6, 7], [1, 8, 9]]
    assert left.position_ids.tolist() == [[0, 1, 2], [0, 0, 1]]
    after = pad_batch([[5, 6], [8]], 1, offsets=[4, 2])
    assert after.position_ids.tolist() == [[4, 5], [2, 3]]
    assert positions_from_mask(torch.tensor([[0, 1, 1]]), 3).tolist() == [[3, 3, 4]]


def test_encode_texts_pads_with_the_rule() -> None:
    adapter = tiny_adapter("gpt2")
    tok = adapter.tokenizer
    batch = encode_texts(tok, ["The capital of France is", "Paris"], left=True)
    short = tok("Paris")["input_ids"]
    assert batch.input_ids[1, -len(short):].tolist() == short
    assert set(batch.input_ids[1, : -len(short)].tolist()) == {pad_id(tok)}


# ------------------------------------------------------ forward arguments
class _NoPositions(torch.nn.Module):
    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None):
        return None


def test_arguments_a_forward_does_not_take_are_left_out() -> None:
    batch = pad_batch([[5, 6], [7]], 0, left=True)
    kwargs = forward_inputs(_NoPositions(), batch, cache="kv", use_cache=True, last_logits_only=True)
    assert set(kwargs) == {"input_ids", "attention_mask", "past_key_values", "use_cache"}
    assert not takes_argument(_NoPositions(), "position_ids")


# ------------------------------------------------------------ padded rows
@pytest.mark.parametrize("left", [False, True], ids=["right", "left"])
def test_a_padded_batch_equals_each_row_alone(model, left) -> None:
    batch = pad_batch(ROWS, 1, left=left)
    with torch.no_grad():
        logits = model(**forward_inputs(model, batch)).logits
    for r, row in enumerate(ROWS):
        span = slice(logits.shape[1] - len(row), None) if left else slice(0, len(row))
        torch.testing.assert_close(logits[r, span], _row_logits(model, row), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ prefix cache
@pytest.mark.parametrize("split", [[3, 1, 4], [3, 0, 2]], ids=["prefixes", "a-row-without-prefix"])
def test_suffixes_after_a_cached_prefix_equal_the_full_forward(model, split) -> None:
    prefix = PrefixCache.build(model, pad_batch([r[:s] for r, s in zip(ROWS, split)], 1, left=True))
    suffix = pad_batch([r[s:] for r, s in zip(ROWS, split)], 1, offsets=split)
    with torch.no_grad():
        first = model(**prefix.inputs(suffix)).logits
        again = model(**prefix.inputs(suffix)).logits  # the prefix cache is not consumed
    torch.testing.assert_close(again, first)
    for r, (row, s) in enumerate(zip(ROWS, split)):
        torch.testing.assert_close(first[r, : len(row) - s], _row_logits(model, row)[s:], rtol=1e-4, atol=1e-5)


def test_a_repeated_and_a_selected_prefix_serve_their_rows(model) -> None:
    row = ROWS[0]
    prefix = PrefixCache.build(model, torch.tensor([row[:5]]))
    prefix.repeat(3)
    suffix = torch.tensor([row[5:]]).expand(3, -1)
    with torch.no_grad():
        logits = model(**prefix.inputs(suffix)).logits
    expected = _row_logits(model, row)[5:]
    for r in range(3):
        torch.testing.assert_close(logits[r], expected, rtol=1e-4, atol=1e-5)

    split = [3, 1, 4]
    padded = PrefixCache.build(model, pad_batch([r[:s] for r, s in zip(ROWS, split)], 1, left=True))
    suffix_batch = pad_batch([r[s:] for r, s in zip(ROWS, split)], 1, offsets=split)
    keep = torch.tensor([2, 0])
    if not padded.select(keep):
        pytest.skip(f"{type(padded.cache).__name__} cannot select rows")
    with torch.no_grad():
        kept = model(**padded.inputs(suffix_batch.rows(keep))).logits
    for new, old in enumerate(keep.tolist()):
        n = len(ROWS[old]) - split[old]
        torch.testing.assert_close(kept[new, :n], _row_logits(model, ROWS[old])[split[old]:], rtol=1e-4, atol=1e-5)


def test_layer_key_values_cover_every_token_of_every_layer() -> None:
    adapter = tiny_adapter("llama")
    with torch.no_grad():
        out = adapter.model(input_ids=torch.tensor([ROWS[0]]), use_cache=True)
    from factscope.models.forward import returned_cache

    kv = layer_key_values(returned_cache(out), adapter.n_layers, len(ROWS[0]))
    assert kv is not None
    keys, values = kv
    assert len(keys) == len(values) == adapter.n_layers
    assert all(k.shape[0] == 1 and k.shape[-2] == len(ROWS[0]) for k in keys + values)
    assert layer_key_values(returned_cache(out), adapter.n_layers, len(ROWS[0]) + 1) is None


# ----------------------------------------------------------------- decoding
def test_cached_decoding_equals_uncached_forwards(model) -> None:
    prompt = pad_batch(ROWS, 1, left=True)
    decoder = Decoder(model, prompt)
    rows = [list(r) for r in ROWS]
    with torch.no_grad():
        for _ in range(4):
            logits = decoder.step().logits[:, -1]
            for r, row in enumerate(rows):
                torch.testing.assert_close(logits[r], _row_logits(model, row)[-1], rtol=1e-4, atol=1e-5)
            nxt = logits.argmax(-1, keepdim=True)
            decoder.append(nxt)
            for r, t in enumerate(nxt[:, 0].tolist()):
                rows[r].append(t)


def test_unpadded_decoding_runs_only_new_tokens() -> None:
    model = tiny_adapter("gpt2").model
    decoder = Decoder(model, torch.tensor([[5, 6, 7]]))
    with torch.no_grad():
        decoder.step()
        decoder.append(torch.tensor([[9]]))
        last = decoder.step().logits
    assert last.shape[1] == 1
    torch.testing.assert_close(last[0, -1], _row_logits(model, [5, 6, 7, 9])[-1], rtol=1e-4, atol=1e-5)


def test_batch_rows_and_device_move() -> None:
    batch = pad_batch([[5, 6], [7]], 0, left=True)
    picked = batch.rows(torch.tensor([1])).to("cpu")
    assert isinstance(picked, Batch)
    assert picked.input_ids.tolist() == [[0, 7]] and picked.position_ids.tolist() == [[0, 0]]
