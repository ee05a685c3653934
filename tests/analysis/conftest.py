"""Fakes shared by the analysis tests: an in-memory trajectory store, a tokenizer and an
LLM whose embeddings are given."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.extraction.store import TrajectoryStore

FAKE_VOCAB = ["What", "Ġis", "Ġthe", "Ġcapital", "Ġof", "ĠFrance", "?", "The", "ĠParis", ".", "Ġa"]


class FakeTokenizer:
    """Whitespace words, ``Ġ`` before every word but the first, '?' and '.' split off."""

    def __init__(self, vocab):
        self.vocab = list(vocab)
        self.ids = {t: i for i, t in enumerate(self.vocab)}

    def __call__(self, text, add_special_tokens=False):
        toks = []
        for k, word in enumerate(text.split()):
            tail = word[-1] if word[-1] in "?." else None
            word = word.rstrip("?.")
            toks.append(("Ġ" if k else "") + word)
            if tail:
                toks.append(tail)
        return {"input_ids": [self.ids[t] for t in toks]}

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]


class FakeLLM:
    def __init__(self, weight):
        self.embedding = torch.nn.Embedding.from_pretrained(torch.as_tensor(weight))

    def get_input_embeddings(self):
        return self.embedding


@pytest.fixture
def fake_vocab() -> list[str]:
    """Raw BPE tokens of the App. B question and answer (``Ġ``: a leading space)."""
    return list(FAKE_VOCAB)


@pytest.fixture
def fake_llm():
    """``fake_llm(weight (V, D))``: an LLM whose input embeddings are ``weight``."""
    return FakeLLM


@pytest.fixture
def fake_tokenizer():
    """``fake_tokenizer(vocab)``: whitespace words over ``vocab`` (see :class:`FakeTokenizer`)."""
    return FakeTokenizer


def _make_store(lengths, dim=3, seed=0, **columns) -> TrajectoryStore:
    """In-memory store: random float32 states; ``entropy[j] = 100 * row + j`` and
    ``logprob[j] = -(1000 * row + j)`` so every aligned value names its (row, step)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    emb = rng.standard_normal((int(lengths.sum()), dim)).astype(np.float32)
    n = len(lengths)
    seqs = pd.DataFrame(
        {
            "seq_id": np.arange(n),
            "conv_id": [f"c{i}" for i in range(n)],
            "split": ["train"] * n,
            "offset": np.cumsum(lengths) - lengths,
            "length": lengths,
            "entropy": [list(100.0 * i + np.arange(L)) for i, L in enumerate(lengths)],
            "logprob": [list(-(1000.0 * i + np.arange(L))) for i, L in enumerate(lengths)],
        }
    )
    for key, value in columns.items():
        seqs[key] = value
    return TrajectoryStore(Path("mem-store"), {"content_hash": f"mem{seed}"}, emb, seqs)


@pytest.fixture
def make_store():
    """``make_store(lengths, dim=3, seed=0, **columns)``: see :func:`_make_store`."""
    return _make_store
