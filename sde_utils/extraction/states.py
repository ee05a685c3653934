"""LLM states of given text: teacher forcing, embedding kinds, attention maps.

Conventions (``d`` = hidden size, ``L`` = number of response tokens):

* A prompt is wrapped in the tokenizer's chat template as a single user turn with
  ``add_generation_prompt=True``; the response's tokens (tokenised on their own, no special
  tokens) are appended (:func:`encode_pair`). States are returned for the response tokens
  only.
* Embedding kinds (:data:`EMBEDDING_KINDS`): ``"input"`` is the row of the token-embedding
  matrix of each token (the paper's "word embedding of the token generated at time t");
  ``"layer:N"`` is Hugging Face's ``hidden_states[N]`` (``N = 0`` the embedding output, ``N``
  in ``1..num_layers-1`` the residual stream after block ``N``, before any norm);
  ``"hidden"`` is ``hidden_states[-1]``, the last block's output after the final norm, which
  is also what ``"layer:<num_layers>"`` gives.
* The state of token ``y_t`` (teacher-forced or sampled) is the model's state at the
  position of ``y_t`` in ``chat(prompt) + y_1 .. y_t``, i.e. computed when ``y_t`` is fed
  in. It is therefore the same number for a sampled token
  (:func:`~sde_utils.extraction.sampling.sample_trajectories`) and for the same tokens fed
  by teacher forcing (:func:`teacher_forced_states`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sde_utils.checks import check_int
from sde_utils.extraction.tokens import check_texts, encode_prompt, encode_response, pad_id

__all__ = [
    "EMBEDDING_KINDS",
    "num_layers",
    "check_kind",
    "decoder_layers",
    "index_chunks",
    "encode_pair",
    "encode_pairs_checked",
    "padded_batches",
    "teacher_forced_states",
    "attention_maps",
]

EMBEDDING_KINDS = ("input", "hidden", "layer:N")
"""Valid ``kind`` values; ``N`` is an integer in ``0..num_layers``."""


class _EarlyExit(Exception):
    """Raised by a forward hook once the requested state has been captured."""


# ----------------------------------------------------------------------------- kinds


def num_layers(model) -> int:
    """Number of decoder blocks of ``model`` (of its text part for multimodal configs)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    return int((config or model.config).num_hidden_layers)


def check_kind(model, kind: str) -> int | None:
    """Validate an embedding kind for ``model``; return its ``hidden_states`` index.

    Returns ``None`` for ``"input"`` (embedding rows, no forward pass), ``num_layers`` for
    ``"hidden"``, ``N`` for ``"layer:N"`` (``0 <= N <= num_layers``; negative N not allowed).
    Raises ValueError naming the valid kinds and the layer range (TypeError, with the same
    list, for a ``kind`` that is not a string).
    """
    n = num_layers(model)
    label = getattr(model.config, "model_type", None) or type(model).__name__
    valid = (
        f"valid kinds: 'input', 'hidden', 'layer:N' with N in 0..{n} (this model, "
        f"{label}, has {n} layers)"
    )
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, got {kind!r} ({type(kind).__name__}); {valid}")
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


def decoder_layers(model):
    """The list of decoder blocks, or None where the architecture keeps them elsewhere."""
    base = model.base_model
    for attr in ("layers", "h", "blocks"):
        layers = getattr(base, attr, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == num_layers(model):
            return layers
    return None


def _forward_states(model, input_ids, attention_mask, layer: int, **kwargs) -> torch.Tensor:
    """``hidden_states[layer]`` of a forward pass, shape ``(B, T, d)``.

    ``layer == num_layers`` runs the base model only (no LM head); a lower layer stops the
    forward pass at the input of block ``layer`` through a pre-hook (the blocks above are
    never run).
    """
    base = model.base_model
    if layer == num_layers(model):
        out = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        return out.last_hidden_state
    layers = decoder_layers(model)
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


def encode_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, response_ids)`` exactly as :func:`teacher_forced_states` feeds them."""
    return encode_prompt(tokenizer, prompt), encode_response(tokenizer, response)


def index_chunks(seq: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive pieces of ``seq`` of ``size`` elements (the last one may be shorter)."""
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def encode_pairs_checked(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str]
) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_pair` of every pair after checking the texts (strings, as many prompts as
    responses) and that each fits the model's positions (ValueError naming the pairs)."""
    prompts = check_texts("prompts", prompts)
    responses = check_texts("responses", responses)
    if len(prompts) != len(responses):
        raise ValueError(
            f"prompts and responses must have the same length, got {len(prompts)} prompts "
            f"and {len(responses)} responses"
        )
    encoded = [encode_pair(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None:
        too_long = [i for i, (p, r) in enumerate(encoded) if len(p) + len(r) > limit]
        if too_long:
            raise ValueError(
                f"pairs {too_long[:10]} are longer than the model's {limit} positions; "
                "filter long responses first"
            )
    return encoded


def padded_batches(
    model, tokenizer, encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, progress
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Right-padded batches of ``prompt + response`` ids, sorted by total length:
    ``(indices into encoded, ids (B, T) long on model.device)`` (see
    :func:`teacher_forced_states` for why no attention mask is needed)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    pad = pad_id(tokenizer)
    n_batches = math.ceil(len(order) / batch_size)
    for chunk in tqdm(index_chunks(order, batch_size), total=n_batches, disable=not progress):
        seqs = [encoded[i][0] + encoded[i][1] for i in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        yield chunk, ids.to(model.device)


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
    batch_size = check_int("batch_size", batch_size, minimum=1)
    layer = check_kind(model, kind)
    encoded = encode_pairs_checked(model, tokenizer, prompts, responses)
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

        for chunk, ids in padded_batches(model, tokenizer, encoded, batch_size, progress):
            hidden = _forward_states(model, ids, None, layer)
            for row, i in enumerate(chunk):
                start = len(encoded[i][0])
                record(i, hidden[row, start : start + len(encoded[i][1])])
    return out  # type: ignore[return-value]


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
    n_layers = num_layers(model)
    layer = check_int("layer", layer, minimum=-n_layers, maximum=n_layers - 1) % n_layers
    n_heads = int(model.config.num_attention_heads)
    if head is not None:
        head = check_int("head", head, minimum=0, maximum=n_heads - 1)
    prompt_ids, response_ids = encode_pair(tokenizer, prompt, response)
    ids = torch.tensor([prompt_ids + response_ids], dtype=torch.long, device=model.device)
    start = len(prompt_ids)

    previous = model.config._attn_implementation
    layers = decoder_layers(model)
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
    weights = weights.mean(0) if head is None else weights[head]
    return tokenizer.convert_ids_to_tokens(response_ids), weights.cpu().numpy().copy()
