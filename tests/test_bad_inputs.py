"""Bad command-line input: exit code 2, a message that names the problem (and the file), never a traceback.

Every case runs the real CLI (``typer.testing.CliRunner``) against tiny models saved to folders,
so nothing downloads and the bundled model is never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from factscope.cli import app
from factscope.edit.delta import DeltaEntry, WeightDelta
from factscope.testing import tiny_model

LONG = "The capital of France is Paris and " * 40  # > 128 tokens: longer than the tiny models' context


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A workspace of tiny models, good and bad files, and folders the cases refer to as {name}."""
    root = tmp_path_factory.mktemp("bad-inputs")
    paths: dict[str, Path] = {"root": root}
    for arch in ("gpt2", "llama"):
        model, tok = tiny_model(arch)
        model.save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
        paths[arch] = root / arch
    from factscope.models import load_model

    adapter = load_model(str(root / "gpt2")).adapter
    out_dim, in_dim = adapter.mlp_down_weight(1).matrix.shape
    good = WeightDelta([DeltaEntry("mlp_key", 1, torch.full((out_dim, 1), 0.01), torch.ones(in_dim, 1))],
                       {"model_fingerprint": adapter.fingerprint})
    paths["delta"] = good.save(root / "delta.safetensors")
    deep = WeightDelta([DeltaEntry("mlp_key", 10, torch.zeros(out_dim, 1), torch.zeros(in_dim, 1))],
                       {"model_fingerprint": adapter.fingerprint})
    paths["deep_delta"] = deep.save(root / "deep.safetensors")
    wide = WeightDelta([DeltaEntry("mlp_key", 1, torch.zeros(out_dim + 3, 1), torch.zeros(in_dim, 1))],
                       {"model_fingerprint": adapter.fingerprint})
    paths["wide_delta"] = wide.save(root / "wide.safetensors")
    other = WeightDelta([DeltaEntry("mlp_key", 1, torch.zeros(out_dim, 1), torch.zeros(in_dim, 1))],
                        {"model_fingerprint": "0123456789abcdef"})
    paths["other_delta"] = other.save(root / "other.safetensors")
    flipped = bytearray(paths["delta"].read_bytes())
    for i in range(1, 51):
        flipped[-4 * i] ^= 0x40
    (root / "flipped.safetensors").write_bytes(bytes(flipped))
    paths["flipped"] = root / "flipped.safetensors"

    def write(name: str, text: str) -> None:
        (root / name).write_text(text)
        paths[name.replace(".", "_")] = root / name

    write("garbage.safetensors", "not a safetensors file")
    write("bad.json", '{"layer": 3,,}')
    write("list.json", "[1, 2]")
    write("empty.json", "[]")
    write("bad.yaml", "layer: [1, 2\nv_lr: :")
    write("python.yaml", "layer: !!python/object/apply:os.system ['echo pwned']\n")
    write("list.yaml", "- 1\n- 2\n")
    write("unknown.yaml", "no_such_field: 1\n")
    write("plain.txt", "just text")
    write("bad_corpus.jsonl", "not json\n")
    write("no_text_corpus.jsonl", '{"title": "only a title"}\n')
    write("blank.txt", "\n\n  \n")
    write("attributes.json", '{"P103": ["French"]}')
    write("knowns.json", json.dumps([{"known_id": 0, "subject": "France", "attribute": "Paris", "template": "The capital of {} is",
                                      "prediction": " Paris", "prompt": "The capital of France is", "relation_id": "P36"}]))
    (root / "empty_dir").mkdir()
    (root / "bad_config").mkdir()
    (root / "bad_config" / "config.json").write_text("{not json")
    (root / "no_weights").mkdir()
    (root / "no_weights" / "config.json").write_text((root / "gpt2" / "config.json").read_text())
    (root / "no_tokenizer").mkdir()
    for name in ("config.json", "model.safetensors"):
        (root / "no_tokenizer" / name).write_bytes((root / "gpt2" / name).read_bytes())
    (root / "plain_model").mkdir()  # a saved model without factscope-originals.safetensors
    for f in (root / "gpt2").iterdir():
        (root / "plain_model" / f.name).write_bytes(f.read_bytes())
    (root / "damaged_originals").mkdir()
    for f in (root / "gpt2").iterdir():
        (root / "damaged_originals" / f.name).write_bytes(f.read_bytes())
    (root / "damaged_originals" / "factscope-originals.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    run = root / "run_bad_line"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": {"editor": "rome"}, "case_ids": [0, 1]}))
    (run / "results.jsonl").write_text('{"perspective": "entity", "index": 0}\n{"perspective": ent\n{"index": 1}\n')
    run2 = root / "run_bad_manifest"
    run2.mkdir()
    (run2 / "manifest.json").write_text("{damaged")
    (run2 / "results.jsonl").write_text("")
    paths.update(empty_dir=root / "empty_dir", bad_config=root / "bad_config", no_weights=root / "no_weights",
                 no_tokenizer=root / "no_tokenizer", plain_model=root / "plain_model",
                 damaged_originals=root / "damaged_originals", run_bad_line=run, run_bad_manifest=run2,
                 missing=root / "missing", file=root / "plain.txt")
    return paths


G = ["-m", "{gpt2}"]
L = ["-m", "{llama}"]
EDIT = ["edit", "--prompt", "The capital of {{}} is", "--subject", "France", "--target", "Paris"]
TRACE = ["trace", "The capital of France is", "--subject", "France"]
EVAL = ["evaluate", "--editor", "rome", "--no-generation"]
LENSDS = ["lens-dataset", "--attributes", "{attributes_json}"]

# (id, argv with {placeholders} from the workspace, text the message must contain)
CASES: list[tuple[str, list[str], str]] = [
    # predict
    ("predict-empty-prompt", ["predict", " ", *G], "prompt is empty"),
    ("predict-k-zero", ["predict", "x", "--k", "0", *G], "--k"),
    ("predict-k-huge", ["predict", "x", "--k", "100000", *G], "larger than the vocabulary"),
    ("predict-too-long-gpt2", ["predict", LONG, *G], "takes at most 128 tokens"),
    ("predict-too-long-llama", ["predict", LONG, *L], "takes at most 128 tokens"),
    ("predict-no-such-cuda", ["predict", "x", "--device", "cuda:99", *G], "CUDA device"),
    ("predict-bad-device", ["predict", "x", "--device", "banana", *G], "not a torch device"),
    ("predict-bad-dtype", ["predict", "x", "--dtype", "float13", *G], "Unknown dtype 'float13'"),
    ("predict-device-and-map", ["predict", "x", "--device", "cpu", "--device-map", "auto", *G], "either device or device_map"),
    ("predict-missing-folder", ["predict", "x", "-m", "{missing}/model"], "does not exist"),
    ("predict-missing-gguf", ["predict", "x", "-m", "{missing}.gguf"], "does not exist"),
    ("predict-empty-folder", ["predict", "x", "-m", "{empty_dir}"], "no config.json"),
    ("predict-bad-config", ["predict", "x", "-m", "{bad_config}"], "config.json is not valid JSON"),
    ("predict-no-weights", ["predict", "x", "-m", "{no_weights}"], "no weights"),
    ("predict-no-tokenizer", ["predict", "x", "-m", "{no_tokenizer}"], "no tokenizer files"),
    ("predict-model-is-file", ["predict", "x", "-m", "{file}"], "is a file, not a model"),
    # edit
    ("edit-layer-abc", [*EDIT, "--layer", "abc", *G], "--layer expects a layer index"),
    ("edit-layer-fraction", [*EDIT, "--layer", "1.5", *G], "fraction of depth must lie in [0, 1)"),
    ("edit-layer-too-deep", [*EDIT, "--layer", "99", *G], "out of range"),
    ("edit-layer-negative", [*EDIT, "--layer", "-1", *G], "out of range"),
    ("edit-memit-layer-too-deep", [*EDIT, "--editor", "memit", "--layer", "99", *G], "out of range"),
    ("edit-hparams-missing", [*EDIT, "--hparams", "{missing}.yaml", *G], "missing.yaml does not exist"),
    ("edit-hparams-malformed-yaml", [*EDIT, "--hparams", "{bad_yaml}", *G], "bad.yaml is not valid (safe) YAML"),
    ("edit-hparams-python-tag", [*EDIT, "--hparams", "{python_yaml}", *G], "python.yaml is not valid (safe) YAML"),
    ("edit-hparams-bad-json", [*EDIT, "--hparams", "{bad_json}", *G], "bad.json is not valid JSON"),
    ("edit-hparams-list", [*EDIT, "--hparams", "{list_yaml}", *G], "expected a mapping"),
    ("edit-hparams-folder", [*EDIT, "--hparams", "{empty_dir}", *G], "is not a file"),
    ("edit-hparams-unknown-field", [*EDIT, "--hparams", "{unknown_yaml}", *G], "no_such_field"),
    ("edit-unknown-editor", [*EDIT, "--editor", "nope", *G], "--editor: Unknown editor 'nope'; available: ft, kn, memit"),
    ("edit-set-no-equals", [*EDIT, "--set", "layer", *G], "--set expects key=value"),
    ("edit-set-unknown", [*EDIT, "--set", "bogus=1", *G], "bogus"),
    ("edit-set-names-valid-fields", [*EDIT, "--editor", "ft", "--set", "v_steps=3", *G], "Valid fields: early_stop_nll, ft_lr"),
    ("edit-set-bad-choice", [*EDIT, "--editor", "pmet", "--set", "spread=cube", *G], "spread must be one of even, sqrt"),
    ("edit-set-bad-bool", [*EDIT, "--editor", "rets", "--set", "no_subject_constraints=maybe", *G], "does not fit its type (bool)"),
    ("edit-set-conflict", [*EDIT, "--editor", "pmet", "--set", "update_attn=true", "--set", "no_attn_delta=true", *G], "update_attn needs"),
    ("edit-set-before-model-loads", [*EDIT, "--set", "bogus=1", "-m", "{missing}/model"], "Valid fields:"),
    ("evaluate-set-before-model-loads", [*EVAL, "--out", "{root}/e", "--set", "v_steps=many", "-m", "{missing}/model"], "v_steps='many'"),
    ("evaluate-set-old-docstring-key", ["evaluate", "--editor", "rets", "--out", "{root}/e", "--set", "subject_constraints=false", *G],
     "Unknown RETSHyperParams field(s): subject_constraints"),
    ("edit-corpus-missing", [*EDIT, "--corpus", "{missing}.jsonl", *G], "--corpus"),
    ("edit-corpus-not-json", [*EDIT, "--corpus", "{bad_corpus_jsonl}", *G], "bad_corpus.jsonl:1: Expecting value"),
    ("edit-save-is-folder", [*EDIT, "--save", "{empty_dir}", *G], "is a folder"),
    ("edit-save-under-file", [*EDIT, "--save", "{file}/d.safetensors", *G], "not a folder"),
    ("edit-save-unwritable", [*EDIT, "--save", "/proc/factscope-x/d.safetensors", *G], "cannot write"),
    ("edit-empty-subject", ["edit", "--prompt", "The capital of {{}} is", "--subject", " ", "--target", "Paris", *G], "--subject is empty"),
    ("edit-empty-target", ["edit", "--prompt", "The capital of {{}} is", "--subject", "France", "--target", "", *G], "--target is empty"),
    ("edit-no-placeholder", ["edit", "--prompt", "The capital of is", "--subject", "France", "--target", "Paris", *G], "'{{}}'"),
    ("edit-too-long", ["edit", "--prompt", LONG + "{{}} is", "--subject", "France", "--target", "Paris", *G], "tokens long"),
    ("edit-params-unknown", ["edit-params", "nope", *G], "Unknown editor"),
    # apply / revert / check-delta
    ("apply-delta-missing", ["apply", "--delta", "{missing}.safetensors", "--out", "{root}/o1", *G], "does not exist"),
    ("apply-delta-folder", ["apply", "--delta", "{empty_dir}", "--out", "{root}/o1", *G], "is not a file"),
    ("apply-delta-garbage", ["apply", "--delta", "{garbage_safetensors}", "--out", "{root}/o1", *G], "garbage.safetensors is damaged"),
    ("apply-delta-flipped", ["apply", "--delta", "{flipped}", "--out", "{root}/o1", *G], "flipped.safetensors is damaged"),
    ("apply-delta-too-deep", ["apply", "--delta", "{deep_delta}", "--out", "{root}/o1", "--no-strict", *G], "does not fit"),
    ("apply-delta-wrong-shape", ["apply", "--delta", "{wide_delta}", "--out", "{root}/o1", "--no-strict", *G], "made for another model"),
    ("apply-delta-other-model", ["apply", "--delta", "{other_delta}", "--out", "{root}/o1", *G], "fingerprint 0123456789abcdef"),
    ("apply-delta-is-model-weights", ["apply", "--delta", "{gpt2}/model.safetensors", "--out", "{root}/o1", *G], "not a factscope delta"),
    ("apply-out-is-file", ["apply", "--delta", "{delta}", "--out", "{file}", *G], "is a file"),
    ("apply-out-unwritable", ["apply", "--delta", "{delta}", "--out", "/proc/factscope-x/out", *G], "cannot write"),
    ("revert-no-originals", ["revert", "-m", "{plain_model}", "--out", "{root}/o2"], "factscope apply"),
    ("revert-damaged-originals", ["revert", "-m", "{damaged_originals}", "--out", "{root}/o2"], "factscope-originals.safetensors is damaged"),
    ("revert-out-is-file", ["revert", "-m", "{damaged_originals}", "--out", "{file}"], "is a file"),
    ("check-delta-missing", ["check-delta", "--delta", "{missing}.safetensors", *G], "does not exist"),
    ("check-delta-flipped", ["check-delta", "--delta", "{flipped}", *G], "flipped.safetensors is damaged"),
    ("check-delta-too-deep", ["check-delta", "--delta", "{deep_delta}", *G], "does not fit"),
    # trace / trace-dataset
    ("trace-bad-kind", [*TRACE, "--out", "{root}/t", "--kind", "bogus", *G], "--kind must be one of"),
    ("trace-bad-corrupt", [*TRACE, "--out", "{root}/t", "--corrupt", "bogus", *G], "--corrupt must be"),
    ("trace-samples-zero", [*TRACE, "--out", "{root}/t", "--samples", "0", *G], "--samples"),
    ("trace-window-zero", [*TRACE, "--out", "{root}/t", "--window", "0", *G], "--window"),
    ("trace-out-is-file", [*TRACE, "--out", "{file}", *G], "is a file"),
    ("trace-empty-prompt", ["trace", " ", "--subject", "France", "--out", "{root}/t", *G], "prompt is empty"),
    ("trace-subject-absent", ["trace", "The capital of France is", "--subject", "Spain", "--out", "{root}/t", *G], "does not occur"),
    ("trace-too-long", ["trace", LONG, "--subject", "France", "--out", "{root}/t", *G], "tokens long"),
    ("trace-dataset-missing", ["trace-dataset", "--data", "{missing}.json", "--out", "{root}/t", *G], "does not exist"),
    ("trace-dataset-bad-json", ["trace-dataset", "--data", "{bad_json}", "--out", "{root}/t", *G], "bad.json is not valid JSON"),
    ("trace-dataset-bad-corrupt", ["trace-dataset", "--data", "{bad_json}", "--out", "{root}/t", "--corrupt", "x", *G], "--corrupt"),
    ("trace-dataset-out-under-file", ["trace-dataset", "--data", "{list_json}", "--out", "{file}/sub", *G], "not a folder"),
    # lens / lens-dataset / dynamics
    ("lens-empty", ["lens", " ", *G], "prompt is empty"),
    ("lens-k-huge", ["lens", "The capital of France is", "--k", "100000", *G], "larger than the vocabulary"),
    ("lens-attributes-alone", ["lens", "x", "--attributes", "{attributes_json}", *G], "go together"),
    ("lens-attributes-missing", ["lens", "x", "--attributes", "{missing}.json", "--relation", "P103", *G], "missing.json does not exist"),
    ("lens-bad-position", ["lens", "The capital of France is", "--position", "bogus", *G], "Unknown position"),
    ("lens-position-out-of-range", ["lens", "The capital of France is", "--position", "999", *G], "out of range"),
    ("lens-too-long", ["lens", LONG, *G], "tokens long"),
    ("lens-dataset-bad-tokens", [*LENSDS, "--data", "{list_json}", "--out", "{root}/l", "--attribute-tokens", "x", *G], "--attribute-tokens"),
    ("lens-dataset-data-missing", [*LENSDS, "--data", "{missing}.json", "--out", "{root}/l", *G], "does not exist"),
    ("lens-dataset-attributes-bad", ["lens-dataset", "--attributes", "{bad_json}", "--data", "{knowns_json}", "--out", "{root}/l", *G], "bad.json"),
    ("lens-dataset-out-is-file", [*LENSDS, "--data", "{list_json}", "--out", "{file}", *G], "is a file"),
    ("dynamics-data-missing", ["dynamics", "--data", "{missing}.json", "--out", "{root}/d", *G], "does not exist"),
    ("dynamics-out-is-file", ["dynamics", "--data", "{list_json}", "--out", "{file}", *G], "is a file"),
    ("dynamics-k-zero", ["dynamics", "--data", "{list_json}", "--out", "{root}/d", "--k", "0", *G], "--k"),
    # evaluate / summarize
    ("evaluate-bad-mode", [*EVAL, "--out", "{root}/e", "--mode", "x", *G], "--mode must be one of"),
    ("evaluate-bad-perspective", [*EVAL, "--out", "{root}/e", "--perspective", "x", *G], "--perspective must be one of"),
    ("evaluate-bad-relation-requests", [*EVAL, "--out", "{root}/e", "--relation-requests", "remove", *G], "--relation-requests must be one of"),
    ("evaluate-rets-bad-constraint-source", ["evaluate", "--editor", "rets", "--out", "{root}/e", "--set", "constraint_source=x", *G], "constraint_source must be one of"),
    ("evaluate-threads-zero", [*EVAL, "--out", "{root}/e", "--threads", "0", *G], "--threads"),
    ("evaluate-threads-negative", [*EVAL, "--out", "{root}/e", "--threads", "-2", *G], "--threads"),
    ("evaluate-n-zero", [*EVAL, "--out", "{root}/e", "--n", "0", *G], "--n"),
    ("evaluate-data-missing", [*EVAL, "--out", "{root}/e", "--data", "{missing}.json", *G], "does not exist"),
    ("evaluate-data-bad-json", [*EVAL, "--out", "{root}/e", "--data", "{bad_json}", *G], "bad.json is not valid JSON"),
    ("evaluate-data-empty", [*EVAL, "--out", "{root}/e", "--data", "{empty_json}", *G], "empty"),
    ("evaluate-bad-format", [*EVAL, "--out", "{root}/e", "--format", "x", *G], "Unknown dataset format"),
    ("evaluate-hparams-python-tag", [*EVAL, "--out", "{root}/e", "--hparams", "{python_yaml}", *G], "python.yaml"),
    ("evaluate-hparams-unknown-field", [*EVAL, "--out", "{root}/e", "--hparams", "{unknown_yaml}", *G], "no_such_field"),
    ("evaluate-set-bad-value", [*EVAL, "--out", "{root}/e", "--set", "layer=abc", *G], "--set"),
    ("evaluate-set-layer-too-deep", [*EVAL, "--out", "{root}/e", "--set", "layer=99", *G], "out of range"),
    ("evaluate-group-zero", [*EVAL, "--out", "{root}/e", "--group", "0", *G], "--group"),
    ("evaluate-batch-size-zero", [*EVAL, "--out", "{root}/e", "--mode", "batch", "--batch-size", "0", *G], "--batch-size"),
    ("evaluate-none-with-hparams", ["evaluate", "--editor", "none", "--out", "{root}/e", "--set", "layer=1", *G], "takes no hyperparameters"),
    ("evaluate-unknown-editor", ["evaluate", "--editor", "nope", "--out", "{root}/e", *G], "Unknown editor"),
    ("evaluate-corpus-missing", ["evaluate", "--editor", "rome", "--out", "{root}/e", "--corpus", "{missing}.jsonl", *G], "--corpus"),
    ("evaluate-set-corpus-missing", [*EVAL, "--out", "{root}/e", "--set", "corpus={missing}.jsonl", *G],
     "error: --set corpus: "),
    ("evaluate-set-corpus-without-text-field", [*EVAL, "--out", "{root}/e", "--set", "corpus={no_text_corpus_jsonl}", *G],
     "no_text_corpus.jsonl:1: record has no string field 'text'"),
    ("evaluate-corpus-bad", ["evaluate", "--editor", "rome", "--out", "{root}/e2", "--corpus", "{bad_corpus_jsonl}", "--n", "1", *G], "bad_corpus.jsonl"),
    ("evaluate-out-is-file", [*EVAL, "--out", "{file}", *G], "is a file"),
    ("evaluate-out-unwritable", [*EVAL, "--out", "/proc/factscope-x/run", *G], "cannot write"),
    ("summarize-no-runs", ["summarize", "{empty_dir}"], "No run folders"),
    ("summarize-bad-r-spec-rule", ["summarize", "{run_bad_line}", "--r-spec-rule", "mine"], "--r-spec-rule must be one of"),
    ("summarize-damaged-line", ["summarize", "{run_bad_line}", "--out", "{root}/s"], "results.jsonl: line at byte"),
    ("summarize-damaged-manifest", ["summarize", "{run_bad_manifest}", "--out", "{root}/s"], "manifest.json is damaged"),
    ("summarize-out-is-file", ["summarize", "{run_bad_line}", "--out", "{file}"], "is a file"),
    # reproduce / demo
    ("reproduce-quick-and-full", ["reproduce", "--out", "{root}/r", "--quick", "--full"], "one of --quick and --full"),
    ("reproduce-threads-zero", ["reproduce", "--out", "{root}/r", "--threads", "0"], "--threads"),
    ("reproduce-out-is-file", ["reproduce", "--out", "{file}"], "is a file"),
    ("reproduce-bad-preset", ["reproduce", "--out", "{root}/r", "--preset", "bogus"], "Unknown size preset"),
    ("reproduce-data-dir-missing", ["reproduce", "--out", "{root}/r", "--data-dir", "{missing}"], "Data files not found"),
    ("demo-bad-case", ["demo", "--case", "99999", *G], "--case must be in"),
    ("demo-corpus-missing", ["demo", "--corpus", "{missing}.txt", *G], "--corpus"),
    # data-parallel runs: --shard, merge, covariance
    ("evaluate-shard-out-of-range", [*EVAL, "--out", "{root}/e", "--shard", "3/2", *G], "K must be 0..N-1"),
    ("evaluate-shard-not-k-of-n", [*EVAL, "--out", "{root}/e", "--shard", "half", *G], "--shard expects K/N"),
    ("evaluate-shard-sequential", [*EVAL, "--out", "{root}/e", "--shard", "0/2", "--mode", "sequential", *G], "cannot be split"),
    ("reproduce-shard-out-of-range", ["reproduce", "--out", "{root}/r", "--shard", "2/2"], "K must be 0..N-1"),
    ("trace-dataset-shard-out-of-range", ["trace-dataset", "--data", "{knowns_json}", "--out", "{root}/t", "--shard", "2/2", *G], "K must be 0..N-1"),
    ("merge-not-a-run", ["merge", "{missing}"], "not a run folder"),
    ("covariance-bad-site", ["covariance", "--layer", "1", "--site", "x", *G], "--site must be"),
    ("covariance-layer-out-of-range", ["covariance", "--layer", "99", *G], "out of range"),
    ("covariance-corpus-missing", ["covariance", "--layer", "1", "--corpus", "{missing}.jsonl", *G], "--corpus"),
    ("covariance-corpus-blank", ["covariance", "--layer", "1", "--corpus", "{blank_txt}", *G], "blank.txt contains no text"),
]


def test_a_refused_evaluate_leaves_no_run_folder(ws: dict[str, Path], isolated_cache: Path) -> None:
    out = ws["root"] / "never-created"
    result = CliRunner().invoke(app, [*EVAL, "--out", str(out), "--set", "layer=99", "-m", str(ws["gpt2"])])
    assert result.exit_code == 2 and not out.exists(), result.output


def test_there_are_at_least_60_cases() -> None:
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_a_clean_message(ws: dict[str, Path], argv: list[str], expected: str,
                                                  isolated_cache: Path) -> None:
    args = [a.format(**{k: str(v) for k, v in ws.items()}) for a in argv]
    result = CliRunner().invoke(app, args)
    output = result.output
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    assert result.exit_code == 2, output
    assert expected.replace("{{}}", "{}") in " ".join(output.split()), output


@pytest.mark.parametrize("args", [["predict", "x", "--k", "0"], ["predict", "x", "--k", "abc"], ["no-such-command"],
                                  ["evaluate", "--editor", "rome", "--out", "x", "--group", "0"]])
def test_usage_errors_of_the_console_script_are_one_line(args):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from factscope.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert done.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
