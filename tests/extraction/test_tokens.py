"""Tests for sde_utils.extraction.tokens: encoding, token display and nearest-token decoding
on the real default model's tokenizer and embedding matrix (float64 scores)."""

from __future__ import annotations

import numpy as np
import pytest

from sde_utils.extraction.tokens import (
    check_texts,
    display_token,
    encode_prompt,
    encode_response,
    nearest_tokens,
    pad_id,
)

# ----------------------------------------------------------------------------- decoding


def test_nearest_tokens_recovers_embedding_rows(lm):
    model, tokenizer = lm
    ids = tokenizer(" Paris is beautiful", add_special_tokens=False)["input_ids"]
    weight = model.get_input_embeddings().weight.detach().double().numpy()
    for metric in ("cosine", "euclidean"):
        result = nearest_tokens(model, tokenizer, weight[ids], k=4, metric=metric)
        assert len(result) == len(ids)
        for tid, hits in zip(ids, result, strict=True):
            assert hits[0][0] == tokenizer.convert_ids_to_tokens(tid)
            scores = [s for _, s in hits]
            if metric == "cosine":
                assert scores == sorted(scores, reverse=True)
                assert abs(scores[0] - 1) <= 1e-12  # float64 cosine of a vector with itself
            else:
                assert scores == sorted(scores)
                assert scores[0] <= 1e-12  # float64 distance of a vector to itself
    single = nearest_tokens(model, tokenizer, weight[ids[0]], k=1)
    assert single[0][0][0] == tokenizer.convert_ids_to_tokens(ids[0])
    with pytest.raises(ValueError, match="metric"):
        nearest_tokens(model, tokenizer, weight[ids], metric="dot")
    with pytest.raises(ValueError, match="k must be an int >= 1 and <= 49152, got 49153"):
        nearest_tokens(model, tokenizer, weight[ids], k=49153)
    with pytest.raises(TypeError, match="k must be an int"):
        nearest_tokens(model, tokenizer, weight[ids], k=2.5)
    with pytest.raises(ValueError, match=r"\(n, 576\)"):
        nearest_tokens(model, tokenizer, np.zeros((2, 3)))


def test_display_token_matches_tokenizer_decode(lm):
    _, tokenizer = lm
    assert display_token("Ġthe") == " the"
    assert display_token("Ċ") == "\n"
    assert display_token("ĠĠ") == "  "
    assert display_token("Ã©") == "é"
    assert display_token("<|im_end|>") == "<|im_end|>"
    assert display_token("▁word") == " word"
    # every vocabulary entry that is a whole UTF-8 string decodes as the tokenizer does
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    checked = 0
    for tid, tok in enumerate(vocab):
        text = tokenizer.decode([tid])
        if "\ufffd" in text:
            continue  # part of a multi-byte character: both show a replacement mark
        assert display_token(tok) == text, (tid, tok)
        checked += 1
    assert checked > 0.95 * len(vocab)
    with pytest.raises(TypeError, match="tok must be a string"):
        display_token(17)


def test_encode_prompt_and_response(lm):
    _, tokenizer = lm
    prompt_ids = encode_prompt(tokenizer, "Hi")
    # one user turn in SmolLM2's chat template, generation prompt appended
    text = tokenizer.decode(prompt_ids)
    assert "<|im_start|>user\nHi<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    response_ids = encode_response(tokenizer, " Hello there")
    assert tokenizer.convert_ids_to_tokens(response_ids) == ["ĠHello", "Ġthere"]


def test_check_texts_and_pad_id(lm):
    _, tokenizer = lm
    assert check_texts("prompts", ("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="single string"):
        check_texts("prompts", "ab")
    with pytest.raises(TypeError, match=r"entries \[1\] are not"):
        check_texts("prompts", ["a", None])
    assert pad_id(tokenizer) == tokenizer.pad_token_id
