"""`factscope apply` then `factscope revert` on a saved tiny model restores every weight bit-exactly."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from factscope.cli import app
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.testing import tiny_adapter


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_apply_then_revert_restores_the_saved_model(tmp_path: Path) -> None:
    adapter = tiny_adapter("llama", seed=0)
    original = tmp_path / "original"
    adapter.model.save_pretrained(original)
    adapter.tokenizer.save_pretrained(original)
    out_dim, in_dim = adapter.mlp_down_weight(1).matrix.shape
    generator = torch.Generator().manual_seed(0)
    delta = WeightDelta([DeltaEntry("mlp_key", 1, torch.randn(out_dim, 1, generator=generator) * 0.1,
                                    torch.randn(in_dim, 1, generator=generator))],
                        {"editor": "test", "model_fingerprint": adapter.fingerprint})
    delta_file = delta.save(tmp_path / "delta.safetensors")
    runner = CliRunner()

    applied = runner.invoke(app, ["apply", "--delta", str(delta_file), "--out", str(tmp_path / "edited"),
                                  "--model", str(original), "--no-strict"])
    assert applied.exit_code == 0, applied.output
    before, edited = _weights(original), _weights(tmp_path / "edited")
    changed = sorted(k for k in before if not torch.equal(before[k], edited[k]))
    assert changed == ["model.layers.1.mlp.down_proj.weight"]

    reverted = runner.invoke(app, ["revert", "--model", str(tmp_path / "edited"), "--out", str(tmp_path / "restored")])
    assert reverted.exit_code == 0, reverted.output
    restored = _weights(tmp_path / "restored")
    assert sorted(restored) == sorted(before)
    assert all(torch.equal(before[k], restored[k]) for k in before)


def test_revert_refuses_a_folder_without_originals(tmp_path: Path) -> None:
    adapter = tiny_adapter("gpt2", seed=0)
    adapter.model.save_pretrained(tmp_path / "plain")
    adapter.tokenizer.save_pretrained(tmp_path / "plain")
    result = CliRunner().invoke(app, ["revert", "--model", str(tmp_path / "plain"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "factscope apply" in result.output
    assert not (tmp_path / "x").exists()


def test_applied_in_turn_reverts_everything_even_on_error() -> None:
    """Deltas applied in turn are all reverted, last first, when the block fails half-way."""
    import pytest

    from factscope.edit import EditRequest, edit
    from factscope.edit.delta import applied_in_turn
    from factscope.testing import same_weights, tiny_adapter, weights_snapshot

    adapter = tiny_adapter("llama")
    before = weights_snapshot(adapter)
    reqs = [EditRequest("The mother tongue of {} is", s, "English") for s in ("Danielle Darrieux", "Victor Hugo")]
    deltas = [edit(adapter, [r], editor="ft", layer=1, ft_steps=2, probe="off") for r in reqs]
    with pytest.raises(RuntimeError, match="half-way"):
        with applied_in_turn(adapter) as apply:
            apply(deltas[0])
            apply(deltas[1])
            assert not same_weights(adapter, before)
            raise RuntimeError("half-way")
    assert same_weights(adapter, before) and not any(d.is_applied for d in deltas)
