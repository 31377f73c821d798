"""The Usage blocks of the editing modules' docstrings run as written, on tiny models.

Each block is executed in a temporary folder (files it writes land there) with a
fresh cache; a block that stops matching the code fails here.
"""

from __future__ import annotations

import importlib
import textwrap

import pytest

MODULES = [
    "factscope.edit", "factscope.edit.api", "factscope.edit.contract", "factscope.edit.registry", "factscope.edit.hparams",
    "factscope.edit.rome", "factscope.edit.rets", "factscope.edit.memit", "factscope.edit.pmet", "factscope.edit.ft", "factscope.edit.kn",
    "factscope.edit.delta", "factscope.edit.originals", "factscope.edit.generate", "factscope.localize.tracing_runs",
    "factscope.evaluate.editors", "factscope.cli.editor_args", "factscope.cli.probes", "factscope.testing",
]


def usage_block(module_name: str) -> str:
    """The indented block after ``Usage::`` in the module's docstring."""
    doc = importlib.import_module(module_name).__doc__ or ""
    _, found, rest = doc.partition("Usage::\n")
    assert found, f"{module_name} has no Usage block"
    lines = []
    for line in rest.splitlines()[1:] if rest.startswith("\n") else rest.splitlines():
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.filterwarnings("ignore::UserWarning")  # tiny models: small covariances, destructive-looking edits
@pytest.mark.parametrize("module_name", MODULES)
def test_usage_block_runs(module_name: str, tmp_path, monkeypatch, isolated_cache) -> None:
    monkeypatch.chdir(tmp_path)
    code = usage_block(module_name)
    namespace = {k: v for k, v in vars(importlib.import_module(module_name)).items() if not k.startswith("__")}
    exec(compile(code, f"<{module_name} Usage>", "exec"), namespace)  # noqa: S102
