"""MEND: the network, its training (loss, resume after a kill), the editor's delta, cache keys and bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from factscope.cli import app
from factscope.datasets import load_example_facts
from factscope.edit import EDITORS, edit
from factscope.edit.mend import (
    MENDCheckpointError, MENDDataError, MENDHyperParams, MENDNetwork, MENDNotTrainedError, delta_from_network,
    mend_edit, train_mend,
)
from factscope.edit.mend.data import DataOrder, example_from_case
from factscope.edit.mend.factors import TokenBatch, target_nll
from factscope.edit.mend.store import STATE_FILE, build_network, editor_key
from factscope.edit.mend.training import _scores
from factscope.testing import TINY_ARCHITECTURES, example_requests, sharpened_tiny_adapter, tiny_adapter

FAST = dict(rank=8, n_blocks=2, lr=3e-3, alpha_lr=0.05, edit_lr=1.0, val_size=2, val_every=0, max_loc=2)


@pytest.fixture(autouse=True)
def _cache(isolated_cache):
    return isolated_cache


@pytest.fixture(scope="module")
def examples():
    return [example_from_case(c) for c in load_example_facts(n=8)]


def _hp(adapter, **extra):
    return MENDHyperParams.for_model(adapter).override(**{**FAST, **extra})


def _randomised(net: MENDNetwork) -> MENDNetwork:
    """A network far from its identity initialisation (non-zero up-projections and offsets)."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return net


# ------------------------------------------------------------------ the network
def test_zero_gradient_gives_zero_delta() -> None:
    net = _randomised(MENDNetwork({5: (12, 6)}, rank=4, n_blocks=2, edit_lr=0.5))
    net.stats["5"].update(torch.randn(20, 18))
    net.eval()  # statistics stay fixed between the calls compared
    u = torch.randn(7, 12)
    up, vp = net.weight_delta(5, u, torch.zeros(7, 6))
    assert torch.equal(up @ vp.T, torch.zeros(6, 12))
    # Zero-gradient tokens among others contribute nothing: the same delta as without them.
    delta = torch.randn(7, 6)
    delta[[1, 4]] = 0
    up, vp = net.weight_delta(5, u, delta)
    keep = [0, 2, 3, 5, 6]
    up2, vp2 = net.weight_delta(5, u[keep], delta[keep])
    assert up.shape[1] == 5
    torch.testing.assert_close(up @ vp.T, up2 @ vp2.T)
    assert (up @ vp.T).abs().max() > 0


def test_statistics_match_the_batch_moments_and_update_only_in_training() -> None:
    net = MENDNetwork({0: (3, 2)}, rank=2, n_blocks=1, edit_lr=1.0)
    data = torch.randn(50, 3), torch.randn(50, 2)
    net.train()
    for chunk in range(5):  # five updates of ten rows = the moments of all fifty
        net.pseudo_factors(0, data[0][chunk * 10:(chunk + 1) * 10], data[1][chunk * 10:(chunk + 1) * 10])
    mean, std = net.stats["0"].moments()
    z = torch.cat(data, 1)
    torch.testing.assert_close(mean, z.mean(0))
    torch.testing.assert_close(std, z.std(0))
    net.eval()
    net.pseudo_factors(0, torch.randn(4, 3), torch.randn(4, 2))
    assert float(net.stats["0"].count) == 50


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_untrained_editor_is_one_gradient_step(arch: str) -> None:
    """An untrained g passes the raw factors through: dW = -alpha * dL/dW of the edit loss, on every architecture."""
    adapter = tiny_adapter(arch)
    hp_ = _hp(adapter, edit_lr=0.25)
    layers = [1, 3]
    net = build_network(adapter, layers, hp_)
    with torch.no_grad():  # statistics from earlier edits must not matter to an identity network
        for layer in layers:
            net.stats[str(layer)].update(torch.randn(30, sum(net.shapes[layer])) * 3 + 1)
    requests = example_requests(2)
    delta = delta_from_network(adapter, net, requests)
    batch = TokenBatch.with_targets(adapter.tokenizer, [r.filled for r in requests], [r.target_new for r in requests])
    weights = [adapter.mlp_down_weight(layer).parameter for layer in layers]
    for w in weights:
        w.requires_grad_(True)
    try:
        from factscope.edit.keys import pad_rows, pad_id_of

        ids, mask = pad_rows(batch.seqs, pad_id_of(adapter.tokenizer))
        logits = adapter.model(input_ids=ids, attention_mask=mask).logits
        rows, pos = torch.tensor(batch.rows), torch.tensor(batch.positions)
        loss = target_nll(logits[rows, pos].float(), batch).sum()
        grads = torch.autograd.grad(loss, weights)
    finally:
        for w in weights:
            w.requires_grad_(False)
    for entry, layer, grad in zip(delta.entries, layers, grads):
        expected = -0.25 * (grad.T if adapter.mlp_down_weight(layer).transposed else grad)  # (out, in)
        torch.testing.assert_close(entry.dense(), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


# ------------------------------------------------------------------ training
def test_training_lowers_the_loss(examples) -> None:
    adapter = sharpened_tiny_adapter()
    # The tiny random model's gradients are small: big steps, and the edit loss at full weight.
    hp_ = _hp(adapter, steps=12, edit_lr=30.0, lr=1e-2, alpha_lr=0.2, c_edit=1.0)
    train = examples[:3]

    def objective(net) -> float:
        with torch.no_grad():
            out = [_scores(adapter, net, [ex], hp_, grad=False) for ex in train]
        return sum(hp_.c_edit * float(o["nll"].mean()) + hp_.c_loc * float(o["kl"]) for o in out) / len(out)

    before = objective(build_network(adapter, [1, 2, 3], hp_).eval())
    result = train_mend(adapter, train, hp_, val_data=examples[6:8])
    after = objective(result.network.eval())
    assert after < 0.97 * before  # measured: 5.69 -> 5.43
    assert result.editor_path is not None and result.editor_path.is_file()
    assert set(result.validation) >= {"rewrite_acc", "para_acc", "para_nll", "loc_kl", "loc_top1_same"}


class _Killed(Exception):
    pass


def _state(net: MENDNetwork) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_a_killed_run_resumes_to_the_uninterrupted_state(examples, tmp_path, monkeypatch) -> None:
    adapter = sharpened_tiny_adapter()
    hp_ = _hp(adapter, steps=6, checkpoint_every=2, batch_size=2)
    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "straight"))
    straight = train_mend(adapter, examples, hp_)
    monkeypatch.setenv("FACTSCOPE_CACHE", str(tmp_path / "killed"))

    def kill_at_3(step: int, _losses: dict) -> None:
        if step == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train_mend(adapter, examples, hp_, callback=kill_at_3)
    torch.manual_seed(123)  # the global RNG differs in a new process; the checkpoint restores it
    resumed = train_mend(adapter, examples, hp_)
    assert resumed.resumed_from == 2 and resumed.step == 6
    a, b = _state(straight.network), _state(resumed.network)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [l["loss"] for l in straight.losses[2:]] == [l["loss"] for l in resumed.losses]
    assert straight.validation == resumed.validation


def test_data_order_is_a_function_of_the_step() -> None:
    order = DataOrder(5, seed=3)
    epoch = [order.batch(s, 1)[0] for s in range(5)]
    assert sorted(epoch) == list(range(5))
    assert DataOrder(5, seed=3).batch(7, 2) == order.batch(7, 2)
    second = [order.batch(s, 1)[0] for s in range(5, 10)]
    assert sorted(second) == list(range(5)) and second != epoch  # each epoch its own permutation


# ------------------------------------------------------------------ the editor
@pytest.fixture
def trained(examples):
    adapter = sharpened_tiny_adapter()
    hp_ = _hp(adapter, steps=3)
    result = train_mend(adapter, examples, hp_)
    return adapter, hp_, result


def test_edit_leaves_the_model_untouched_and_the_delta_reverts_bit_exactly(trained) -> None:
    adapter, hp_, result = trained
    assert "mend" in EDITORS
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    requests = example_requests(2)
    delta = edit(adapter, requests, editor="mend", hparams=hp_, probe="record")
    assert all(torch.equal(v, before[k]) for k, v in adapter.model.state_dict().items())
    assert delta.metadata["editor"] == "mend" and delta.metadata["model_fingerprint"] == adapter.fingerprint
    assert delta.metadata["mend_editor"]["file"] == str(result.editor_path)
    assert [e.key for e in delta.entries] == ["mlp_key.1", "mlp_key.2", "mlp_key.3"]
    assert all(e.v is not None and e.u.shape[1] == e.v.shape[1] for e in delta.entries)
    ids = torch.tensor([adapter.tokenizer(requests[0].filled)["input_ids"]])
    with torch.no_grad():
        plain = adapter.model(input_ids=ids).logits
        with delta.applied(adapter):
            changed = [k for k, v in adapter.model.state_dict().items() if not torch.equal(v, before[k])]
            edited = adapter.model(input_ids=ids).logits
    assert len(changed) == 3
    assert not torch.equal(plain, edited)
    assert all(torch.equal(v, before[k]) for k, v in adapter.model.state_dict().items())


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_trains_and_edits_every_architecture(arch: str, examples) -> None:
    adapter = tiny_adapter(arch)
    hp_ = _hp(adapter, steps=2, val_size=1)
    result = train_mend(adapter, examples[:3], hp_)
    assert len(result.losses) == 2 and all(l["loss"] == l["loss"] for l in result.losses)  # finite, not NaN
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    delta = mend_edit(adapter, example_requests(1), hp_)
    assert [e.layer for e in delta.entries] == [1, 2, 3]
    delta.apply(adapter)
    assert any(not torch.equal(v, before[k]) for k, v in adapter.model.state_dict().items())
    delta.revert(adapter)
    assert all(torch.equal(v, before[k]) for k, v in adapter.model.state_dict().items())


def test_editor_file_and_train_data_select_the_editor(trained, tmp_path) -> None:
    adapter, hp_, result = trained
    by_file = mend_edit(adapter, example_requests(1), hp_.override(editor_file=str(result.editor_path), rank=16))
    assert by_file.metadata["mend_editor"]["file"] == str(result.editor_path)
    other = tmp_path / "other.json"  # a training file no editor was trained on
    other.write_text(json.dumps(_flat_records(3)))
    with pytest.raises(MENDNotTrainedError):
        mend_edit(adapter, example_requests(1), hp_, train_data=str(other))


def test_not_trained_message_says_how_to_train_and_how_long(examples) -> None:
    adapter = sharpened_tiny_adapter()
    with pytest.raises(MENDNotTrainedError, match=r"factscope train-mend --data .* --steps 300.*about [\d.]+ (s|min|h) here.*s/step"):
        mend_edit(adapter, example_requests(1))


def test_train_if_missing_trains_first(tmp_path) -> None:
    adapter = sharpened_tiny_adapter()
    data = tmp_path / "train.json"
    data.write_text(json.dumps(_flat_records(4)))
    delta = mend_edit(adapter, example_requests(1), _hp(adapter, steps=2, val_size=1), train_if_missing=True,
                      train_data=str(data))
    assert delta.metadata["mend_editor"]["steps"] == 2


# ------------------------------------------------------------------ cache keys
def test_the_cache_key_changes_with_every_keyed_input() -> None:
    adapter = tiny_adapter("llama")
    hp_ = _hp(adapter)
    base = editor_key(adapter, hp_, "d1").full
    assert editor_key(adapter, hp_.override(steps=999, val_every=7, checkpoint_every=3), "d1").full == base
    assert editor_key(tiny_adapter("llama", seed=1), hp_, "d1").full != base  # model fingerprint
    assert editor_key(adapter, hp_.override(layers=[-2, -1]), "d1").full != base
    assert editor_key(adapter, hp_, "d2").full != base
    assert editor_key(adapter, hp_, "d1", "v1").full != base
    for field, value in dict(rank=9, n_blocks=1, shared=False, edit_lr=0.5, batch_size=3, lr=1e-2, alpha_lr=0.1,
                             c_edit=0.2, c_loc=2.0, grad_clip=5.0, seed=1, max_equiv=1, equiv_include_prompt=False,
                             max_loc=1).items():
        assert editor_key(adapter, hp_.override(**{field: value}), "d1").full != base, field


# ------------------------------------------------------------------ bad inputs
def _flat_records(n: int) -> list[dict]:
    out = []
    for i, case in enumerate(load_example_facts(n=n)):
        out.append({"case_id": i, "prompt": case.filled, "subject": case.subject, "target_new": case.target_new,
                    "ground_truth": case.target_true, "rephrase_prompt": case.paraphrase_prompts[0],
                    "locality_prompt": case.neighborhood_prompts[0], "locality_ground_truth": case.target_true})
    return out


def test_bad_training_files_are_refused_naming_the_file(tmp_path) -> None:
    adapter = tiny_adapter("llama")
    with pytest.raises(MENDDataError, match="does not exist"):
        train_mend(adapter, tmp_path / "missing.json", steps=1)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(MENDDataError, match="broken.json"):
        train_mend(adapter, broken, steps=1)
    records = _flat_records(3)
    for r in records:
        r.pop("locality_prompt"), r.pop("locality_ground_truth")
    no_loc = tmp_path / "noloc.json"
    no_loc.write_text(json.dumps(records))
    with pytest.raises(MENDDataError, match="no unrelated prompts"):
        train_mend(adapter, no_loc, steps=1)


def test_a_damaged_checkpoint_is_refused(examples) -> None:
    adapter = sharpened_tiny_adapter()
    hp_ = _hp(adapter, steps=2, checkpoint_every=1)
    result = train_mend(adapter, examples, hp_)
    state = result.folder / STATE_FILE
    raw = bytearray(state.read_bytes())
    raw[-5] ^= 0xFF
    state.write_bytes(bytes(raw))
    with pytest.raises(MENDCheckpointError, match=str(state)):
        train_mend(adapter, examples, hp_.override(steps=4))
    resumed = train_mend(adapter, examples, hp_.override(steps=4), fresh=True)
    assert resumed.resumed_from == 0 and resumed.step == 4


def test_cli_bad_inputs_exit_2_with_one_error_line(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train-mend", "--data", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "missing.json" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_trains_resumes_and_edits(tmp_path) -> None:
    """train-mend on a saved tiny model, then `edit --editor mend` with the trained editor."""
    model_dir = tmp_path / "tiny"
    adapter = sharpened_tiny_adapter()
    adapter.model.save_pretrained(model_dir)
    adapter.tokenizer.save_pretrained(model_dir)
    data = tmp_path / "train.json"
    data.write_text(json.dumps(_flat_records(6)))
    runner = CliRunner()
    sets = [arg for k, v in FAST.items() for arg in ("--set", f"{k}={v}")]
    first = runner.invoke(app, ["train-mend", "--data", str(data), "--model", str(model_dir), "--steps", "2", *sets])
    assert first.exit_code == 0, first.output
    more = runner.invoke(app, ["train-mend", "--data", str(data), "--model", str(model_dir), "--steps", "3", "--json", *sets])
    assert more.exit_code == 0, more.output
    info = json.loads(more.stdout)
    assert info["resumed_from"] == 2 and info["steps"] == 3 and set(info["validation"]) >= {"para_acc", "loc_kl"}
    edited = runner.invoke(app, ["edit", "--editor", "mend", "--model", str(model_dir), "--prompt", "The capital of {} is",
                                 "--subject", "Italy", "--target", "Paris", "--probe", "off", *sets])
    assert edited.exit_code == 0, edited.output
    untrained = runner.invoke(app, ["edit", "--editor", "mend", "--model", str(model_dir), "--prompt", "The capital of {} is",
                                    "--subject", "Italy", "--target", "Paris", "--set", "rank=3"])
    assert untrained.exit_code == 2 and "factscope train-mend" in untrained.output
