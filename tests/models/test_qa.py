"""Question -> answer transitions (paper App. B): closed forms on a store whose embeddings
are known, the shuffled control, the oversampling share and a fine-tune that learns them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.extraction.store import TrajectoryStore
from sde_utils.models import qa
from sde_utils.models.features import FeatureMap
from sde_utils.models.neural import NeuralSDE

VOCAB = ["a", "Ġb", "Ġc", "?", "Ġd", "e", "Ġf", "!"]
EXACT = 1e-12  # float64 means of O(1) numbers: only rounding separates the two sides


class Tokenizer:
    """Whitespace words, each its own token (with or without ``Ġ``: whichever is in VOCAB)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [VOCAB.index(w if w in VOCAB else "Ġ" + w) for w in text.split()]}

    def convert_ids_to_tokens(self, ids):
        return [VOCAB[i] for i in ids]


def _store(weight, prompts, firsts, length=3):
    """Responses whose first state is row ``firsts[i]`` of ``weight`` (then random rows)."""
    rng = np.random.default_rng(0)
    n = len(prompts)
    states = []
    for f in firsts:
        states += [weight[f]] + [weight[j] for j in rng.integers(0, len(weight), length - 1)]
    seqs = pd.DataFrame(
        {
            "seq_id": np.arange(n),
            "conv_id": [f"c{i}" for i in range(n)],
            "split": ["train"] * n,
            "offset": np.arange(n) * length,
            "length": [length] * n,
            "prompt": prompts,
        }
    )
    return TrajectoryStore(Path("mem"), {"content_hash": "m"}, np.asarray(states), seqs)


def test_question_state_is_the_mean_of_word_rows():
    weight = np.random.default_rng(1).normal(size=(len(VOCAB), 4))
    got = qa.question_state(weight, Tokenizer(), "a b ? c")
    np.testing.assert_allclose(got, weight[[0, 1, 2]].mean(0), atol=EXACT)  # "?" dropped
    with_punct = qa.question_state(weight, Tokenizer(), "a b ? c", words_only=False)
    assert np.abs(with_punct - got).max() > 0.01  # control: "?" counts when asked to
    with pytest.raises(ValueError, match="no word token"):
        qa.question_state(weight, Tokenizer(), "? !")


def test_qa_transitions_closed_form_and_shuffled_control():
    weight = np.random.default_rng(2).normal(size=(len(VOCAB), 4))
    store = _store(weight, ["a b", "c d", "e f", "? !"], firsts=[5, 6, 7, 0])
    fmap = FeatureMap(pca_dim=None, standardize=False).fit(weight)  # exact inverse
    (z0, t0, z1), rows = qa.qa_transitions(store, "train", weight, Tokenizer(), fmap, dt=0.5)
    assert rows.tolist() == [0, 1, 2]  # "? !" has no word: skipped
    np.testing.assert_allclose(t0.numpy(), [-0.5] * 3)  # one step before the first token
    q = np.stack([weight[[0, 1]].mean(0), weight[[2, 4]].mean(0), weight[[5, 6]].mean(0)])
    np.testing.assert_allclose(z0.numpy(), fmap.transform(q), atol=EXACT)
    np.testing.assert_allclose(z1.numpy(), fmap.transform(weight[[5, 6, 7]]), atol=EXACT)
    (s0, _, s1), _ = qa.qa_transitions(
        store, "train", weight, Tokenizer(), fmap, dt=0.5, shuffle_seed=3
    )
    np.testing.assert_allclose(s0.numpy(), z0.numpy())  # same questions
    # the same answers, none with its own question
    own = [np.flatnonzero(np.all(np.isclose(z1.numpy(), a), axis=1))[0] for a in s1.numpy()]
    assert sorted(own) == [0, 1, 2] and all(o != i for i, o in enumerate(own))


def test_augment_reaches_the_share():
    base = tuple(torch.zeros(90, *s) for s in ((2,), (), (2,)))
    extra = tuple(torch.ones(2, *s) for s in ((2,), (), (2,)))
    out = qa.augment(base, extra, 0.1)
    # repeat = ceil(0.1 * 90 / (0.9 * 2)) = 5: 10 of 100 rows
    assert out[0].shape == (100, 2) and out[1].shape == (100,)
    assert float(out[0][:, 0].sum()) == 10.0
    assert qa.augment(base, extra, 0.001)[0].shape[0] == 92  # every question at least once


def test_fine_tune_learns_the_question_step_and_leaves_the_base():
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=(200, 2)) * 0.3
    train = tuple(
        torch.as_tensor(v, dtype=torch.float32)
        for v in (x0, np.arange(200) % 5, x0 + 0.01 * rng.normal(size=(200, 2)))
    )
    q = torch.tensor([[2.0, 2.0]])
    qa_rows = (q, torch.tensor([-1.0]), q + torch.tensor([[1.5, 0.0]]))
    base = NeuralSDE(2, hidden=16, depth=2)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    kw = dict(dt=1.0, share=0.3, epochs=150, patience=None, lr=1e-2, progress=False)
    model, history = qa.fine_tune_qa(base, train, train, qa_rows, qa_rows, **kw)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    with torch.no_grad():
        learnt = model.drift(q, torch.tensor([-1.0]))[0]
        untrained = base.drift(q, torch.tensor([-1.0]))[0]
    # the question's step is (1.5, 0); a fit to within 0.3 of it against a start ~0 away
    assert torch.linalg.norm(learnt - torch.tensor([1.5, 0.0])) < 0.3
    assert torch.linalg.norm(untrained - torch.tensor([1.5, 0.0])) > 1.0  # control
    assert history.n_epochs >= 1


def test_subsample_keeps_order_and_size():
    rows = tuple(torch.arange(10.0).reshape(10, *s) for s in ((1,), ()))
    out = qa.subsample(rows, 4, seed=0)
    assert out[0].shape == (4, 1) and torch.equal(out[0][:, 0], out[1])  # rows stay paired
    assert bool((out[1].diff() > 0).all())  # in their original order
    assert qa.subsample(rows, 10, seed=0) is rows and qa.subsample(rows, None, seed=0) is rows
    assert not torch.equal(qa.subsample(rows, 4, seed=1)[1], out[1])  # another seed, other rows
