"""Second moment ``C = E[k kᵀ]`` of editing keys over a corpus, cached and resumable.

Usage::

    C = key_second_moment(adapter, layer=7)                          # model-generated text
    C = key_second_moment(adapter, 7, corpus="enwiki_sample.jsonl", n_tokens=20000)
    Cs = key_second_moments(adapter, [7, 22], corpus=path)           # several layers, one pass

Forward passes stop right after the deepest layer needed. Sums accumulate in
float64. Results are cached as safetensors under ``cache_dir()/stats/<model>/``;
the file name names everything that produced it (site, layer, corpus fingerprint,
token count, dtype, sequence length). A cache file that is unreadable or does not
match its key is recomputed. Partial sums are checkpointed, so an interrupted
computation resumes where it stopped.

A generated corpus is sampled and measured in the same forward passes (the keys
of each sampled token are read while the next one is chosen), so it costs one
generation pass and nothing more.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from factscope.edit.cache_files import read_tagged, write_tagged
from factscope.edit.corpus import GeneratedCorpus, TextFileCorpus, corpus_from
from factscope.edit.generate import sample_token_ids
from factscope.hooks import Site, SiteTrace
from factscope.models.adapter import ModelAdapter
from factscope.models.batch import pad_batch, pad_id
from factscope.models.forward import forward_inputs
from factscope.models.loading import cache_dir

log = logging.getLogger(__name__)

DEFAULT_SEQ_LEN = 128


@dataclass(frozen=True)
class StatKey:
    """Everything that determines one covariance estimate."""

    model: str
    site_kind: str
    layer: int
    corpus: str
    n_tokens: int
    dtype: str
    seq_len: int

    def filename(self) -> str:
        return f"{self.site_kind}.{self.layer}-{self.corpus}-n{self.n_tokens}-{self.dtype}-ctx{self.seq_len}.safetensors"

    def path(self, root: Path | None = None) -> Path:
        return (root or cache_dir() / "stats") / self.model / self.filename()


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"Unknown accumulation dtype {name!r}; use float64 or float32.")
    return value


# ----------------------------------------------------------------- cache files
def load_cached(key: StatKey, d: int, root: Path | None = None) -> torch.Tensor | None:
    """The cached ``E[k kᵀ]`` for ``key`` if a valid file exists, else ``None``."""
    found = read_tagged(key.path(root), "statistics file")
    if found is None:
        return None
    tensors, meta = found
    mom2 = tensors.get("mom2")
    ok = (
        meta.get("key") == asdict(key)
        and mom2 is not None
        and tuple(mom2.shape) == (d, d)
        and int(meta.get("count", -1)) == key.n_tokens
        and bool(torch.isfinite(mom2).all())
    )
    if not ok:
        warnings.warn(f"Statistics file {key.path(root)} does not match its key; recomputing.", stacklevel=2)
        return None
    return mom2


# -------------------------------------------------------------------- batches
def _file_batches(corpus: TextFileCorpus, tokenizer: Any, seq_len: int, batch_size: int) -> Iterator[list[list[int]]]:
    batch: list[list[int]] = []
    for ids in corpus.documents(tokenizer):
        for start in range(0, len(ids), seq_len):
            chunk = ids[start : start + seq_len]
            if len(chunk) >= 2:
                batch.append(chunk)
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


class _Accumulator:
    """Running sums of k kᵀ per layer, capped at ``n_tokens`` tokens."""

    def __init__(self, layers: Sequence[int], d: int, n_tokens: int, dtype: torch.dtype, device: torch.device) -> None:
        self.layers = list(layers)
        self.sums = {l: torch.zeros(d, d, dtype=dtype, device=device) for l in self.layers}
        self.count = 0
        self.n_tokens = n_tokens
        self.dtype = dtype

    @property
    def full(self) -> bool:
        return self.count >= self.n_tokens

    def add(self, keys: dict[int, torch.Tensor]) -> int:
        """Add ``[tokens, d]`` keys per layer (same token order for every layer); return tokens taken."""
        take = min(self.n_tokens - self.count, next(iter(keys.values())).shape[0])
        if take <= 0:
            return 0
        for layer in self.layers:
            k = keys[layer][:take].to(self.dtype)
            self.sums[layer].addmm_(k.T, k)
        self.count += take
        return take


def key_second_moments(
    adapter: ModelAdapter,
    layers: Sequence[int],
    *,
    site_kind: str = "mlp_key",
    corpus: "str | Path | TextFileCorpus | GeneratedCorpus | None" = None,
    n_tokens: int = 4096,
    dtype: str = "float64",
    seq_len: int = DEFAULT_SEQ_LEN,
    batch_size: int = 16,
    checkpoint_every: int = 4,
    cache: bool = True,
    root: Path | None = None,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """``E[k kᵀ]`` (float64 unless ``dtype`` says otherwise) for each layer in ``layers``.

    Layers whose statistics are cached are loaded; the others are computed together in
    one pass that stops after the deepest of them.
    """
    layers = sorted({adapter.check_layer(int(l)) for l in layers})
    if site_kind not in ("mlp_key", "attn_key"):
        raise ValueError(f"Covariance is defined for key sites mlp_key/attn_key, not {site_kind!r}.")
    if n_tokens <= 0 or seq_len < 2 or batch_size <= 0:
        raise ValueError("n_tokens must be > 0, seq_len >= 2 and batch_size > 0.")
    acc_dtype = _dtype(dtype)
    corpus_obj = corpus_from(corpus)
    if adapter.max_positions is not None:  # sampled texts take seq_len + 1 positions (start token)
        seq_len = max(2, min(seq_len, adapter.max_positions - 1))
    d = adapter.weight(site_kind, layers[0]).matrix.shape[1]
    if n_tokens < d:
        warnings.warn(
            f"n_tokens={n_tokens} is below the key dimension {d}: E[k kᵀ] is singular and the edit's "
            f"closed-form update ill-determined. Use several times {d} tokens (mom2_n_tokens).",
            stacklevel=2,
        )
    keys = {l: StatKey(adapter.fingerprint, site_kind, l, corpus_obj.fingerprint, int(n_tokens), dtype, int(seq_len)) for l in layers}
    result: dict[int, torch.Tensor] = {}
    if cache:
        for layer, key in keys.items():
            found = load_cached(key, d, root)
            if found is not None:
                result[layer] = found
    missing = [l for l in layers if l not in result]
    if not missing:
        return result
    computed = _compute(
        adapter, missing, site_kind, corpus_obj, int(n_tokens), acc_dtype, int(seq_len), batch_size,
        checkpoint_every, {l: keys[l] for l in missing} if cache else None, root, progress,
    )
    result.update(computed)
    return result


def key_second_moment(adapter: ModelAdapter, layer: int, **kwargs: Any) -> torch.Tensor:
    """``E[k kᵀ]`` of one layer; see :func:`key_second_moments`."""
    return key_second_moments(adapter, [layer], **kwargs)[adapter.check_layer(layer)]


def _partial_path(keys: dict[int, StatKey], root: Path | None) -> Path:
    first = keys[min(keys)]
    tag = "+".join(str(l) for l in sorted(keys))
    return first.path(root).with_name(
        f"{first.site_kind}.{tag}-{first.corpus}-n{first.n_tokens}-{first.dtype}-ctx{first.seq_len}.partial.safetensors"
    )


@torch.no_grad()
def _compute(
    adapter: ModelAdapter,
    layers: list[int],
    site_kind: str,
    corpus: "TextFileCorpus | GeneratedCorpus",
    n_tokens: int,
    acc_dtype: torch.dtype,
    seq_len: int,
    batch_size: int,
    checkpoint_every: int,
    keys: dict[int, StatKey] | None,
    root: Path | None,
    progress: bool,
) -> dict[int, torch.Tensor]:
    d = adapter.weight(site_kind, layers[0]).matrix.shape[1]
    acc = _Accumulator(layers, d, n_tokens, acc_dtype, torch.device("cpu"))
    sites = [Site(site_kind, l) for l in layers]
    partial = _partial_path(keys, root) if keys else None
    batches_done = 0
    if partial is not None:
        found = read_tagged(partial, "statistics file")
        if found is not None:
            tensors, meta = found
            if meta.get("keys") == {str(l): asdict(k) for l, k in keys.items()}:
                for layer in layers:
                    acc.sums[layer] = tensors[f"sum.{layer}"].to(acc_dtype)
                acc.count = int(meta["count"])
                batches_done = int(meta["batches_done"])
                log.info("Resuming covariance from %s (%d tokens done)", partial, acc.count)

    def checkpoint() -> None:
        if partial is not None and acc.count > 0 and not acc.full:
            meta = {"keys": {str(l): asdict(k) for l, k in keys.items()}, "count": acc.count, "batches_done": batches_done}
            write_tagged(partial, {f"sum.{l}": s for l, s in acc.sums.items()}, meta)

    bar = tqdm(total=n_tokens, initial=acc.count, desc=f"key covariance {site_kind} layers {layers}", unit="tok",
               disable=not progress, leave=False)
    was_training = adapter.model.training
    adapter.model.eval()
    try:
        if isinstance(corpus, GeneratedCorpus):
            batch_index = 0
            while not acc.full:
                if batch_index >= batches_done:
                    _generated_batch(adapter, sites, layers, acc, corpus, seq_len, corpus.batch_size, batch_index, bar)
                    batches_done = batch_index + 1
                    if batches_done % checkpoint_every == 0:
                        checkpoint()
                batch_index += 1
        else:
            for batch_index, batch in enumerate(_file_batches(corpus, adapter.tokenizer, seq_len, batch_size)):
                if acc.full:
                    break
                if batch_index < batches_done:
                    continue
                _file_batch(adapter, sites, layers, acc, batch, bar)
                batches_done = batch_index + 1
                if batches_done % checkpoint_every == 0:
                    checkpoint()
            if not acc.full:
                raise ValueError(
                    f"Corpus {corpus.describe()} has only {acc.count} tokens; {n_tokens} were asked for. "
                    "Lower n_tokens (mom2_n_tokens) or give a larger corpus."
                )
    except BaseException:
        checkpoint()  # keep what was done so that the next call resumes
        raise
    finally:
        bar.close()
        adapter.model.train(was_training)
    result = {l: acc.sums[l] / acc.count for l in layers}
    if keys:
        for layer in layers:
            write_tagged(keys[layer].path(root), {"mom2": result[layer]}, {"key": asdict(keys[layer]), "count": acc.count})
        if partial is not None and partial.exists():
            partial.unlink()
    return result


def _file_batch(adapter: ModelAdapter, sites: list[Site], layers: list[int], acc: _Accumulator,
                batch: list[list[int]], bar: Any) -> None:
    padded = pad_batch(batch, pad_id(adapter.tokenizer))
    with SiteTrace(adapter, read=sites, stop=True) as trace:
        adapter.model(**forward_inputs(adapter.model, padded, device=adapter.device))
    valid = padded.attention_mask.bool().reshape(-1)
    keys = {l: trace[s].reshape(-1, trace[s].shape[-1])[valid.to(trace[s].device)].cpu() for l, s in zip(layers, sites)}
    bar.update(acc.add(keys))


def _generated_batch(adapter: ModelAdapter, sites: list[Site], layers: list[int], acc: _Accumulator,
                     corpus: GeneratedCorpus, seq_len: int, batch_size: int, batch_index: int, bar: Any) -> None:
    """Sample one batch of texts and accumulate the keys of every sampled token as it is read."""
    with SiteTrace(adapter, read=sites) as trace:

        def on_step(step: int) -> bool:
            if step > 0:  # step 0 reads the start token, identical in every row
                keys = {l: trace[s][:, -1].cpu() for l, s in zip(layers, sites)}
                bar.update(acc.add(keys))
            return acc.full

        # Independent seed per batch so that a resumed run continues the same sample.
        sample_token_ids(adapter, batch_size, seq_len + 1, seed=corpus.seed * 1_000_003 + batch_index,
                         top_k=corpus.top_k, batch_size=batch_size, on_step=on_step)
