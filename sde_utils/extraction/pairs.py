"""Prompt/response pairs for the trajectory store, and conversation-level splits.

:func:`load_pairs` returns a :class:`datasets.Dataset` with one row per pair and the
columns ``pair_id`` (unique), ``conv_id`` (the conversation the pair comes from),
``prompt`` and ``response`` (+ the HelpSteer annotations ``helpfulness, correctness,
coherence, complexity, verbosity`` for that source). The sources (``"sharegpt"``,
``"helpsteer"``, ``"jsonl:<path>"``) and how each is read are described in
:mod:`sde_utils.extraction.sources`.

Filters, in this order, each counted and logged: empty prompt or response (whitespace
only); not mostly English (:func:`is_mostly_english`, on prompt and response); response
length outside ``[min_response_tokens, max_response_tokens]`` tokens (``count_tokens``, or
the approximation :func:`approx_token_count`). Sampling is deterministic: the pairs are
visited in the order of a permutation drawn from ``numpy.random.default_rng(seed)`` and the
first ``n_pairs`` that pass every filter are kept (so the sample for ``n_pairs`` is a
prefix of the sample for a larger ``n_pairs``); the result is returned in source order.

:func:`assign_splits` assigns ``"train" / "val" / "test"`` by conversation, never by token.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import datasets
import numpy as np

from sde_utils.checks import check_bool, check_fraction, check_int, check_seed
from sde_utils.extraction.sources import parse_source, source_columns

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

# --- text heuristics ---------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"[^\W\d_]+")
_URL_RE = re.compile(r"\S+://\S*|www\.\S+")
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")
_ASCII_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Frequent English function words that are not also frequent words of the languages below.
_ENGLISH_WORDS = frozenset(
    "the and of to that it for with this are be by not or have from but can you your which "
    "if they their has what there would we about these when how been its our she his them "
    "than then should could into each other some such may here my".split()
)
# Frequent function words of Spanish, French, German, Portuguese, Italian, Dutch, Swedish
# that are rare in English text.
_FOREIGN_WORDS = frozenset(
    "el la los las que y en un una es por para con del se lo como más pero "
    "le les des du et est une pour dans pas qui sur au avec ce il je vous nous "
    "der und ist nicht ein eine mit sich auf für ich das dem den zu von "
    "os um não em "
    "di che è gli della sono "
    "het een van niet dat zijn "
    "och att det som är på för med jag inte".split()
)
ENGLISH_WINDOW = 1000  # characters of each text that the English heuristic looks at
MIN_ASCII_LETTER_FRACTION = 0.9


def approx_token_count(text: str) -> int:
    """Approximate token count: words (``\\w+`` runs) plus punctuation marks.

    Used when no tokenizer is given. It is deterministic and usually within a factor of
    about 1.3 of a BPE tokenizer's count on English prose (BPE splits rare words further).
    """
    return len(_TOKEN_RE.findall(text))


def is_mostly_english(text: str) -> bool:
    """A simple deterministic "mostly English" test on the first 1,000 characters.

    True when the text has no letters at all (numbers, symbols: nothing foreign), or when
    (1) at least 90% of its letters are ASCII (rules out other scripts: CJK, Cyrillic,
    Hangul, ...) and (2) outside URLs, words from a list of frequent English function
    words are at least as many as words from a list of frequent Spanish, French, German,
    Portuguese, Italian, Dutch and Swedish function words (rules out Latin-script
    languages). Code and tables with a few English words pass.
    """
    window = text[:ENGLISH_WINDOW]
    ascii_bytes = window.encode("ascii", "ignore")
    n_ascii_letters = len(ascii_bytes) - len(ascii_bytes.translate(None, _ASCII_LETTERS))
    n_other_letters = sum(c.isalpha() for c in _NON_ASCII_RE.findall(window))
    n_letters = n_ascii_letters + n_other_letters
    if n_letters == 0:
        return True
    if n_ascii_letters < MIN_ASCII_LETTER_FRACTION * n_letters:
        return False
    words = _WORD_RE.findall(_URL_RE.sub(" ", window).lower())
    n_english = sum(w in _ENGLISH_WORDS for w in words)
    n_foreign = sum(w in _FOREIGN_WORDS for w in words)
    return n_english >= n_foreign


def _rejection(
    prompt: str,
    response: str,
    english_only: bool,
    count: Callable[[str], int],
    min_tokens: int,
    max_tokens: int | None,
) -> str | None:
    """The first filter a pair fails (a key of the removal counts), or None if it passes."""
    if not prompt.strip() or not response.strip():
        return "empty"
    if english_only and not (is_mostly_english(prompt) and is_mostly_english(response)):
        return "not_english"
    if min_tokens > 0 or max_tokens is not None:  # count only when a bound can reject
        n_tokens = count(response)
        if n_tokens < min_tokens:
            return "too_short"
        if max_tokens is not None and n_tokens > max_tokens:
            return "too_long"
    return None


def load_pairs(
    source: str = "sharegpt",
    *,
    n_pairs: int | None = None,
    seed: int = 0,
    data_path: str | os.PathLike | None = None,
    min_response_tokens: int = 1,
    max_response_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
    english_only: bool = True,
) -> datasets.Dataset:
    """Prompt/response pairs from ``source`` (see the module docstring), filtered and sampled.

    Returns a Dataset with columns ``pair_id, conv_id, prompt, response`` (strings; plus
    integer ``helpfulness, correctness, coherence, complexity, verbosity`` for helpsteer),
    in source order. ``n_pairs``: how many to keep (None: all that pass the filters; more
    than pass is an error). ``count_tokens``: a tokenizer's length function, e.g.
    ``lambda s: len(tok(s, add_special_tokens=False).input_ids)``; default
    :func:`approx_token_count`. Token bounds are inclusive.
    """
    kind, path = parse_source(source, data_path)
    if n_pairs is not None:
        check_int("n_pairs", n_pairs, minimum=1)
    check_seed(seed)
    check_int("min_response_tokens", min_response_tokens, minimum=0)
    if max_response_tokens is not None:
        check_int("max_response_tokens", max_response_tokens, minimum=max(min_response_tokens, 1))
    if count_tokens is not None and not callable(count_tokens):
        raise TypeError(f"count_tokens must be callable or None, got {count_tokens!r}")
    check_bool("english_only", english_only)
    count = count_tokens or approx_token_count

    cols = source_columns(kind, path)
    n_total = len(cols["pair_id"])
    if n_total == 0:
        raise ValueError(f"source {source!r} holds no prompt/response pair")

    order = np.random.default_rng(seed).permutation(n_total) if n_pairs else range(n_total)
    removed = {"empty": 0, "not_english": 0, "too_short": 0, "too_long": 0}
    kept: list[int] = []
    examined = 0
    for i in order:
        examined += 1
        why = _rejection(
            cols["prompt"][i],
            cols["response"][i],
            english_only,
            count,
            min_response_tokens,
            max_response_tokens,
        )
        if why is not None:
            removed[why] += 1
            continue
        kept.append(int(i))
        if n_pairs is not None and len(kept) == n_pairs:
            break
    summary = (
        f"{source}: examined {examined} of {n_total} pairs; removed {removed['empty']} empty, "
        f"{removed['not_english']} not mostly English, {removed['too_short']} with fewer than "
        f"{min_response_tokens} response tokens, {removed['too_long']} with more than "
        f"{max_response_tokens} response tokens; kept {len(kept)}"
    )
    logger.info(summary)
    if not kept:
        raise ValueError(f"no pair left after the filters ({summary})")
    if n_pairs is not None and len(kept) < n_pairs:
        raise ValueError(f"n_pairs={n_pairs} requested but only {len(kept)} pass ({summary})")
    kept.sort()
    return datasets.Dataset.from_dict({k: [v[i] for i in kept] for k, v in cols.items()})


def assign_splits(
    conv_ids: Iterable[Any],
    *,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
) -> list[str]:
    """One of ``"train" / "val" / "test"`` per element of ``conv_ids``, by conversation.

    The distinct conversation ids (as strings, sorted, so the input order does not matter)
    are permuted by ``numpy.random.default_rng(seed)``; the first ``round(test_frac * n)``
    go to test, the next ``round(val_frac * n)`` to val, the rest to train. Every pair of a
    conversation gets the same split. A split with a nonzero fraction (and train) that ends
    up empty is an error.
    """
    ids = [str(c) for c in conv_ids]
    for name, frac in (("val_frac", val_frac), ("test_frac", test_frac)):
        check_fraction(name, frac, open_low=False)  # in [0, 1)
    if val_frac + test_frac >= 1:
        raise ValueError(f"val_frac + test_frac must be < 1, got {val_frac} + {test_frac}")
    check_seed(seed)
    unique = sorted(set(ids))
    n = len(unique)
    if n == 0:
        raise ValueError("assign_splits got no conversation ids")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_frac * n))
    n_val = int(round(val_frac * n))
    sizes = {"train": n - n_test - n_val, "val": n_val, "test": n_test}
    fracs = {"train": 1 - val_frac - test_frac, "val": val_frac, "test": test_frac}
    empty = [s for s in SPLITS if fracs[s] > 0 and sizes[s] <= 0]
    if empty:
        raise ValueError(
            f"splits {empty} would be empty: {n} conversations with val_frac={val_frac}, "
            f"test_frac={test_frac} give {sizes} conversations; use more conversations or "
            f"set those fractions to 0"
        )
    split_of: dict[str, str] = {}
    for rank, j in enumerate(perm):
        split_of[unique[j]] = (
            "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        )
    return [split_of[c] for c in ids]


def pick_prompts(sequences, n_prompts: int, seed: int) -> list[dict[str, Any]]:
    """Notebook 02's prompts: ``n_prompts`` distinct prompts of a store's ``sequences``
    (a DataFrame), drawn by ``default_rng(seed)`` and kept in store order, as dicts with
    ``pair_id``, ``conv_id``, ``prompt`` and ``split``."""
    rows = sequences.drop_duplicates("prompt").reset_index(drop=True)
    if n_prompts > len(rows):
        raise ValueError(f"n_prompts={n_prompts} but the store holds only {len(rows)} prompts")
    picked = rows.iloc[np.sort(np.random.default_rng(seed).permutation(len(rows))[:n_prompts])]
    return picked[["pair_id", "conv_id", "prompt", "split"]].to_dict("records")


__all__ = [
    "SPLITS",
    "approx_token_count",
    "is_mostly_english",
    "load_pairs",
    "assign_splits",
    "pick_prompts",
]
