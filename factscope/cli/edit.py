"""``factscope edit`` / ``edit-params`` / ``apply`` / ``revert`` / ``check-delta``: change a fact and see what else changed.

Usage::

    factscope edit --editor rome --prompt "The mother tongue of {} is" --subject "Danielle Darrieux" \\
        --target English --save delta.safetensors
    factscope edit --editor rets --prompt ... --set n_constraint_records=200 --hparams rets.yaml --threads 1 --json
    factscope edit-params pmet                           # the fields --set and --hparams take, with defaults
    factscope apply --delta delta.safetensors --out edited-model/
    factscope revert --model edited-model/ --out restored-model/   # bit-exact original weights
    factscope check-delta --delta delta.safetensors     # apply → revert restores every weight bit-exactly
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factscope.cli.common import (
    check_corpus_file,
    check_input_file,
    check_output_dir,
    check_output_file,
    check_prompt_fits,
    fail,
    load_adapter,
    parse_layer,
    print_json,
    set_threads,
)
from factscope.cli.editor_args import check_editor, editor_overrides, layer_override, model_hparams
from factscope.cli.options import (
    CorpusOption,
    EditorOption,
    HparamsOption,
    JsonOption,
    ModelOption,
    ModelSpec,
    SetOption,
    ThreadsOption,
    model_options,
)
from factscope.cli.probes import measure, print_comparison, probes_for


@model_options(device_map=False)
def edit_cmd(
    prompt: Annotated[str, typer.Option("--prompt", help="Template with '{}' for the subject, e.g. 'The mother tongue of {} is'.")],
    subject: Annotated[str, typer.Option("--subject", help="The subject, e.g. 'Danielle Darrieux'.")],
    target: Annotated[str, typer.Option("--target", help="The new object (target_new), e.g. 'English'.")],
    editor: EditorOption = "rome",
    target_true: Annotated[Optional[str], typer.Option("--target-true", help="The current object (optional).")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Edited layer index (or fraction of depth); for an editor "
                                                 "of a layer range (MEMIT, PMET) the last layer of the range.")] = None,
    corpus: CorpusOption = None,
    hparams: HparamsOption = None,
    sets: SetOption = [],  # noqa: B006
    paraphrase: Annotated[list[str], typer.Option("--paraphrase", help="A paraphrase of the filled prompt to check (repeatable).")] = [],  # noqa: B006
    other: Annotated[list[str], typer.Option("--other", help="A prompt about the subject under another relation (repeatable; '{}' = subject).")] = [],  # noqa: B006
    save: Annotated[Optional[Path], typer.Option("--save", help="Write the delta as safetensors.")] = None,
    as_json: JsonOption = False,
    probe: Annotated[str, typer.Option("--probe", help="Side-effect probe after the edit: warn (print it, flag a destructive "
                                                       "edit), strict (refuse a destructive edit: exit 1, nothing saved) or off.")] = "warn",
    threads: ThreadsOption = None,
    model: ModelSpec = ModelSpec(),
) -> None:
    """Edit one fact and show predictions before/after on the prompt, paraphrases and other relations."""
    from factscope.edit import EditRequest, EditRequestError, edit
    from factscope.edit.probe import EditSideEffectError, SideEffectReport

    if probe not in ("warn", "strict", "off"):
        fail(f"--probe must be warn, strict or off, not {probe!r}.")
        return
    spec = check_editor(editor)
    overrides = editor_overrides(spec, sets, hparams)  # every key and value checked before the model loads
    layer_value = parse_layer(layer)
    check_corpus_file(corpus)
    check_output_file(save, "--save")  # before the edit is computed
    for text, option in ((prompt, "--prompt"), (subject, "--subject"), (target, "--target")):
        if not text.strip():
            fail(f"{option} is empty.")
    set_threads(threads)
    adapter = load_adapter(model)
    if layer_value is not None:
        overrides.update(layer_override(spec, layer_value, adapter))
    hp = model_hparams(spec, adapter, hparams, overrides)
    request = EditRequest(prompt, subject, target, target_true)
    try:
        request.validate(adapter)
        check_prompt_fits(adapter, request.filled + " " + target, "--prompt with its subject and target")
        probes = probes_for(subject, prompt, paraphrase, other, [])
        before = measure(adapter, probes, target, target_true)
        options = {**spec.split_options(overrides)[1], "progress": not as_json}
        if corpus is not None:
            options["corpus"] = corpus
        delta = edit(adapter, [request], editor=spec.name, hparams=hp, probe="record" if probe == "warn" else probe, **options)
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
        print_json({"editor": spec.name, "request": request.to_dict(), "before": before, "after": after,
                    "delta": {"entries": [e.key for e in delta.entries], "saved": str(save) if save else None,
                              "metadata": {k: v for k, v in delta.metadata.items() if k != "hparams"}}})
        return
    layers = sorted({e.layer for e in delta.entries})
    typer.echo(f"{spec.name.upper()} on {adapter.name}: {request.filled!r} → {target!r} (layers {layers})")
    print_comparison(before, after, target)
    if "side_effects" in delta.metadata:
        typer.echo(SideEffectReport.from_dict(delta.metadata["side_effects"]).summary())
    if save is not None:
        typer.echo(f"delta saved to {save}")


def edit_params(editor: Annotated[str, typer.Argument(help="A registered editor: rome | rets | memit | pmet | ft | kn | mend")] = "rome",
                as_json: JsonOption = False, model: ModelOption = None) -> None:
    """List an editor's hyperparameters with defaults (for the bundled model unless --model) and help."""
    spec = check_editor(editor, "EDITOR")
    adapter = load_adapter(model)
    hp = model_hparams(spec, adapter, None, {})
    table = type(hp).help_table()
    if as_json:
        print_json({"editor": spec.name, "model": adapter.name,
                    "fields": [{"name": n, "default": getattr(hp, n), "help": h} for n, h in table.items()]})
        return
    for name, text in table.items():
        typer.echo(f"{name:24} {getattr(hp, name)!r:>20}  {text}")


def apply_cmd(
    delta: Annotated[Path, typer.Option("--delta", help="Delta file written by `factscope edit --save`.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the edited model (save_pretrained format).")],
    strict: Annotated[bool, typer.Option(help="Refuse a delta made for a model with another fingerprint.")] = True,
    model: ModelOption = None,
) -> None:
    """Save an edited copy of the model (weights + tokenizer) to a folder."""
    from factscope.edit import DeltaError, WeightDelta
    from factscope.edit.originals import save_edited_model

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
        save_edited_model(adapter, weight_delta, out, source=delta)
    except DeltaError as err:
        fail(str(err))
        return
    typer.echo(f"edited model written to {out} ({len(weight_delta.entries)} weight change(s); "
               f"`factscope revert --model {out}` restores the original)")


def revert_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for the restored model (save_pretrained format).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Folder written by `factscope apply`.")],
) -> None:
    """Save the original model again from a folder written by `factscope apply` (bit-exact)."""
    from factscope.edit.originals import ORIGINALS_FILE, OriginalsError, read_originals, restore_originals

    if not (Path(model) / ORIGINALS_FILE).is_file():
        fail(f"{Path(model) / ORIGINALS_FILE} not found: `factscope revert` needs a folder written by `factscope apply`.")
    check_output_dir(out)
    try:
        originals = read_originals(model)
    except OriginalsError as err:
        fail(str(err))
        return
    if not originals.hashed:
        typer.secho(f"warning: {originals.path} carries no content hash (older factscope); it cannot be checked for damage.",
                    fg=typer.colors.YELLOW, err=True)
    adapter = load_adapter(model)
    try:
        restored = restore_originals(adapter, originals)
    except OriginalsError as err:
        fail(str(err))
        return
    out.mkdir(parents=True, exist_ok=True)
    adapter.model.save_pretrained(out)
    adapter.tokenizer.save_pretrained(out)
    typer.echo(f"original model written to {out} ({restored} weight(s) restored)")


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
