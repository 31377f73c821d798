"""Fluency (weighted n-gram entropy) and Consistency (TF-IDF cosine), ROME's definitions.

Usage::

    fluency = ngram_entropy(["some generated text ...", ...])          # mean over texts
    idf = load_idf()                                                   # from the enwiki sample, cached
    consistency = tfidf_cosine(" ".join(gen_texts), " ".join(refs), idf)

Fluency: for each text, the Shannon entropy (bits) of its bigram and trigram
frequency distributions, weighted 2/3 and 4/3 and averaged (ROME's
``compute_n_gram_entropy``); words and punctuation marks are separate tokens (regex
``\\w+|[^\\w\\s]``, a stand-in for NLTK's ``word_tokenize``). Tables report ×100.

Consistency: cosine similarity of TF-IDF vectors (raw term counts × idf; lowercase
words of two or more word characters, scikit-learn's default pattern). IDF is
``ln((1 + N) / (1 + df)) + 1`` over the N paragraphs (≥ 20 words) of
``corpus/enwiki_sample.jsonl``; words absent from the corpus get the idf of a word in
no paragraph (``ln(1 + N) + 1``) instead of being dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from factscope.io_utils import quarantine, read_json_cache, write_json_cache
from factscope.paths import default_corpus_path

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"(?u)\b\w\w+\b")


def ngram_entropy_one(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """Weighted mean of the n-gram entropies (bits) of one text; 0 for texts too short."""
    tokens = _TOKEN.findall(text)
    values = []
    for n, w in zip(ns, weights):
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        entropy = -sum((c / total) * math.log2(c / total) for c in grams.values()) if total else 0.0
        values.append(entropy * w)
    return sum(values) / len(values)


def ngram_entropy(texts: Iterable[str]) -> float:
    """Mean of :func:`ngram_entropy_one` over texts (ROME's ``n_gram_entropy``)."""
    values = [ngram_entropy_one(t) for t in texts]
    if not values:
        raise ValueError("ngram_entropy needs at least one text.")
    return sum(values) / len(values)


class Idf:
    """Inverse document frequencies with a default for unseen words."""

    def __init__(self, values: dict[str, float], n_documents: int, source: str = "") -> None:
        self.values = values
        self.n_documents = n_documents
        self.default = math.log(1 + n_documents) + 1.0
        self.source = source

    def __getitem__(self, word: str) -> float:
        return self.values.get(word, self.default)

    @classmethod
    def fit(cls, documents: Iterable[str], source: str = "") -> "Idf":
        df: Counter = Counter()
        n = 0
        for doc in documents:
            n += 1
            df.update(set(_WORD.findall(doc.lower())))
        return cls({w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}, n, source)


def tfidf_vector(text: str, idf: Idf) -> dict[str, float]:
    counts = Counter(_WORD.findall(text.lower()))
    return {w: c * idf[w] for w, c in counts.items()}


def tfidf_cosine(text_a: str, text_b: str, idf: Idf) -> float:
    """Cosine similarity of the TF-IDF vectors of two texts (0 when either is empty)."""
    a, b = tfidf_vector(text_a, idf), tfidf_vector(text_b, idf)
    dot = sum(v * b.get(w, 0.0) for w, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def corpus_paragraphs(path: str | Path, min_words: int = 20) -> list[str]:
    """Paragraphs (newline-separated, ≥ ``min_words`` words) of a ``{title, text}`` JSON-lines corpus."""
    paragraphs = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}: line {line_no} is not a {{title, text}} JSON object ({err}).") from None
            paragraphs.extend(p for p in text.split("\n") if len(p.split()) >= min_words)
    return paragraphs


def load_idf(corpus: str | Path | None = None) -> Idf:
    """IDF fitted on the corpus paragraphs, cached as JSON under ``cache_dir()/idf``."""
    from factscope.paths import cache_dir

    path = Path(corpus) if corpus else default_corpus_path()
    if not path.is_file():
        raise FileNotFoundError(f"IDF corpus {path} does not exist; pass --corpus or set FACTSCOPE_CORPUS.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / "idf" / f"enwiki-paragraphs-{digest}.json"
    data = read_json_cache(cached, "IDF cache")  # a damaged file is moved aside and refitted
    if data is not None:
        try:
            values, n_documents = data["idf"], int(data["n_documents"])
            if isinstance(values, dict) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values()):
                return Idf(values, n_documents, str(path))
        except (KeyError, TypeError, ValueError):
            pass
        quarantine(cached, "not an IDF table", "IDF cache")
    idf = Idf.fit(corpus_paragraphs(path), str(path))
    write_json_cache(cached, {"idf": idf.values, "n_documents": idf.n_documents, "corpus": str(path)})
    return idf


def corpus_passages_mentioning(word: str, paragraphs: Sequence[str], limit: int = 5) -> list[str]:
    """Up to ``limit`` corpus paragraphs that mention ``word`` as a whole word (case-sensitive)."""
    pattern = re.compile(rf"(?<!\w){re.escape(word.strip())}(?!\w)")
    return [p for p in paragraphs if pattern.search(p)][:limit]
