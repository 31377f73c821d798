"""Train a MEND editor: edit with g, score the edited model, backpropagate into g and α.

Usage::

    result = train_mend(adapter, "../shared/data/counterfact/counterfact-train.json", steps=300)
    result.editor_path, result.validation          # cache_dir()/mend/<...>/editor.safetensors, metrics
    train_mend(adapter, examples, steps=10, callback=lambda step, info: ...)   # a list of MENDExample works too

One step (Mitchell et al. 2022, §3): for a batch of edit requests, the gradient
factors (u_t, δ_t) of their edit loss are read on the unedited model; g turns them
into ΔW_l = −α_l Σ_t δ̃_t ũ_tᵀ; the edited model (ΔW added through hooks, the weights
never change) is scored on the requests' equivalence prompts (NLL of the target) and
its unrelated prompts (KL from the unedited model, every token); the loss
``c_edit · NLL + c_loc · KL`` is backpropagated through ΔW into g and log α (Adam).
Only the layers from the lowest edited one are recomputed: those below never change.

The state (network, optimizer, RNG, step) is written atomically every
``checkpoint_every`` steps; a run started again with the same settings resumes from
it and ends in the state an uninterrupted run reaches (the data order is a function
of the step). Validation edits each held-out example alone on the unedited model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from factscope.edit.mend.data import DataOrder, MENDExample, load_examples, split_examples
from factscope.edit.mend.factors import TokenBatch, added_deltas, gradient_factors, runner_for, scored_logits, target_nll
from factscope.edit.mend.hparams import MENDHyperParams
from factscope.edit.mend.network import MENDNetwork
from factscope.edit.mend.store import (
    EDITOR_FILE, LOG_FILE, STATE_FILE, EditorKey, build_network, editor_key, file_digest, load_state,
    record_seconds_per_step, run_folder, save_editor, save_state,
)
from factscope.io_utils import FolderLock
from factscope.models.adapter import ModelAdapter


@dataclass
class TrainResult:
    """What a training run produced."""

    editor_path: Path | None  # None when the run stopped early (callback) before finishing
    folder: Path
    step: int
    resumed_from: int
    losses: list[dict[str, float]] = field(default_factory=list)  # per step of this call
    validation: dict[str, float] = field(default_factory=dict)
    seconds_per_step: float = float("nan")
    network: MENDNetwork | None = None


@dataclass
class _Rows:
    """The scored rows of one example set: edit-loss prompts, then unrelated prompts."""

    equiv: TokenBatch
    loc: TokenBatch
    equiv_kind: list[str]  # "prompt" | "paraphrase" per equivalence row


def _rows(tokenizer: Any, examples: Sequence[MENDExample], hp_: MENDHyperParams) -> _Rows:
    prompts, targets, kinds, loc = [], [], [], []
    for ex in examples:
        chosen = ([(ex.request.filled, "prompt")] if hp_.equiv_include_prompt else [])
        chosen += [(p, "paraphrase") for p in ex.equivalents[: hp_.max_equiv]]
        for prompt, kind in chosen:
            prompts.append(prompt)
            targets.append(ex.request.target_new)
            kinds.append(kind)
        loc += list(ex.unrelated[: hp_.max_loc])
    return _Rows(TokenBatch.with_targets(tokenizer, prompts, targets), TokenBatch.every_token(tokenizer, loc), kinds)


def edit_factors(adapter: ModelAdapter, net: MENDNetwork, examples: Sequence[MENDExample]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """The edit of ``examples`` (one batch edit): layer → (up, vp) with ΔW = up @ vp.T."""
    requests = [ex.request for ex in examples]
    batch = TokenBatch.with_targets(adapter.tokenizer, [r.filled for r in requests], [r.target_new for r in requests])
    factors = gradient_factors(adapter, batch, net.layers)
    return {layer: net.weight_delta(layer, *factors[layer]) for layer in net.layers}


def _kl(base: torch.Tensor, edited: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Mean over unrelated prompts of the per-token-mean KL(p_base ‖ p_edited)."""
    if not batch.rows:
        return edited.new_zeros(())
    logp, logq = torch.log_softmax(base, -1), torch.log_softmax(edited, -1)
    per_token = (logp.exp() * (logp - logq)).sum(-1)
    weights = torch.tensor(batch.row_weights, device=edited.device)
    return (per_token * weights).sum() / len(batch.seqs)


def _scores(adapter: ModelAdapter, net: MENDNetwork, examples: Sequence[MENDExample], hp_: MENDHyperParams,
            *, grad: bool) -> dict[str, Any]:
    """Edit ``examples`` together and score the edited model (with autograd when ``grad``)."""
    rows = _rows(adapter.tokenizer, examples, hp_)
    n_equiv = len(rows.equiv.seqs)
    runner = runner_for(adapter, rows.equiv.seqs + rows.loc.seqs, net.layers)
    with torch.no_grad():
        base_hidden = runner.run()
        base_loc = scored_logits(adapter, base_hidden, rows.loc, n_equiv) if rows.loc.rows else None
        base_equiv = scored_logits(adapter, base_hidden, rows.equiv)
    with torch.set_grad_enabled(grad):
        deltas = edit_factors(adapter, net, examples)
        with added_deltas(adapter, deltas):
            hidden = runner.run()
        equiv_logits = scored_logits(adapter, hidden, rows.equiv)
        nll = target_nll(equiv_logits, rows.equiv)
        loc_logits = scored_logits(adapter, hidden, rows.loc, n_equiv) if rows.loc.rows else None
        kl = _kl(base_loc, loc_logits, rows.loc) if loc_logits is not None else nll.new_zeros(())
    return {"rows": rows, "nll": nll, "kl": kl, "equiv_logits": equiv_logits, "base_equiv": base_equiv,
            "loc_logits": loc_logits, "base_loc": base_loc}


def train_step(adapter: ModelAdapter, net: MENDNetwork, optimizer: torch.optim.Optimizer, examples: Sequence[MENDExample],
               hp_: MENDHyperParams) -> dict[str, float]:
    """One optimisation step of g and α on one batch edit; returns its losses."""
    net.train()
    out = _scores(adapter, net, examples, hp_, grad=True)
    nll = out["nll"].mean()
    loss = hp_.c_edit * nll + hp_.c_loc * out["kl"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(net.parameters()), hp_.grad_clip)
    optimizer.step()
    return {"loss": float(loss.detach()), "nll": float(nll.detach()), "kl": float(out["kl"].detach()),
            "grad_norm": float(norm)}


def _token_accuracy(logits: torch.Tensor, batch: TokenBatch, rows: list[int]) -> list[float]:
    hit = (logits.argmax(-1).cpu() == torch.tensor(batch.targets)).float()
    out = []
    for r in rows:
        mask = torch.tensor([row == r for row in batch.rows])
        out.append(float(hit[mask].mean()))
    return out


@torch.no_grad()
def validate(adapter: ModelAdapter, net: MENDNetwork, examples: Sequence[MENDExample], hp_: MENDHyperParams) -> dict[str, float]:
    """Edit each example alone; mean edit success and locality over ``examples``.

    ``rewrite_acc`` / ``para_acc``: teacher-forced target token accuracy (top-1) after the
    edit on the rewrite prompt / paraphrases (``*_before``: on the unedited model);
    ``para_nll``: mean target NLL on paraphrases; ``loc_kl``: KL(p_W ‖ p_W~) per token of
    unrelated prompts; ``loc_top1_same``: share of unrelated prompts whose top-1 next
    token after the prompt is unchanged.
    """
    net.eval()
    sums: dict[str, list[float]] = {k: [] for k in ("rewrite_acc", "para_acc", "para_acc_before", "para_nll", "loc_kl",
                                                    "loc_top1_same", "rewrite_acc_before")}
    for ex in examples:
        out = _scores(adapter, net, [ex], hp_, grad=False)
        rows: _Rows = out["rows"]
        kinds = rows.equiv_kind
        para = [i for i, k in enumerate(kinds) if k == "paraphrase"]
        prompt = [i for i, k in enumerate(kinds) if k == "prompt"]
        after = _token_accuracy(out["equiv_logits"], rows.equiv, list(range(len(kinds))))
        before = _token_accuracy(out["base_equiv"], rows.equiv, list(range(len(kinds))))
        for i in prompt:
            sums["rewrite_acc"].append(after[i])
            sums["rewrite_acc_before"].append(before[i])
        for i in para:
            sums["para_acc"].append(after[i])
            sums["para_acc_before"].append(before[i])
            sums["para_nll"].append(float(out["nll"][i]))
        if out["loc_logits"] is not None:
            sums["loc_kl"].append(float(out["kl"]))
            last = rows.loc.last_positions()
            same = out["loc_logits"][last].argmax(-1) == out["base_loc"][last].argmax(-1)
            sums["loc_top1_same"] += same.float().tolist()
    return {k: sum(v) / len(v) for k, v in sums.items() if v} | {"n": float(len(examples))}


def _optimizer(net: MENDNetwork, hp_: MENDHyperParams) -> torch.optim.Optimizer:
    others = [p for name, p in net.named_parameters() if name != "log_alpha"]
    return torch.optim.Adam([{"params": others, "lr": hp_.lr}, {"params": [net.log_alpha], "lr": hp_.alpha_lr}])


def _append_log(folder: Path, record: dict[str, Any]) -> None:
    with open(folder / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def train_mend(
    adapter: ModelAdapter,
    data: str | Path | Sequence[MENDExample],
    hparams: MENDHyperParams | None = None,
    *,
    val_data: str | Path | Sequence[MENDExample] | None = None,
    n: int | None = None,
    fresh: bool = False,
    progress: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train (or resume training) a MEND editor for ``adapter``; returns where it was saved and its validation.

    ``data``/``val_data``: a COUNTERFACT/zsRE file or a list of examples (then keyed by
    their content). Without ``val_data`` the last ``val_size`` training examples are held
    out. ``fresh`` discards a checkpoint of the same settings. ``callback(step, losses)``
    runs after every step (an exception in it stops the run like a kill would: the last
    checkpoint stays).
    """
    hp_ = (hparams or MENDHyperParams.for_model(adapter)).override(**overrides)
    train, train_sha = _examples(data, adapter, n)
    if val_data is None:
        train, val = split_examples(train, hp_.val_size)
        val_sha = None
    else:
        val, val_sha = _examples(val_data, adapter, None)
    key = editor_key(adapter, hp_, train_sha, val_sha)
    folder = run_folder(adapter, key)
    with FolderLock(folder, "MEND run folder"):
        return _run(adapter, hp_, key, folder, train, val, train_sha, fresh, progress, callback)


def _examples(data: str | Path | Sequence[MENDExample], adapter: ModelAdapter, n: int | None) -> tuple[list[MENDExample], str]:
    if isinstance(data, (str, Path)):
        examples = load_examples(data, adapter, n=n)
        digest = file_digest(data)
        return examples, digest if n is None else f"{digest}:first{n}"
    examples = list(data)[:n] if n is not None else list(data)
    payload = json.dumps([[e.request.to_dict(), e.equivalents, e.unrelated] for e in examples], sort_keys=True, default=str)
    return examples, hashlib.sha256(payload.encode()).hexdigest()


def _run(adapter: ModelAdapter, hp_: MENDHyperParams, key: EditorKey, folder: Path, train: list[MENDExample],
         val: list[MENDExample], train_sha: str, fresh: bool, progress: bool,
         callback: Callable[[int, dict[str, float]], None] | None) -> TrainResult:
    from tqdm.auto import tqdm

    net = build_network(adapter, key.layers, hp_)
    optimizer = _optimizer(net, hp_)
    state_path = folder / STATE_FILE
    start = 0
    if fresh:
        for name in (STATE_FILE, EDITOR_FILE, LOG_FILE):
            (folder / name).unlink(missing_ok=True)
    elif state_path.is_file():
        start, _ = load_state(state_path, net, optimizer, key=key)
    header = {"key": key.full, "model_fingerprint": adapter.fingerprint, "model": adapter.name, "layers": list(key.layers),
              "hparams": {**key.fields, "layers": list(key.layers)}, "train_sha256": train_sha,
              "n_train": len(train), "n_val": len(val)}
    order = DataOrder(len(train), hp_.seed)
    result = TrainResult(None, folder, start, start, network=net)
    finished = folder / EDITOR_FILE
    if start >= hp_.steps and finished.is_file():
        from factscope.edit.mend.store import read_editor_header

        done_header = read_editor_header(finished) or {}
        if done_header.get("steps") == start:
            result.editor_path = finished
            result.validation = done_header.get("validation", {})
            net.eval()
            return result
    bar = tqdm(total=hp_.steps, initial=min(start, hp_.steps), desc="train-mend", unit="step", disable=not progress)
    step_seconds = 0.0
    try:
        for step in range(start, hp_.steps):
            began = time.perf_counter()
            losses = train_step(adapter, net, optimizer, [train[i] for i in order.batch(step, hp_.batch_size)], hp_)
            step_seconds += time.perf_counter() - began
            result.losses.append(losses)
            result.step = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", nll=f"{losses['nll']:.2f}", kl=f"{losses['kl']:.4f}")
            if result.step % hp_.checkpoint_every == 0 or result.step == hp_.steps:
                save_state(state_path, net, optimizer, step=result.step, header=header)
            if val and hp_.val_every and result.step % hp_.val_every == 0 and result.step < hp_.steps:
                metrics = validate(adapter, net, val, hp_)
                _append_log(folder, {"step": result.step, "val": metrics})
                bar.write(f"step {result.step}: " + _format(metrics))
            if callback is not None:
                callback(result.step, losses)
    finally:
        bar.close()
    done = result.step - start
    if done:
        result.seconds_per_step = step_seconds / done
        record_seconds_per_step(adapter, key, result.seconds_per_step)
    if val:
        result.validation = validate(adapter, net, val, hp_)
        _append_log(folder, {"step": result.step, "val": result.validation, "final": True})
    header.update(steps=result.step, validation=result.validation, seconds_per_step=result.seconds_per_step)
    result.editor_path = save_editor(folder / EDITOR_FILE, net, header)
    net.eval()
    return result


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "n")
