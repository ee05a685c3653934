"""Text-complexity proxies (notebook 08's "more complex text is predicted worse" claim):
sentence length, clauses per sentence and type-token ratio of a text, and per response.
Deterministic, no model involved.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sde_utils.checks import check_str

#: Subordinating conjunctions counted as clause openers by :func:`text_complexity`
#: (unambiguous ones only: "as", "that", "so" are left out because they are often not
#: conjunctions).
SUBORDINATORS = frozenset(
    "after although because before if once since though unless until when whenever where "
    "whereas wherever whether while".split()
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")


def text_complexity(text: str) -> dict:
    """Simple, deterministic complexity proxies of a text.

    * Sentences: the text split after ``.``, ``!`` or ``?`` followed by whitespace, and at
      every line break (list items and paragraphs end a sentence); pieces without a letter
      (list numbers such as "1.", symbols) are dropped. Abbreviations ("e.g. x") split too.
    * Words: runs of letters/digits/underscore, with inner apostrophes kept ("don't").
    * ``mean_sentence_length``: mean number of words per sentence.
    * ``mean_clauses``: mean over sentences of ``1 + commas + semicolons + subordinating
      conjunctions`` (the words in :data:`SUBORDINATORS`, case-insensitive).
    * ``type_token_ratio``: distinct lower-cased words / words (falls with text length:
      compare texts of similar length).

    Returns ``{"n_sentences", "n_words", "mean_sentence_length", "mean_clauses",
    "type_token_ratio"}``; the means are NaN for a text without words.
    """
    check_str("text", text, nonempty=False)
    lengths, clauses, words = [], [], []
    for piece in _SENTENCE_SPLIT.split(text):
        ws = [w.lower() for w in _WORD.findall(piece)]
        if not any(c.isalpha() for w in ws for c in w):
            continue  # no letters: a list number ("1."), a stray symbol or nothing
        lengths.append(len(ws))
        subs = sum(w in SUBORDINATORS for w in ws)
        clauses.append(1 + piece.count(",") + piece.count(";") + subs)
        words.extend(ws)
    nan = float("nan")
    return {
        "n_sentences": len(lengths),
        "n_words": len(words),
        "mean_sentence_length": float(np.mean(lengths)) if lengths else nan,
        "mean_clauses": float(np.mean(clauses)) if clauses else nan,
        "type_token_ratio": len(set(words)) / len(words) if words else nan,
    }


def response_complexity(sequences: pd.DataFrame, text_column: str = "response") -> pd.DataFrame:
    """Complexity proxies of each sequence's text (:func:`text_complexity`).

    One row per row of ``sequences`` (same index): ``mean_sentence_length``,
    ``mean_clauses``, ``n_words``; plus ``complexity`` (HelpSteer's annotation) when
    ``sequences`` has that column.
    """
    if text_column not in sequences:
        raise KeyError(f"sequences has no {text_column!r} column; columns: {list(sequences)}")
    rows = [text_complexity(str(text)) for text in sequences[text_column]]
    out = pd.DataFrame(rows, index=sequences.index)[
        ["mean_sentence_length", "mean_clauses", "n_words"]
    ]
    if "complexity" in sequences:
        out["complexity"] = pd.to_numeric(sequences["complexity"], errors="coerce")
    return out


__all__ = ["SUBORDINATORS", "response_complexity", "text_complexity"]
