"""Every registered editor on every tiny architecture: the editor contract, parametrised from the registry.

A new editor registered in ``factscope.edit.registry`` joins this matrix without a
change here; ``fast_overrides`` gives it the small settings its class has.
"""

from __future__ import annotations

import pytest

from factscope.edit import edit, edit_each, editor_names, get_editor
from factscope.testing import TINY_ARCHITECTURES, assert_edit_contract, example_requests, fast_overrides, tiny_adapter

pytestmark = [pytest.mark.usefixtures("isolated_cache"),
              pytest.mark.filterwarnings("ignore:n_tokens=64 is below the key dimension:UserWarning")]  # speed over a full-rank C


def _fast(editor: str) -> dict:
    """Small settings; layer 2 (a range ending there) of the 4-layer tiny models."""
    layers = {"layers": [1, 2]} if get_editor(editor).hparams_class.takes_layer_range() else {"layer": 2}
    return fast_overrides(editor, **layers)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
@pytest.mark.parametrize("editor", editor_names())
def test_editor_meets_the_contract_on_every_architecture(editor: str, arch: str, tmp_path) -> None:
    adapter = tiny_adapter(arch)
    requests = example_requests(2)
    delta = assert_edit_contract(adapter, lambda: edit(adapter, requests, editor=editor, probe="record", **_fast(editor)),
                                 folder=tmp_path)
    meta = delta.metadata
    assert meta["editor"] == editor and meta["model_fingerprint"] == adapter.fingerprint
    assert {e.layer for e in delta.entries} <= {1, 2}
    assert "side_effects" in meta


@pytest.mark.parametrize("editor", editor_names())
def test_edit_each_gives_one_contract_delta_per_request(editor: str) -> None:
    adapter = tiny_adapter("llama")
    requests = example_requests(2)
    deltas = []
    assert_edit_contract(adapter, lambda: deltas.extend(edit_each(adapter, requests, editor=editor, probe="off",
                                                                  **_fast(editor))) or deltas[0])
    assert len(deltas) == 2
    assert [d.metadata["requests"][0]["subject"] for d in deltas] == [r.subject for r in requests]
