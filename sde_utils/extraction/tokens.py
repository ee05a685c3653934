"""Tokens: how text becomes the ids the LLM reads, and how ids become text again.

* A prompt is wrapped in the tokenizer's chat template as a single user turn with
  ``add_generation_prompt=True`` (:func:`encode_prompt`); a response is tokenised on its
  own, without special tokens (:func:`encode_response`).
* Token strings are raw byte-level BPE strings (``"Ġthe"``); :func:`display_token` turns
  them into text, :func:`nearest_tokens` decodes vectors of the input-embedding space into
  the vocabulary tokens nearest to them.
"""

from __future__ import annotations

import numpy as np
import torch

from sde_utils.checks import check_choice, check_int, check_str

__all__ = [
    "encode_prompt",
    "encode_response",
    "check_texts",
    "pad_id",
    "nearest_tokens",
    "similarity",
    "METRICS",
    "display_token",
]


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as one user turn in the chat template, with the generation
    prompt appended. Without a chat template: the plain prompt with the usual special tokens."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def encode_response(tokenizer, response: str) -> list[int]:
    """Token ids of ``response`` on its own, without special tokens (appended to a prompt)."""
    return list(tokenizer(response, add_special_tokens=False)["input_ids"])


def check_texts(name: str, texts) -> list[str]:
    """``texts`` as a list of strings; a single string or a non-string entry is a TypeError."""
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, got a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} must all be strings; entries {bad[:10]} are not")
    return texts


def pad_id(tokenizer) -> int:
    """The id used for padding: the pad token, else end-of-sequence, else unknown, else 0.

    Padded positions are never read (see the batching in :mod:`~sde_utils.extraction.states`
    and :mod:`~sde_utils.extraction.sampling`), so which id fills them changes no number.
    """
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


METRICS = ("cosine", "euclidean")


def similarity(weight, vectors, metric: str = "cosine") -> torch.Tensor:
    """``(n, V)`` scores of every vocabulary row of ``weight (V, D)`` against ``vectors
    (n, D)``, larger = nearer: cosine similarity, or minus the squared L2 distance up to a
    per-vector constant for ``"euclidean"`` (the ranking is that of the distance)."""
    check_choice("metric", metric, METRICS)
    w = torch.as_tensor(weight, dtype=torch.float64)
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float64))
    if x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"vectors must have shape (n, {w.shape[1]}), got {tuple(x.shape)}")
    if metric == "cosine":
        return torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(w, dim=-1).T
    # -||x - w||^2 = 2 x.w - ||w||^2 - ||x||^2; the last term is the same for every row
    return 2 * x @ w.T - (w**2).sum(1) - (x**2).sum(1, keepdim=True)


def nearest_tokens(
    model, tokenizer, vectors, *, k: int = 5, metric: str = "cosine"
) -> list[list[tuple[str, float]]]:
    """The ``k`` vocabulary tokens whose input embeddings are nearest to each vector.

    ``vectors``: (n, d) or (d,) array/tensor in input-embedding space. ``metric``:
    ``"cosine"`` (score = cosine similarity, descending) or ``"euclidean"`` (score =
    distance, ascending). Returns, per vector, ``[(raw BPE token, score), ...]``.
    """
    check_choice("metric", metric, METRICS)
    weight = model.get_input_embeddings().weight.detach().to(torch.float64).cpu()
    vocab, d = weight.shape
    k = check_int("k", k, minimum=1, maximum=vocab)  # at most the vocabulary size
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float64))
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"vectors must have shape (n, {d}) or ({d},), got {tuple(x.shape)}")
    values, index = similarity(weight, x, metric).topk(k, dim=-1)
    if metric == "euclidean":  # report the distances themselves, nearest first
        values = torch.linalg.vector_norm(x[:, None, :] - weight[index], dim=-1)
        values, order = values.sort(dim=-1)
        index = index.gather(-1, order)
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
    check_str("tok", tok, nonempty=False)
    data = bytearray()
    for ch in tok:
        byte = _BYTE_DECODER.get(ch)
        if byte is not None:
            data.append(byte)
        else:
            data.extend((" " if ch == "\u2581" else ch).encode("utf-8"))
    return data.decode("utf-8", errors="replace")
