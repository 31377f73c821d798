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

Across ranks (``ranks=Ranks.start()`` under torchrun, every rank calling): batch b of
the corpus goes to rank b mod N, each rank sums its batches in float64, an
``all_reduce`` adds the sums and counts, rank 0 writes the cache file while the others
wait. Each batch takes the tokens a one-process pass would take from it, so the result
equals the one-process statistics up to float64 rounding; each rank checkpoints its
own partial sums, so a killed distributed run resumes. Without ``ranks``, processes that
need the same statistics at once (ranks of a data-parallel evaluation) compute them
once: one holds a lock while the others wait and then read its cache file.

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
from factscope.paths import cache_dir
from factscope.parallel.filelock import waiting_lock
from factscope.parallel.ranks import Ranks

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
    """Running sums of k kᵀ per layer; each batch adds at most the tokens of its ``budget``."""

    def __init__(self, layers: Sequence[int], d: int, n_tokens: int, dtype: torch.dtype, device: torch.device) -> None:
        self.layers = list(layers)
        self.sums = {l: torch.zeros(d, d, dtype=dtype, device=device) for l in self.layers}
        self.count = 0  # tokens summed here (one rank's share when the pass is split)
        self.n_tokens = n_tokens
        self.dtype = dtype
        self.left = n_tokens  # of the current batch's budget

    def begin(self, budget: int) -> None:
        """The next batch adds at most ``budget`` tokens (the ones a one-process pass takes from it)."""
        self.left = budget

    @property
    def full(self) -> bool:
        return self.left <= 0

    def add(self, keys: dict[int, torch.Tensor]) -> int:
        """Add ``[tokens, d]`` keys per layer (same token order for every layer); return tokens taken."""
        take = min(self.left, next(iter(keys.values())).shape[0])
        if take <= 0:
            return 0
        for layer in self.layers:
            k = keys[layer][:take].to(self.dtype)
            self.sums[layer].addmm_(k.T, k)
        self.count += take
        self.left -= take
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
    ranks: Ranks | None = None,
) -> dict[int, torch.Tensor]:
    """``E[k kᵀ]`` (float64 unless ``dtype`` says otherwise) for each layer in ``layers``.

    Layers whose statistics are cached are loaded; the others are computed together in
    one pass that stops after the deepest of them. ``ranks`` (a process group that
    every rank calls this with): the pass is split across the ranks (module docstring).
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
    split = ranks is not None and ranks.distributed

    def cached() -> dict[int, torch.Tensor]:
        found = {l: load_cached(key, d, root) for l, key in keys.items()} if cache else {}
        return {l: c for l, c in found.items() if c is not None}

    def compute(missing: list[int]) -> dict[int, torch.Tensor]:
        return _compute(
            adapter, missing, site_kind, corpus_obj, int(n_tokens), acc_dtype, int(seq_len), batch_size,
            checkpoint_every, {l: keys[l] for l in missing} if cache else None, root, progress, ranks if split else None,
        )

    result = cached()
    missing = [l for l in layers if l not in result]
    if split:  # rank 0's view decides, so that every rank joins the same collective pass
        missing = ranks.broadcast(missing)
        result = {l: c for l, c in result.items() if l not in missing}
    if not missing:
        return result
    if split or not cache:
        result.update(compute(missing))
        return result
    # Another process may be computing the same statistics: wait for it, then read what it wrote.
    with waiting_lock(_partial_path({l: keys[l] for l in missing}, root).with_suffix(".lock")):
        result.update({l: c for l, c in cached().items() if l in missing})
        still = [l for l in missing if l not in result]
        if still:
            result.update(compute(still))
    return result


def key_second_moment(adapter: ModelAdapter, layer: int, **kwargs: Any) -> torch.Tensor:
    """``E[k kᵀ]`` of one layer; see :func:`key_second_moments`."""
    return key_second_moments(adapter, [layer], **kwargs)[adapter.check_layer(layer)]


def _partial_path(keys: dict[int, StatKey], root: Path | None, ranks: Ranks | None = None) -> Path:
    first = keys[min(keys)]
    tag = "+".join(str(l) for l in sorted(keys))
    share = f".rank{ranks.shard.name}" if ranks is not None and not ranks.shard.whole else ""
    return first.path(root).with_name(
        f"{first.site_kind}.{tag}-{first.corpus}-n{first.n_tokens}-{first.dtype}-ctx{first.seq_len}{share}.partial.safetensors"
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
    ranks: Ranks | None = None,
) -> dict[int, torch.Tensor]:
    d = adapter.weight(site_kind, layers[0]).matrix.shape[1]
    acc = _Accumulator(layers, d, n_tokens, acc_dtype, torch.device("cpu"))
    sites = [Site(site_kind, l) for l in layers]
    rank, world = (ranks.shard.index, ranks.shard.count) if ranks is not None else (0, 1)
    partial = _partial_path(keys, root, ranks) if keys else None
    batches_done = 0  # global index of the batch after the last one this rank summed
    if partial is not None:
        found = read_tagged(partial, "statistics file")
        if found is not None:
            tensors, meta = found
            if meta.get("keys") == {str(l): asdict(k) for l, k in keys.items()} and int(meta.get("world", 1)) == world:
                for layer in layers:
                    acc.sums[layer] = tensors[f"sum.{layer}"].to(acc_dtype)
                acc.count = int(meta["count"])
                batches_done = int(meta["batches_done"])
                log.info("Resuming covariance from %s (%d tokens done)", partial, acc.count)
    since_checkpoint = 0

    def checkpoint() -> None:
        if partial is not None and acc.count > 0:
            meta = {"keys": {str(l): asdict(k) for l, k in keys.items()}, "count": acc.count,
                    "batches_done": batches_done, "world": world}
            write_tagged(partial, {f"sum.{l}": s for l, s in acc.sums.items()}, meta)

    def owned(batch_index: int, budget: int, run: Any) -> None:
        """Sum batch ``batch_index`` here if it is this rank's and not summed before a restart."""
        nonlocal batches_done, since_checkpoint
        if batch_index % world != rank or batch_index < batches_done:
            return
        acc.begin(budget)
        run()
        batches_done = batch_index + 1
        since_checkpoint += 1
        if since_checkpoint % checkpoint_every == 0:
            checkpoint()

    bar = tqdm(total=n_tokens, initial=acc.count * world, desc=f"key covariance {site_kind} layers {layers}", unit="tok",
               disable=not progress, leave=False)
    was_training = adapter.model.training
    adapter.model.eval()
    offset = 0  # tokens a one-process pass has taken before the current batch
    try:
        if isinstance(corpus, GeneratedCorpus):
            per_batch = corpus.batch_size * seq_len  # every sampled token after the start token
            for batch_index in range(-(-n_tokens // per_batch)):
                budget = min(per_batch, n_tokens - offset)
                owned(batch_index, budget, lambda: _generated_batch(
                    adapter, sites, layers, acc, corpus, seq_len, corpus.batch_size, batch_index, bar))
                offset += budget
        else:
            for batch_index, batch in enumerate(_file_batches(corpus, adapter.tokenizer, seq_len, batch_size)):
                if offset >= n_tokens:
                    break
                budget = min(sum(len(chunk) for chunk in batch), n_tokens - offset)
                owned(batch_index, budget, lambda: _file_batch(adapter, sites, layers, acc, batch, bar))
                offset += budget
            if offset < n_tokens:
                raise ValueError(
                    f"Corpus {corpus.describe()} has only {offset} tokens; {n_tokens} were asked for. "
                    "Lower n_tokens (mom2_n_tokens) or give a larger corpus."
                )
    except BaseException:
        checkpoint()  # keep what was done so that the next call resumes
        raise
    finally:
        bar.close()
        adapter.model.train(was_training)
    count = acc.count
    if ranks is not None:  # float64 sums and counts of every rank's share
        acc.sums = {l: ranks.all_reduce_sum(acc.sums[l]) for l in layers}
        count = int(ranks.all_reduce_sum(torch.tensor([acc.count], dtype=torch.int64)).item())
    if count != n_tokens:
        raise RuntimeError(f"Covariance pass summed {count} tokens instead of {n_tokens} (a partial file of another run?).")
    result = {l: acc.sums[l] / count for l in layers}
    if keys:
        if ranks is None or ranks.main:
            for layer in layers:
                write_tagged(keys[layer].path(root), {"mom2": result[layer]}, {"key": asdict(keys[layer]), "count": count})
        if partial is not None and partial.exists():
            partial.unlink()
    if ranks is not None:
        ranks.barrier()  # the others return once rank 0's cache files are written
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
