"""``factscope edit`` / ``apply`` / ``revert`` / ``check-delta``: change a fact and see what else changed.

Usage::

    factscope edit --editor rome --prompt "The mother tongue of {} is" --subject "Danielle Darrieux" \\
        --target English --save delta.safetensors
    factscope edit --editor rets --prompt ... --set n_constraint_subjects=50 --hparams rets.yaml
    factscope apply --delta delta.safetensors --out edited-model/
    factscope revert --model edited-model/ --out restored-model/   # bit-exact original weights
    factscope check-delta --delta delta.safetensors     # apply → revert restores every weight bit-exactly
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from factscope.cli.common import (
    ModelOption,
    ModelSpec,
    check_hparams_file,
    check_input_file,
    check_layer_index,
    check_output_dir,
    check_output_file,
    check_prompt_fits,
    fail,
    load_adapter,
    model_options,
    parse_layer,
    print_json,
)

# Prompts about the same subject under other relations (over-generalisation check)
# when the example facts have none for the subject.
ORIGINALS_FILE = "factscope-originals.safetensors"  # written by `apply`, read by `revert`
GENERIC_OTHER_RELATIONS = ("{} was born in", "{} is a citizen of", "{} works as a", "{} is famous for")


@dataclass
class Probe:
    """A prompt to show before/after an edit, and why it is shown."""

    kind: str  # "rewrite", "paraphrase", "other relation", "other subject"
    prompt: str


def example_facts() -> list[dict[str, Any]]:
    """The package's example facts (COUNTERFACT-like records), or [] when not shipped."""
    from importlib import resources

    try:
        text = resources.files("factscope").joinpath("data/example_facts.json").read_text(encoding="utf-8")
        data = json.loads(text)
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return []
    return data if isinstance(data, list) else []


def probes_for(subject: str, prompt: str, paraphrases: list[str], others: list[str], neighbours: list[str]) -> list[Probe]:
    """Rewrite prompt, paraphrases and other-relation prompts (from the example facts when the subject matches)."""
    from factscope.tokens import fill_template

    record = next((r for r in example_facts() if r.get("requested_rewrite", {}).get("subject") == subject), None)
    if record is not None:
        paraphrases = paraphrases or list(record.get("paraphrase_prompts", []))[:3]
        others = others or [p["prompt"] if isinstance(p, dict) else str(p) for p in record.get("other_relation_prompts", [])][:4]
        neighbours = neighbours or list(record.get("neighborhood_prompts", []))[:2]
    if not others:
        others = [fill_template(t, subject) for t in GENERIC_OTHER_RELATIONS]
    probes = [Probe("rewrite", fill_template(prompt, subject))]
    probes += [Probe("paraphrase", p) for p in paraphrases]
    probes += [Probe("other relation", fill_template(p, subject) if "{}" in p else p) for p in others]
    probes += [Probe("other subject", p) for p in neighbours]
    return probes


def measure(adapter: Any, probes: list[Probe], target_new: str, target_true: str | None) -> list[dict[str, Any]]:
    """Top-1 next token and P(first token of target_new / target_true) for each probe."""
    from factscope.scoring import continuation_ids, next_token_logprobs

    logprobs = next_token_logprobs(adapter, [p.prompt for p in probes])
    rows = []
    for probe, lp in zip(probes, logprobs):
        probs = lp.exp()
        top = int(probs.argmax())
        row = {"kind": probe.kind, "prompt": probe.prompt, "top": adapter.tokenizer.decode([top]), "p_top": float(probs[top])}
        row["p_new"] = float(probs[continuation_ids(adapter.tokenizer, probe.prompt, target_new)[0]])
        if target_true:
            row["p_true"] = float(probs[continuation_ids(adapter.tokenizer, probe.prompt, target_true)[0]])
        rows.append(row)
    return rows


def print_comparison(before: list[dict[str, Any]], after: list[dict[str, Any]], target_new: str) -> None:
    """A before → after table of top-1 predictions."""
    typer.echo(f"  {'':15} {'prompt':48} {'before':>22}   {'after':>22}   P({target_new.strip()}) before→after")
    for b, a in zip(before, after):
        changed = "*" if b["top"] != a["top"] else " "
        typer.echo(
            f"{changed} {b['kind']:15} {b['prompt'][:48]:48} {b['top']!r:>14} {b['p_top']:5.2f}   "
            f"{a['top']!r:>14} {a['p_top']:5.2f}   {b['p_new']:.3f} → {a['p_new']:.3f}"
        )


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set expects key=value, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def _check_editor(editor: str) -> None:
    from factscope.edit import EDITORS

    if editor.lower() not in EDITORS:
        fail(f"--editor {editor!r} is not an editor; available: {', '.join(sorted(EDITORS))}.")


def _layer_override(editor: str, value: int | float, adapter: Any) -> dict[str, Any]:
    """``--layer``: the edited layer, or for MEMIT/PMET the last layer of a range of the default length."""
    from factscope.edit import hparams_for
    from factscope.edit.hparams import resolve_layer

    check_layer_index(adapter, value)
    if editor.lower() not in ("memit", "pmet"):
        return {"layer": value}
    try:
        top = resolve_layer(adapter, value)
        count = len(hparams_for(editor, adapter).layers)
    except ValueError as err:
        fail(str(err))
        raise
    return {"layers": list(range(max(0, top - count + 1), top + 1))}


@model_options(device_map=False)
def edit_cmd(
    prompt: Annotated[str, typer.Option("--prompt", help="Template with '{}' for the subject, e.g. 'The mother tongue of {} is'.")],
    subject: Annotated[str, typer.Option("--subject", help="The subject, e.g. 'Danielle Darrieux'.")],
    target: Annotated[str, typer.Option("--target", help="The new object (target_new), e.g. 'English'.")],
    editor: Annotated[str, typer.Option("--editor", "-e", help="rome | rets | memit | pmet | ft")] = "rome",
    target_true: Annotated[Optional[str], typer.Option("--target-true", help="The current object (optional).")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Edited layer index (or fraction of depth); MEMIT/PMET: the last layer of the range.")] = None,
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Text/JSONL file for the key covariance (default: text the model generates).")] = None,
    hparams: Annotated[Optional[Path], typer.Option("--hparams", help="YAML/JSON file of hyperparameters.")] = None,
    sets: Annotated[list[str], typer.Option("--set", help="Override a hyperparameter, key=value (repeatable). See `factscope edit-params`.")] = [],  # noqa: B006
    paraphrase: Annotated[list[str], typer.Option("--paraphrase", help="A paraphrase of the filled prompt to check (repeatable).")] = [],  # noqa: B006
    other: Annotated[list[str], typer.Option("--other", help="A prompt about the subject under another relation (repeatable; '{}' = subject).")] = [],  # noqa: B006
    save: Annotated[Optional[Path], typer.Option("--save", help="Write the delta as safetensors.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    probe: Annotated[str, typer.Option("--probe", help="Side-effect probe after the edit: warn (print it, flag a destructive "
                                                       "edit), strict (refuse a destructive edit: exit 1, nothing saved) or off.")] = "warn",
    model: ModelSpec = ModelSpec(),
) -> None:
    """Edit one fact and show predictions before/after on the prompt, paraphrases and other relations."""
    from factscope.edit import EditRequest, EditRequestError, edit
    from factscope.edit.probe import EditSideEffectError, SideEffectReport

    if probe not in ("warn", "strict", "off"):
        fail(f"--probe must be warn, strict or off, not {probe!r}.")
        return
    _check_editor(editor)
    overrides = _parse_sets(sets)
    layer_value = parse_layer(layer)
    check_hparams_file(hparams)
    check_input_file(corpus, "--corpus")
    check_output_file(save, "--save")  # before the edit is computed
    for text, option in ((prompt, "--prompt"), (subject, "--subject"), (target, "--target")):
        if not text.strip():
            fail(f"{option} is empty.")
    adapter = load_adapter(model)
    if layer_value is not None:
        overrides.update(_layer_override(editor, layer_value, adapter))
    request = EditRequest(prompt, subject, target, target_true)
    try:
        request.validate(adapter)
        check_prompt_fits(adapter, request.filled + " " + target, "--prompt with its subject and target")
        probes = probes_for(subject, prompt, paraphrase, other, [])
        before = measure(adapter, probes, target, target_true)
        delta = edit(adapter, [request], editor=editor, hparams=hparams, corpus=corpus, progress=not as_json,
                     probe="record" if probe == "warn" else probe, **overrides)
    except EditSideEffectError as err:
        typer.echo(f"error: {err} Nothing was saved (--probe strict).", err=True)
        raise typer.Exit(1) from None
    except (EditRequestError, ValueError, TypeError) as err:
        fail(str(err))
        return
    with delta.applied(adapter):
        after = measure(adapter, probes, target, target_true)
    if save is not None:
        try:
            delta.save(save)
        except OSError as err:
            fail(f"--save {save}: cannot write the delta ({err.strerror or err}).")
    if as_json:
        print_json({"editor": editor, "request": request.to_dict(), "before": before, "after": after,
                    "delta": {"entries": [e.key for e in delta.entries], "saved": str(save) if save else None,
                              "metadata": {k: v for k, v in delta.metadata.items() if k != "hparams"}}})
        return
    layers = sorted({e.layer for e in delta.entries})
    typer.echo(f"{editor.upper()} on {adapter.name}: {request.filled!r} → {target!r} (layers {layers})")
    print_comparison(before, after, target)
    if "side_effects" in delta.metadata:
        typer.echo(SideEffectReport.from_dict(delta.metadata["side_effects"]).summary())
    if save is not None:
        typer.echo(f"delta saved to {save}")


def edit_params(editor: Annotated[str, typer.Argument(help="rome | rets | memit | pmet | ft")] = "rome",
                model: ModelOption = None) -> None:
    """List an editor's hyperparameters with defaults (for the bundled model unless --model) and help."""
    from factscope.edit import hparams_for

    _check_editor(editor)
    adapter = load_adapter(model)
    try:
        hp = hparams_for(editor, adapter)
    except ValueError as err:
        fail(str(err))
        return
    for name, text in type(hp).help_table().items():
        typer.echo(f"{name:24} {getattr(hp, name)!r:>20}  {text}")


def apply_cmd(
    delta: Annotated[Path, typer.Option("--delta", help="Delta file written by `factscope edit --save`.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the edited model (save_pretrained format).")],
    strict: Annotated[bool, typer.Option(help="Refuse a delta made for a model with another fingerprint.")] = True,
    model: ModelOption = None,
) -> None:
    """Save an edited copy of the model (weights + tokenizer) to a folder."""
    from factscope.edit import DeltaError, WeightDelta
    from factscope.io_utils import atomic_write_json, save_tensors

    check_input_file(delta, "--delta")
    check_output_dir(out)
    try:
        weight_delta = WeightDelta.load(delta)  # its content hash is checked before any model loads
    except DeltaError as err:
        fail(str(err))
        return
    adapter = load_adapter(model)
    try:
        weight_delta.check_model(adapter, strict=strict)
        weight_delta.apply(adapter)
    except DeltaError as err:
        fail(str(err))
        return
    out.mkdir(parents=True, exist_ok=True)
    adapter.model.save_pretrained(out)
    adapter.tokenizer.save_pretrained(out)
    # The changed matrices as they were, so that `factscope revert` restores them bit-exactly
    # (W + dW - dW is not W in floating point); with their content hash, checked by `revert`.
    originals = weight_delta.original_weights()
    save_tensors(out / ORIGINALS_FILE, originals, {"factscope": json.dumps({"delta": str(delta)})})
    atomic_write_json(out / "factscope-delta.json", weight_delta.metadata, indent=2, default=str)
    typer.echo(f"edited model written to {out} ({len(weight_delta.entries)} weight change(s); "
               f"`factscope revert --model {out}` restores the original)")


def revert_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for the restored model (save_pretrained format).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Folder written by `factscope apply`.")],
) -> None:
    """Save the original model again from a folder written by `factscope apply` (bit-exact)."""
    import torch

    from factscope.io_utils import IntegrityError, load_tensors

    originals_path = Path(model) / ORIGINALS_FILE
    if not originals_path.is_file():
        fail(f"{originals_path} not found: `factscope revert` needs a folder written by `factscope apply`.")
    check_output_dir(out)
    try:
        originals, header = load_tensors(originals_path, require_hash=False)
    except IntegrityError as err:  # damaged: restoring from it would write wrong weights
        fail(f"{err} The original weights cannot be restored from it.")
        return
    if "factscope_sha256" not in header:
        typer.secho(f"warning: {originals_path} carries no content hash (older factscope); it cannot be checked for damage.",
                    fg=typer.colors.YELLOW, err=True)
    adapter = load_adapter(model)
    pairs = []
    for key, tensor in originals.items():
        site_kind, _, layer = key.rpartition(".")
        try:
            weight = adapter.weight(site_kind, adapter.check_layer(int(layer)))
        except (ValueError, KeyError) as err:
            fail(f"{originals_path}: entry {key!r} does not fit this model ({err}).")
            return
        if weight.parameter.shape != tensor.shape:
            fail(f"{originals_path}: entry {key!r} has shape {tuple(tensor.shape)}, the model's weight "
                 f"{tuple(weight.parameter.shape)}.")
        pairs.append((weight, tensor))
    with torch.no_grad():  # every entry checked above, so nothing is half-restored
        for weight, tensor in pairs:
            weight.parameter.copy_(tensor.to(weight.parameter.device))
    out.mkdir(parents=True, exist_ok=True)
    adapter.model.save_pretrained(out)
    adapter.tokenizer.save_pretrained(out)
    typer.echo(f"original model written to {out} ({len(pairs)} weight(s) restored)")


def check_delta(
    delta: Annotated[Path, typer.Option("--delta", help="Delta file to check.")],
    model: ModelOption = None,
) -> None:
    """Apply then revert a delta and confirm every weight is restored bit-exactly."""
    import torch

    from factscope.edit import DeltaError, WeightDelta

    check_input_file(delta, "--delta")
    try:
        weight_delta = WeightDelta.load(delta)  # fails on a content-hash mismatch
    except DeltaError as err:
        fail(str(err))
        return
    adapter = load_adapter(model)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    try:
        weight_delta.check_model(adapter)
        weight_delta.apply(adapter)
    except DeltaError as err:
        fail(str(err))
        return
    changed = [k for k, v in adapter.model.state_dict().items() if not torch.equal(v, before[k])]
    weight_delta.revert(adapter)
    broken = [k for k, v in adapter.model.state_dict().items() if not torch.equal(v, before[k])]
    fp = weight_delta.metadata.get("model_fingerprint")
    typer.echo(f"entries: {[e.key for e in weight_delta.entries]}; made for fingerprint {fp} (this model: {adapter.fingerprint})")
    typer.echo("content hash: " + ("verified (the file is intact)" if weight_delta.verified
                                   else "none recorded (older factscope file; damage cannot be detected)"))
    typer.echo(f"applied: {len(changed)} tensor(s) changed; reverted: {'all restored bit-exactly' if not broken else broken}")
    if broken:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("edit")(edit_cmd)
    app.command("edit-params")(edit_params)
    app.command("apply")(apply_cmd)
    app.command("revert")(revert_cmd)
    app.command("check-delta")(check_delta)
