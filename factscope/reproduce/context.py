"""What every reproduction step gets: the model, the data files, the sizes and its folder.

Usage::

    ctx = ReproContext(adapter, out="reports/quick", data=DataFiles.from_dir("../shared/data"), sizes=QUICK)
    ctx.editor_kwargs("rets", layer=22)   # overrides for factscope.edit.edit / named_editor
    ctx.data.sha256()                      # {file name: sha256} of the data files the steps read

A step is ``fn(ctx, folder) -> ArtefactResult``; ``folder`` is ``out/<artefact>/``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factscope.models.adapter import ModelAdapter
from factscope.reproduce.sizes import Sizes

DATA_FILES = {
    "knowns": "knowns/known_1000.json",
    "attributes": "knowns/relation_related_attributes.json",
    "counterfact": "counterfact/counterfact_500.json",
    "counterfact_flat": "counterfact/counterfact-edit.json",
    "counterfact_train": "counterfact/counterfact-train.json",
    "corpus": "corpus/enwiki_sample.jsonl",
}


@dataclass
class DataFiles:
    """Paths of the data files the recipes read (any may be overridden, e.g. by the test)."""

    knowns: Path
    attributes: Path
    counterfact: Path
    corpus: Path
    counterfact_flat: Path | None = None
    counterfact_train: Path | None = None  # MEND's training file; without it the MEND rows say so
    used: set[str] = field(default_factory=set)

    @classmethod
    def from_dir(cls, root: str | Path) -> "DataFiles":
        root = Path(root)
        paths = {key: root / rel for key, rel in DATA_FILES.items()}
        optional = ("counterfact_flat", "counterfact_train")
        missing = [str(p) for key, p in paths.items() if key not in optional and not p.is_file()]
        if missing:
            raise FileNotFoundError(f"Data files not found: {', '.join(missing)} (pass --data-dir pointing at shared/data).")
        found = {key: paths[key] if paths[key].is_file() else None for key in optional}
        return cls(paths["knowns"], paths["attributes"], paths["counterfact"], paths["corpus"], **found)

    def path(self, key: str) -> Path:
        """The path of ``key`` (and remember that it was used, for the report's hashes)."""
        value = getattr(self, key)
        if value is None:
            raise FileNotFoundError(f"No {key} data file available.")
        self.used.add(key)
        return Path(value)

    def sha256(self, keys: set[str] | None = None) -> dict[str, str]:
        """sha256 of each used (or given) data file, keyed by its path."""
        out = {}
        for key in sorted(keys if keys is not None else self.used):
            path = getattr(self, key)
            if path is not None:
                out[str(path)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return out


@dataclass
class ReproContext:
    """Shared state of one ``reproduce`` run."""

    adapter: ModelAdapter
    out: Path
    data: DataFiles
    sizes: Sizes
    progress: bool = True
    seed: int = 0

    def editor_kwargs(self, editor: str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``named_editor`` / ``edit``: corpus, size overrides, then ``extra``.

        The preset's ``editor_overrides`` go to every editor whose hyperparameters have the
        field (FT-L has no value search, so ``v_steps`` is not passed to it);
        ``editor_specific`` and ``extra`` go as given, so a mistyped key still fails.
        """
        from factscope.edit.registry import get_editor

        fields = set(get_editor(editor).hparams_class.field_names())
        kwargs: dict[str, Any] = {"corpus": str(self.data.path("corpus"))}
        kwargs.update({k: v for k, v in self.sizes.editor_overrides.items() if k in fields})
        kwargs.update(self.sizes.editor_specific.get(editor, {}))
        kwargs.update(extra)
        return kwargs

    def artefact_dir(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path
