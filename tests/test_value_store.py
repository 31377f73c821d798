"""Value checkpoints: an interrupted MEMIT/PMET batch edit resumes and gives the same delta."""

from __future__ import annotations

import pytest
import torch

from factscope.edit import checkpoint_values, edit
from factscope.testing import example_requests, tiny_adapter

FAST = dict(context_lengths=[[3, 1]], v_steps=3, mom2_n_tokens=64, value_chunk=2)
REQS = example_requests(4)
pytestmark = pytest.mark.usefixtures("isolated_cache")


def _equal(a, b) -> bool:
    return len(a.entries) == len(b.entries) and all(
        torch.equal(x.dense(), y.dense()) for x, y in zip(a.entries, b.entries))


@pytest.mark.parametrize("editor", ["memit", "pmet"])
def test_interrupted_batch_edit_resumes_from_finished_chunks(tmp_path, monkeypatch, editor) -> None:
    adapter = tiny_adapter("llama")
    reference = edit(adapter, REQS, editor=editor, layers=[1, 2], **FAST)

    import factscope.edit.memit as memit_mod

    real = memit_mod.optimize_values
    calls = []

    def crash_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is stopped mid-edit
        return real(*args, **kwargs)

    monkeypatch.setattr(memit_mod, "optimize_values", crash_on_second_chunk)
    folder = tmp_path / "values"
    with pytest.raises(KeyboardInterrupt), checkpoint_values(folder):
        edit(adapter, REQS, editor=editor, layers=[1, 2], **FAST)
    assert len(list(folder.glob("values-*.safetensors"))) == 1  # the first chunk was kept

    calls.clear()
    monkeypatch.setattr(memit_mod, "optimize_values", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    with checkpoint_values(folder):
        resumed = edit(adapter, REQS, editor=editor, layers=[1, 2], **FAST)
    assert len(calls) == 1  # only the unfinished chunk was optimised again
    assert _equal(resumed, reference)


def test_changed_hyperparameters_or_damaged_files_are_not_reused(tmp_path, monkeypatch) -> None:
    adapter = tiny_adapter("gpt2")
    folder = tmp_path / "values"
    with checkpoint_values(folder):
        edit(adapter, REQS[:2], editor="memit", layers=[1, 2], **FAST)
    (path,) = folder.glob("values-*.safetensors")

    import factscope.edit.memit as memit_mod

    real = memit_mod.optimize_values
    calls = []
    monkeypatch.setattr(memit_mod, "optimize_values", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    with checkpoint_values(folder):
        edit(adapter, REQS[:2], editor="memit", layers=[1, 2], **{**FAST, "v_steps": 2})
    assert len(calls) == 1 and len(list(folder.glob("values-*.safetensors"))) == 2

    path.write_bytes(b"not a safetensors file")
    calls.clear()
    with pytest.warns(UserWarning, match="unreadable value checkpoint"), checkpoint_values(folder):
        edit(adapter, REQS[:2], editor="memit", layers=[1, 2], **FAST)
    assert len(calls) == 1


def test_no_checkpoints_outside_the_block(tmp_path) -> None:
    adapter = tiny_adapter("gpt2")
    with checkpoint_values(tmp_path / "values"):
        pass
    edit(adapter, REQS[:2], editor="memit", layers=[1, 2], **FAST)
    assert not (tmp_path / "values").exists()


def test_default_chunk_reuses_checkpoints_of_the_same_explicit_size(tmp_path, monkeypatch) -> None:
    """value_chunk=0 resolves to 16 on a CPU; checkpoints made with an explicit 16 are reused."""
    adapter = tiny_adapter("llama")
    settings = {**FAST, "value_chunk": 16}
    folder = tmp_path / "values"
    with checkpoint_values(folder):
        first = edit(adapter, REQS, editor="memit", layers=[1, 2], **settings)

    import factscope.edit.memit as memit_mod

    real = memit_mod.optimize_values
    calls = []
    monkeypatch.setattr(memit_mod, "optimize_values", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    with checkpoint_values(folder):
        again = edit(adapter, REQS, editor="memit", layers=[1, 2], **{**settings, "value_chunk": 0})
    assert calls == []
    assert _equal(again, first)
