"""Tests of sde_utils.extraction.pairs: filters, sampling, argument checks, splits.

Fixtures are small JSON-lines files written to ``tmp_path``; nothing else is read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sde_utils.extraction.pairs import (
    approx_token_count,
    assign_splits,
    is_mostly_english,
    load_pairs,
)

FRENCH = (
    "La capitale de la France est Paris, et elle est célèbre pour ses musées et son "
    "histoire. Les touristes visitent la ville pour sa culture."
)
CHINESE = "你好，世界。这是一个测试，我们在检查语言过滤器是否有效。"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# --- filters, sampling, arguments --------------------------------------------------------------


def length_fixture(tmp_path) -> Path:
    responses = ["one", "one two", "one two three", "a b c d", "a b c d e", "a b c d e f"]
    rows = [{"prompt": f"Question {i} for you", "response": r} for i, r in enumerate(responses)]
    return write_jsonl(tmp_path / "lengths.jsonl", rows)


def test_response_token_range_with_a_tokenizer(tmp_path, caplog):
    path = length_fixture(tmp_path)
    calls = []

    def count(text):  # a stand-in tokenizer: whitespace words
        calls.append(text)
        return len(text.split())

    with caplog.at_level(logging.INFO, logger="sde_utils.extraction.pairs"):
        ds = load_pairs(
            f"jsonl:{path}", min_response_tokens=3, max_response_tokens=5, count_tokens=count
        )
    assert ds["response"] == ["one two three", "a b c d", "a b c d e"]
    assert len(calls) == 6  # the response, once per pair
    assert "removed 0 empty, 0 not mostly English, 2 with fewer than 3" in caplog.text
    assert "1 with more than 5 response tokens; kept 3" in caplog.text


def test_nothing_left_after_filters_says_what_each_removed(tmp_path):
    path = length_fixture(tmp_path)
    with pytest.raises(ValueError, match="no pair left.*3 with fewer than 3.*3 with more than 4"):
        load_pairs(
            f"jsonl:{path}",
            min_response_tokens=3,
            max_response_tokens=4,
            n_pairs=None,
            count_tokens=lambda s: 2 if len(s) < 8 else 9,
        )


def test_more_pairs_requested_than_pass(tmp_path):
    path = length_fixture(tmp_path)
    with pytest.raises(ValueError, match="n_pairs=5 requested but only 3 pass"):
        load_pairs(f"jsonl:{path}", n_pairs=5, min_response_tokens=3, max_response_tokens=5)


def test_sampling_is_seeded_and_in_source_order(tmp_path):
    path = length_fixture(tmp_path)
    picks = {s: load_pairs(f"jsonl:{path}", n_pairs=3, seed=s)["pair_id"] for s in range(6)}
    for s, ids in picks.items():
        assert ids == load_pairs(f"jsonl:{path}", n_pairs=3, seed=s)["pair_id"]
        assert ids == sorted(ids, key=lambda p: int(p.split(":")[1]))
    assert len({tuple(v) for v in picks.values()}) > 1  # seeds change the sample


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"source": "wikipedia"}, ValueError, r"valid sources: \['sharegpt', 'helpsteer', 'jsonl"),
        ({"source": "jsonl"}, ValueError, "needs a path"),
        ({"source": "jsonl:a.jsonl", "data_path": "b.jsonl"}, ValueError, "give the jsonl path"),
        ({"source": 3}, TypeError, "source must be a string"),
        ({"n_pairs": 0}, ValueError, "n_pairs must be an int >= 1, got 0"),
        ({"n_pairs": 2.5}, TypeError, "n_pairs must be an int >= 1, got 2.5"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"english_only": 1}, TypeError, "english_only must be True or False"),
        ({"min_response_tokens": 5, "max_response_tokens": 4}, ValueError, "max_response_tok"),
        ({"count_tokens": 3}, TypeError, "count_tokens must be callable"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_pairs(**kwargs)


def test_approx_token_count():
    assert approx_token_count("Hello, world!") == 4  # Hello , world !
    assert approx_token_count("don't stop") == 4  # don ' t stop
    assert approx_token_count("  ") == 0


@pytest.mark.parametrize(
    ("text", "english"),
    [
        ("The capital of France is Paris, and it is known for its museums.", True),
        ("def f(x):\n    return x + 1  # add one to the input", True),
        ("```\nkubectl get pods --all-namespaces | grep -v Running\n```", True),
        ("12345 + 678 = 13023", True),  # no letters: nothing foreign
        ("See https://example.com/es/la/de/les/el for the details of this.", True),
        (FRENCH, False),
        ("El juego que has solicitado está diseñado para un navegador web.", False),
        ("Die Entstehung von Kugelblitzen ist ein noch nicht verstandenes Phänomen.", False),
        (CHINESE, False),
        ("Насколько Вы были довольны общим содержанием мастер-класса?", False),
    ],
)
def test_is_mostly_english(text, english):
    assert is_mostly_english(text) is english


# --- splits ------------------------------------------------------------------------------------


def test_assign_splits_by_conversation():
    rng = np.random.default_rng(0)
    convs = [f"c{int(i)}" for i in rng.integers(0, 200, size=1000)]
    splits = assign_splits(convs, val_frac=0.1, test_frac=0.2, seed=5)
    assert len(splits) == len(convs)
    split_of: dict[str, str] = {}
    for c, s in zip(convs, splits, strict=True):
        assert split_of.setdefault(c, s) == s  # never one conversation in two splits
    n = len(split_of)
    counts = pd.Series(split_of).value_counts()
    assert counts["test"] == round(0.2 * n) and counts["val"] == round(0.1 * n)
    assert counts["train"] == n - round(0.2 * n) - round(0.1 * n)
    # deterministic, independent of the order of the input, changed by the seed
    assert assign_splits(convs, val_frac=0.1, test_frac=0.2, seed=5) == splits
    order = rng.permutation(len(convs))
    shuffled = assign_splits([convs[i] for i in order], val_frac=0.1, test_frac=0.2, seed=5)
    assert shuffled == [splits[i] for i in order]
    assert assign_splits(convs, val_frac=0.1, test_frac=0.2, seed=6) != splits


def test_assign_splits_zero_fractions_and_errors():
    assert assign_splits(["a", "b", "a"], val_frac=0, test_frac=0) == ["train"] * 3
    with pytest.raises(ValueError, match=r"splits \['val', 'test'\] would be empty: 3 conv"):
        assign_splits(["a", "b", "c"], val_frac=0.1, test_frac=0.1)
    with pytest.raises(ValueError, match=r"splits \['train'\] would be empty"):
        assign_splits(["a", "b"], val_frac=0.5, test_frac=0.4)
    with pytest.raises(ValueError, match="val_frac \\+ test_frac must be < 1"):
        assign_splits(["a"], val_frac=0.5, test_frac=0.5)
    with pytest.raises(ValueError, match=r"test_frac must lie in \[0, 1\), got -0.1"):
        assign_splits(["a"], test_frac=-0.1)
    with pytest.raises(ValueError, match="no conversation ids"):
        assign_splits([])
    with pytest.raises(TypeError, match="val_frac must be a number in the unit interval"):
        assign_splits(["a"], val_frac="0.1")
