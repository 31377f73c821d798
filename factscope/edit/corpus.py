"""Text sources for key statistics: a file the user gives, or text the model generates.

Usage::

    corpus = TextFileCorpus("enwiki_sample.jsonl")     # JSON lines {"text": ...}, .json list, or .txt
    corpus.fingerprint                                  # content hash, part of every cache key
    for ids in corpus.documents(tokenizer): ...         # token-id lists, in file order

    corpus = GeneratedCorpus(seed=0)                    # default for the bundled model
    corpus.fingerprint                                  # "generated-s0-k50-b32"

A generated corpus has no fixed text: the model samples it (seeded, top-k) while its
keys are collected, so statistics need a single pass (see ``covariance.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CorpusError(ValueError):
    """A corpus file that is missing or has no usable text."""


@dataclass
class TextFileCorpus:
    """Documents from a ``.jsonl`` (field ``text``), ``.json`` (list of strings/records) or text file.

    Plain text files are split into documents at blank lines.
    """

    path: Path
    text_field: str = "text"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise CorpusError(f"Corpus file {self.path} does not exist.")
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.fingerprint = f"file-{digest.hexdigest()[:16]}"

    def texts(self) -> Iterator[str]:
        suffix = self.path.suffix.lower()
        if suffix == ".jsonl":
            with self.path.open(encoding="utf-8") as handle:
                for n, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            yield _text_of(json.loads(line), self.text_field)
                        except (json.JSONDecodeError, CorpusError) as err:
                            raise CorpusError(f"{self.path}:{n}: {err}") from err
        elif suffix == ".json":
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise CorpusError(f"{self.path}: expected a JSON list of texts or records.")
            for item in data:
                yield _text_of(item, self.text_field)
        else:
            for block in self.path.read_text(encoding="utf-8").split("\n\n"):
                if block.strip():
                    yield block.strip()

    def documents(self, tokenizer: Any) -> Iterator[list[int]]:
        """Token ids of each non-empty document (no special tokens added)."""
        any_text = False
        for text in self.texts():
            if text.strip():
                any_text = True
                yield tokenizer(text, add_special_tokens=False)["input_ids"]
        if not any_text:
            raise CorpusError(f"Corpus {self.path} contains no text.")

    def describe(self) -> str:
        return f"text file {self.path}"


def _text_of(item: Any, field: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get(field), str):
        return item[field]
    raise CorpusError(f"record has no string field {field!r}")


@dataclass(frozen=True)
class GeneratedCorpus:
    """Text the model samples itself (top-k, seeded) from a document-boundary token."""

    seed: int = 0
    top_k: int = 50
    # Texts sampled side by side. Part of the fingerprint: each batch has its own seed, so
    # another batch size is another sample. 32 rows of 128 tokens fill the default 4,096
    # tokens in one batch, i.e. half the sequential steps of 16 rows at the same positions.
    batch_size: int = 32

    @property
    def fingerprint(self) -> str:
        return f"generated-s{self.seed}-k{self.top_k}-b{self.batch_size}"

    def describe(self) -> str:
        return f"text sampled from the model (seed {self.seed}, top-{self.top_k})"


def corpus_from(spec: "str | Path | TextFileCorpus | GeneratedCorpus | None") -> "TextFileCorpus | GeneratedCorpus":
    """A corpus from a path, an existing corpus object, or ``None`` (model-generated)."""
    if spec is None or spec == "generated":
        return GeneratedCorpus()
    if isinstance(spec, (TextFileCorpus, GeneratedCorpus)):
        return spec
    return TextFileCorpus(Path(spec))
