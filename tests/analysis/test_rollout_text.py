"""Rollouts read back as text: nearest-token decoding, ranks, distinct-n and the LLM's
log-probabilities against closed forms and direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.analysis import rollout_text as rt
from sde_utils.models.baselines import LinearSDE
from sde_utils.models.features import FeatureMap


def _table(v=50, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(v, d))


@pytest.mark.parametrize("metric", rt.METRICS)
def test_rows_plus_small_noise_decode_to_themselves(metric):
    weight = _table()
    ids = np.random.default_rng(1).integers(0, len(weight), 200)
    rng = np.random.default_rng(2)
    # rows of a Gaussian table are O(1) apart; noise 1e-3 cannot move a row past another
    near = weight[ids] + 1e-3 * rng.normal(size=(len(ids), weight.shape[1]))
    np.testing.assert_array_equal(rt.decode_ids(weight, near, metric=metric, chunk=7), ids)
    # control: noise 10x the rows' own scale decodes mostly to other rows
    far = weight[ids] + 10.0 * rng.normal(size=(len(ids), weight.shape[1]))
    assert (rt.decode_ids(weight, far, metric=metric) == ids).mean() < 0.5


def test_cosine_and_euclidean_differ_where_norms_differ():
    weight = np.array([[1.0, 0.0], [3.0, 3.0]])
    x = np.array([[1.0, 0.9]])
    # cosine: 1/|x| = 0.74 for row 0 against 1.9/(|x| sqrt 2) = 0.999 for row 1
    assert rt.decode_ids(weight, x, metric="cosine").tolist() == [1]
    # L2: 0.9 to row 0 against sqrt(4 + 4.41) to row 1
    assert rt.decode_ids(weight, x, metric="euclidean").tolist() == [0]


def test_token_ranks_against_a_direct_sort():
    weight = _table(30, 5, seed=3)
    vectors = np.random.default_rng(4).normal(size=(6, 5))
    targets = np.array([0, 5, 9, 12, 29, 3])
    ranks = rt.token_ranks(weight, vectors, targets, metric="euclidean")
    for v, t, r in zip(vectors, targets, ranks, strict=True):
        order = np.argsort(((weight - v) ** 2).sum(1))  # nearest first
        assert r == int(np.flatnonzero(order == t)[0]) + 1
    # a row's own vector ranks it first
    assert rt.token_ranks(weight, weight[:4], np.arange(4)).tolist() == [1, 1, 1, 1]
    # a word's rank is that of its best row: label rows 0 and 7 as one word
    word_of = np.arange(30)
    word_of[7] = 0
    r0 = rt.token_ranks(weight, weight[7:8], [0])[0]
    assert r0 > 1 and rt.token_ranks(weight, weight[7:8], [0], word_of=word_of)[0] == 1


def test_distinct_n_on_hand_made_sequences():
    assert rt.distinct_n([1, 2, 1, 2], 1) == 0.5
    assert rt.distinct_n([1, 2, 1, 2], 2) == pytest.approx(2 / 3)  # (1,2), (2,1), (1,2)
    assert rt.distinct_n([1, 2, 3], 1) == rt.distinct_n([1, 2, 3], 2) == 1.0
    assert rt.distinct_n([4, 4, 4, 4], 2) == pytest.approx(1 / 3)
    assert np.isnan(rt.distinct_n([5], 2))


@pytest.fixture(scope="module")
def tiny_llm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def test_cached_logprobs_equal_a_full_forward(tiny_llm):
    context = [3, 7, 1, 9, 2]
    cont = np.array([[4, 5, 6, 7], [10, 11, 3, 3], [0, 39, 20, 1]])
    got = rt.continuation_logprobs(tiny_llm, context, cont, rows_per_pass=2)  # 2 passes
    for row, lp in zip(cont, got, strict=True):
        ids = torch.tensor([context + row.tolist()])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_llm(input_ids=ids).logits[0].double(), -1)
        direct = [float(logp[len(context) - 1 + j, tok]) for j, tok in enumerate(row)]
        # cached and uncached runs differ only in float32 reduction order (~1e-6 on O(1))
        np.testing.assert_allclose(lp, direct, atol=1e-5)
    whole = rt.continuation_logprobs(tiny_llm, context, cont, rows_per_pass=8)  # one pass
    np.testing.assert_allclose(whole, got, atol=1e-6)  # batching changes only rounding
    # control: another context changes the numbers
    other = rt.continuation_logprobs(tiny_llm, [8, 8, 8, 8, 8], cont)
    assert np.abs(other - got).max() > 1e-3
    one = rt.continuation_logprobs(tiny_llm, context, cont[:, :1])  # H = 1: no second pass
    np.testing.assert_allclose(one[:, 0], got[:, 0], atol=1e-6)


def test_sources_round_trip_and_a_still_model():
    weight = _table(20, 6, seed=5)
    feats = FeatureMap(pca_dim=None, standardize=False).fit(weight)  # exact inverse
    ids = [np.array([3, 4, 5, 6, 7]), np.array([9, 9, 1, 2])]
    trajs = [feats.transform(weight[i]) for i in ids]
    still = LinearSDE(6).double()
    still.sigma_diag.zero_()  # no drift, no noise: the path stays at the first state
    out = rt.rollout_sources({"still": still}, feats, weight, trajs, ids, horizon=3, n_paths=2)
    np.testing.assert_array_equal(out[rt.REAL][:, 0], [[4, 5, 6], [9, 1, 2]])
    np.testing.assert_array_equal(out[rt.ROUNDTRIP], out[rt.REAL])  # exact inverse
    np.testing.assert_array_equal(out["still"], [[[3] * 3] * 2, [[9] * 3] * 2])
    assert sorted(out[rt.SHUFFLED][0, 0]) == [4, 5, 6]
    with pytest.raises(ValueError, match="longer than horizon"):
        rt.rollout_sources({}, feats, weight, trajs, ids, horizon=4)


def test_summary_means_and_paired_differences():
    rows = []
    for seq in range(6):
        for source, base in (("real", 1.0), ("model", 0.0)):
            for path in range(2 if source == "model" else 1):
                v = base + seq + path  # model's paths average to seq + 0.5
                rows.append(
                    dict(source=source, seq=seq, path=path, group=seq // 2, logprob=v,
                         distinct_1=1.0, distinct_2=1.0, accuracy=float(source == "real"))
                )  # fmt: skip
    summary = rt.rollout_summary(pd.DataFrame(rows), n_boot=200).set_index(["source", "score"])
    real, model = summary.loc[("real", "logprob")], summary.loc[("model", "logprob")]
    assert real["estimate"] == pytest.approx(3.5) and model["estimate"] == pytest.approx(3.0)
    # every response's difference is -0.5 exactly, so every replicate is too
    assert model["diff"] == model["diff_low"] == model["diff_high"] == pytest.approx(-0.5)
    assert real["low"] < real["estimate"] < real["high"] and real["n_groups"] == 3
    assert summary.loc[("model", "accuracy"), "diff"] == -1.0
    table = rt.summary_table(summary.reset_index())
    assert list(table.index) == ["real", "model"] and list(table.columns) == list(rt.SCORES)
