"""The same work on a CUDA device gives the CPU's numbers (skipped where no GPU is present).

Run on a GPU machine with ``pytest tests/test_cuda.py``. Every case builds one tiny
model, copies it to the GPU, and compares grids, covariances and edits with the CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

from factscope.edit import EditRequest, WeightDelta, edit, edit_each
from factscope.edit.covariance import key_second_moment
from factscope.edit.runner import SuffixRunner
from factscope.localize.tracing import trace_kinds
from factscope.models.adapter import ModelAdapter
from factscope.testing import same_weights, tiny_adapter, weights_snapshot

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.usefixtures("isolated_cache")]

PROMPT = "The mother tongue of Danielle Darrieux is"
SUBJECT = "Danielle Darrieux"
REQS = [
    EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French"),
    EditRequest("{} plays the sport of", "Michael Jordan", "football", "basketball"),
]
# Enough covariance tokens for a well-conditioned E[kkᵀ] (d_mlp ≤ 128 here): with fewer,
# the closed-form update is ill-determined and devices legitimately disagree.
FAST = dict(context_lengths=[[3, 2]], v_steps=4, mom2_n_tokens=2048)
EDITS = {
    "rome": dict(layer=2, **FAST),
    "rets": dict(layer=2, **FAST),
    "memit": dict(layers=[1, 2], **FAST),
    "pmet": dict(layers=[1, 2], **FAST),
    "ft": dict(layer=1, norm_constraint=1e-3, ft_steps=5),
}


def _pair(arch: str) -> tuple[ModelAdapter, ModelAdapter]:
    cpu = tiny_adapter(arch)
    gpu_model = copy.deepcopy(cpu.model).to("cuda")
    return cpu, ModelAdapter(gpu_model, cpu.tokenizer, name=cpu.name)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _weight_change(delta: WeightDelta, adapter: ModelAdapter) -> dict[str, torch.Tensor]:
    before = weights_snapshot(adapter)
    delta.apply(adapter)
    after = adapter.model.state_dict()
    change = {k: (after[k] - before[k]).cpu() for k in before if not torch.equal(after[k], before[k])}
    delta.revert(adapter)
    assert same_weights(adapter, before), "revert not bit-exact"
    return change


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_trace_grids_match_cpu(arch) -> None:
    cpu, gpu = _pair(arch)
    kw = dict(kinds=("state", "mlp", "attn"), samples=3, window=2, severed=("mlp",), seed=1)
    ref = trace_kinds(cpu, PROMPT, SUBJECT, **kw)
    out = trace_kinds(gpu, PROMPT, SUBJECT, **kw)
    assert ref.keys() == out.keys()
    for name in ref:
        assert torch.allclose(out[name].scores.cpu(), ref[name].scores, atol=1e-5), name


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_covariance_matches_cpu(arch) -> None:
    cpu, gpu = _pair(arch)
    ref = key_second_moment(cpu, 2, n_tokens=256, cache=False, progress=False)
    out = key_second_moment(gpu, 2, n_tokens=256, cache=False, progress=False)
    assert out.dtype == torch.float64 and _rel(out, ref) < 1e-5


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_runner_with_a_prefixless_row_matches_cpu(arch) -> None:
    """A row with no prefix (a one-token subject in "{} is a") is all padding in the KV cache;
    the GPU's attention kernels must mask it out as the CPU's do, without NaN."""
    cpu, gpu = _pair(arch)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (9, 14, 6, 11)]
    split = [3, 0, 2, 5]
    ref, out = (SuffixRunner(a, seqs, split, start_layer=2).run() for a in (cpu, gpu))
    assert torch.isfinite(out).all()
    for row, seq in enumerate(seqs):
        n = len(seq) - split[row]
        assert torch.allclose(out[row, :n].cpu(), ref[row, :n], atol=1e-4), row


@pytest.mark.parametrize("editor", sorted(EDITS))
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_edits_match_cpu_and_revert_exactly(editor, arch) -> None:
    cpu, gpu = _pair(arch)
    ref = _weight_change(edit(cpu, REQS, editor=editor, **EDITS[editor]), cpu)
    delta = edit(gpu, REQS, editor=editor, **EDITS[editor])
    out = _weight_change(delta, gpu)
    assert ref.keys() == out.keys() and ref
    for name in ref:
        assert _rel(out[name], ref[name]) < 2e-3, (editor, name, _rel(out[name], ref[name]))


@pytest.mark.parametrize("editor", ["rome", "rets"])
def test_edit_each_on_gpu_matches_cpu(editor) -> None:
    cpu, gpu = _pair("llama")
    refs = edit_each(cpu, REQS, editor, **EDITS[editor])
    outs = edit_each(gpu, REQS, editor, **EDITS[editor])
    for ref, out in zip(refs, outs):
        ref_change, out_change = _weight_change(ref, cpu), _weight_change(out, gpu)
        for name in ref_change:
            assert _rel(out_change[name], ref_change[name]) < 2e-3


def test_gpu_delta_saves_and_loads_onto_cpu(tmp_path) -> None:
    cpu, gpu = _pair("llama")
    delta = edit(gpu, REQS[:1], editor="rome", **EDITS["rome"])
    path = delta.save(tmp_path / "d.safetensors")
    loaded = WeightDelta.load(path)
    on_gpu = _weight_change(delta, gpu)
    on_cpu = _weight_change(loaded, cpu)
    for name in on_gpu:
        assert _rel(on_cpu[name], on_gpu[name]) < 1e-6
