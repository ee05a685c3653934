"""Tests for sde_utils.analysis.complexity on hand-made texts with counted answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sde_utils.analysis.complexity import response_complexity, text_complexity


def test_text_complexity_hand_made():
    simple = text_complexity("The cat sat. The dog ran fast.")
    # 2 sentences of 3 and 4 words, no commas/conjunctions; 6 distinct of 7 words.
    assert simple == {
        "n_sentences": 2,
        "n_words": 7,
        "mean_sentence_length": 3.5,
        "mean_clauses": 1.0,
        "type_token_ratio": 6 / 7,
    }
    hard = text_complexity("I stayed home because it rained, and I read a book; then I slept.")
    # 14 words, 1 comma + 1 semicolon + "because" -> 4 clauses; "i" thrice -> 12 distinct.
    assert hard["n_sentences"] == 1 and hard["n_words"] == 14
    assert hard["mean_clauses"] == 4.0 and hard["type_token_ratio"] == 12 / 14
    assert hard["mean_sentence_length"] > simple["mean_sentence_length"]


def test_text_complexity_lists_apostrophes_and_empty():
    text = "Steps:\n1. Open it, if needed!\n2. Don't close it.\n\n"
    res = text_complexity(text)
    # Sentences: "Steps:", "Open it, if needed!", "Don't close it." (the bare list numbers
    # carry no letter and are dropped); "Don't" is one word.
    assert res["n_sentences"] == 3 and res["n_words"] == 1 + 4 + 3
    assert res["mean_clauses"] == pytest.approx((1 + 3 + 1) / 3)  # comma + "if" in one
    assert text_complexity(text) == res  # deterministic
    empty = text_complexity("  \n ... ")
    assert empty["n_words"] == 0 and math.isnan(empty["mean_sentence_length"])
    with pytest.raises(TypeError, match="str"):
        text_complexity(None)


def test_response_complexity_uses_the_text_proxy_and_the_annotation():
    seqs = pd.DataFrame(
        {"response": ["One two three. Four five.", "If it rains, we stay; else we go."]},
        index=[4, 7],
    )
    seqs["complexity"] = [1, 3]
    out = response_complexity(seqs)
    assert out.index.tolist() == [4, 7]
    assert out["mean_sentence_length"].tolist() == [2.5, 8.0]
    assert out["mean_clauses"].tolist() == [1.0, 4.0]  # 1 + comma + semicolon + "if"
    assert out["complexity"].tolist() == [1, 3]
    with pytest.raises(KeyError, match="no 'text' column"):
        response_complexity(seqs, "text")
