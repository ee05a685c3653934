"""Notebook 07's records under figures 1-6, on inputs whose numbers are known by hand.

Closed forms: a zero-drift linear SDE's drift path stays at its start; a linear drift's
one-step prediction is ``x + (A x + b) dt``; the variance split of ``log sigma`` into rows
and columns of a rank-one (additive) table is exact; an attention matrix with known rows
gives known received means.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from sde_utils.analysis import paper_findings as pf
from sde_utils.analysis.paper_figures import DriftField, drift_diffusion_along, drift_field
from sde_utils.captions import PAPER_FIGURES
from sde_utils.models.baselines import LinearSDE
from sde_utils.models.features import FeatureMap
from sde_utils.models.train import History

EXACT = 1e-12  # float64 arithmetic on O(1) numbers: only rounding separates the two sides


def linear_model(d: int, seed: int = 0, drift: bool = True) -> LinearSDE:
    g = torch.Generator().manual_seed(seed)
    model = LinearSDE(d).double()
    if drift:
        model.A.copy_(-0.3 * torch.eye(d, dtype=torch.float64))
        model.b.copy_(torch.randn(d, generator=g, dtype=torch.float64))
    model.sigma_diag.copy_(torch.linspace(0.5, 2.0, d, dtype=torch.float64))
    return model


def test_held_out_sample_is_a_seeded_subset_in_store_order(make_store):
    store = make_store([3, 4, 5, 6], dim=3, token_ids=[list(range(L)) for L in (3, 4, 5, 6)])
    features = FeatureMap(pca_dim=None, standardize=False).fit(np.asarray(store.embeddings))
    states, ids, groups = pf.held_out_sample(store, features, n=2, seed=1)
    order = sorted(np.random.default_rng(1).permutation(4)[:2])
    assert [len(s) for s in states] == [3 + i for i in order]
    for s, i in zip(states, order, strict=True):
        np.testing.assert_allclose(s, features.transform(store.trajectory(int(i))), atol=EXACT)
    assert [list(x) for x in ids] == [list(range(3 + i)) for i in order]
    assert list(groups) == [f"c{i}" for i in order]  # the conversations of those responses
    assert len(pf.held_out_sample(store, features, n=10, seed=0)[0]) == 4  # capped at the store


def test_predicted_paths_of_a_zero_drift_model_stay_at_the_start():
    example = np.random.default_rng(2).normal(size=(5, 3))
    path, paths = pf.predicted_paths(
        linear_model(3, drift=False), example, horizon=10, n_samples=4, dt=0.5, seed=0
    )
    assert path.shape == (5, 3) and paths.shape == (5, 4, 3)  # min(horizon, L - 1) = 4 steps
    np.testing.assert_allclose(path, np.tile(example[0], (5, 1)), atol=EXACT)
    np.testing.assert_allclose(paths[0], np.tile(example[0], (4, 1)), atol=EXACT)
    _, again = pf.predicted_paths(
        linear_model(3, drift=False), example, horizon=10, n_samples=4, dt=0.5, seed=0
    )
    np.testing.assert_array_equal(paths, again)  # the seed fixes the noise


def test_pc_pair_fields_and_field_and_magnitudes():
    model = linear_model(5)
    train = np.random.default_rng(3).normal(size=(50, 5))
    fields = pf.pc_pair_fields(model, train, n=4, t=0.0)
    assert [f.dims for f in fields] == [(0, 1), (2, 3)]  # (4, 5) does not exist in 5 dims
    assert all(f.u.shape == (4, 4) for f in fields)
    example = train[:6]
    field, mags = pf.field_and_magnitudes(
        model, train, example, [train[:7], train[7:10]], n=5, t=0.0, rows=1, max_len=4, dt=1.0
    )
    assert field.dims == (0, 1) and field.u.shape == (5, 5)
    assert mags.shape == (1, 4)  # first held-out response only, cut at max_len
    # a linear SDE's sigma does not depend on the state: every cell is the RMS of sigma_diag
    rms = float(np.sqrt((model.sigma_diag.numpy() ** 2).mean()))
    np.testing.assert_allclose(mags, rms, atol=EXACT)


def test_one_step_decoded_predicts_and_decodes(fake_llm, fake_vocab):
    weight = np.random.default_rng(4).normal(size=(len(fake_vocab), 3))
    features = FeatureMap(pca_dim=None, standardize=False).fit(weight)  # exact inverse
    model = linear_model(3)
    states = features.transform(weight[[0, 3, 5]])
    predicted, ids = pf.one_step_decoded(model, fake_llm(weight), features, states, dt=1.0)
    A, b = model.A.numpy(), model.b.numpy()
    np.testing.assert_allclose(predicted, states[:-1] + states[:-1] @ A.T + b, atol=EXACT)
    back = features.inverse_transform(predicted)  # decoded in model space, by cosine
    norms = np.outer(np.linalg.norm(back, axis=1), np.linalg.norm(weight, axis=1))
    np.testing.assert_array_equal(ids, (back @ weight.T / norms).argmax(axis=1))


def test_figure1_record_counts_rises():
    h = History(
        train_total=[3.0, 2.0, 1.5, 1.2],
        val_total=[3.0, 2.5, 2.6, 2.0],
        val_diffusion=[1.0, 0.9, 0.95, 0.8],
        best_epoch=4,
        stopped_reason="completed: 4 epochs",
    )
    rec = pf.figure1_record(h)
    assert rec["number"] == 1 and rec["caption"] == PAPER_FIGURES["fig1-losses"].caption
    n = rec["numbers"]
    assert n["val_rises"] == 1 and n["best_val_total"] == 2.0 and n["epochs"] == 4
    assert "rose in 1 of 3 epochs" in rec["finding"] and "not monotone" in rec["finding"]


def test_figure2_record_on_data_the_drift_generated():
    model = linear_model(2)
    x0 = np.random.default_rng(5).normal(size=(6, 2))
    A, b = model.A.numpy(), model.b.numpy()
    held_out = []
    for start in x0:  # the noise-free Euler path itself: the drift path is exact
        path = [start]
        for _ in range(5):
            path.append(path[-1] + path[-1] @ A.T + b)
        held_out.append(np.array(path))
    agreement, rec = pf.figure2_record(model, held_out, horizon=8, dt=1.0)
    assert len(agreement) == 6 and rec["numbers"]["horizon"] == 5  # capped at L - 1
    np.testing.assert_allclose(agreement["rmse_drift"], 0.0, atol=1e-12)
    assert rec["numbers"]["skill_step1"] == pytest.approx(1.0)
    assert rec["numbers"]["beats_stay_every_step"] is True
    assert "keeps 100% of its skill" in rec["finding"]
    # an exact drift path: every replicate's skill is 1 too, so the interval is [1, 1]
    iv = rec["numbers"]["intervals"]["skill_step1"]
    assert iv["low"] == pytest.approx(1.0) and iv["high"] == pytest.approx(1.0)
    assert "skill at step 1 100% [100%, 100%]" in rec["finding"]


def test_figure3_record_counts_closer_steps_and_hits(fake_llm, fake_vocab):
    weight = np.eye(len(fake_vocab))[:, :4] + 0.01  # rows 0..3 distinct directions
    features = FeatureMap(pca_dim=None, standardize=False).fit(weight)
    model = linear_model(4, drift=False)  # prediction = current state
    held_out = [features.transform(weight[[0, 1, 2]]), features.transform(weight[[2, 2]])]
    held_ids = [np.array([0, 1, 2]), np.array([2, 2])]
    rec = pf.figure3_record(
        model, fake_llm(weight), features, held_out, held_ids, np.array([1, 1]), [1, 2], dt=1.0
    )
    n = rec["numbers"]
    assert n["n_steps"] == 3
    assert n["closer_than_current"] == 0.0  # the prediction *is* the current state
    assert n["decoded_is_next_token"] == pytest.approx(1 / 3)  # only the 2 -> 2 step
    assert n["roundtrip_is_next_token"] == 1.0  # the identity map keeps every token
    assert (n["example_decoded_hits"], n["example_steps"]) == (1, 2)
    iv = n["intervals"]
    assert iv["decoded_is_next_token"]["estimate"] == pytest.approx(1 / 3)
    assert iv["roundtrip_is_next_token"]["low"] == iv["roundtrip_is_next_token"]["high"] == 1.0
    assert iv["closer_than_current"]["high"] == 0.0  # never closer, in any resample


def test_figure4_record_pull_to_the_mean_and_sigma_by_position():
    model = linear_model(2)
    model.b.zero_()  # mu = -0.3 x: always toward the mean
    held_out = [np.random.default_rng(6).normal(size=(4, 2)) + 3.0]
    field = drift_field(model, np.zeros(2), (-1.0, 1.0, -1.0, 1.0), n=5)
    mags = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 2.0, np.nan, np.nan, np.nan, np.nan]])
    rec = pf.figure4_record(model, held_out, field, mags, dt=1.0)
    n = rec["numbers"]
    assert n["toward_mean_share"] == 1.0 and n["toward_mean_cos"] == pytest.approx(1.0)
    assert n["grid_speed_max_on_edge"] is True  # |mu| grows with |x|: largest at a corner
    assert (n["sigma_min"], n["sigma_max"]) == (1.0, 6.0)
    assert n["sigma_position_spearman"] == pytest.approx(1.0)  # sigma rises with position
    assert n["sigma_first5_mean"] == pytest.approx(np.mean([1, 2, 3, 4, 5, 1, 2]))
    assert n["sigma_rest_mean"] == 6.0
    # one response: no conversation to resample, so the intervals say why there is none
    iv = n["intervals"]["toward_mean_share"]
    assert iv["estimate"] == 1.0 and np.isnan(iv["low"]) and "groups" in iv["reason"]


def test_figure5_record_splits_log_sigma_variance():
    rows, cols = np.log([1.0, 2.0, 4.0]), np.log([1.0, 10.0])
    sigma = np.exp(rows[:, None] + cols[None, :])  # additive in logs: the split is exact
    fields = [
        DriftField((0, 1), np.zeros(2), np.zeros(2), np.ones((2, 2)), np.zeros((2, 2)), 0.0),
        DriftField((2, 3), np.zeros(2), np.zeros(2), 2 * np.ones((2, 2)), np.zeros((2, 2)), 0.0),
    ]
    rec = pf.figure5_record(fields, sigma, ["a", "Ġb", "c"])
    n = rec["numbers"]
    total = rows.var() + cols.var()
    assert n["log_sigma_share_between_pcs"] == pytest.approx(cols.var() / total)
    assert n["log_sigma_share_between_tokens"] == pytest.approx(rows.var() / total)
    assert n["mean_speed_by_pair"] == {"PC1-PC2": 1.0, "PC3-PC4": 2.0}
    assert n["strongest_pair"] == "PC3-PC4"
    assert (n["most_uncertain_token"], n["least_uncertain_token"]) == ("c", "a")
    assert n["token_sigma_ratio"] == pytest.approx(4.0)


def test_figure6_record_received_attention():
    attention = np.array([[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.5, 0.3, 0.2]])
    norms = np.array([3.0, 2.0, 1.0])
    rec = pf.figure6_record(["ĠThe", "Ġcat", "."], attention, norms, "block 1, head 0")
    n = rec["numbers"]
    # received: column sums over the queries that see the key, (2.1/3, 0.7/2, 0.2/1)
    assert n["norm_attention_spearman"] == pytest.approx(1.0)  # same order as the norms
    assert n["top_norm_tokens"] == [" The", " cat", "."]
    assert n["attention_to_first_token"] == pytest.approx(0.55)
    assert n["attention_to_self"] == pytest.approx(1.6 / 3)
    assert "block 1, head 0" in rec["finding"]


def test_attention_inputs_norms_and_label(monkeypatch, fake_llm, fake_vocab):
    weight = np.arange(len(fake_vocab) * 2, dtype=np.float64).reshape(-1, 2)

    class Tok:
        def convert_tokens_to_ids(self, tokens):
            return [fake_vocab.index(t) for t in tokens]

    def fake_maps(llm, tokenizer, prompt, response, layer, head):
        assert (prompt, response, layer, head) == ("q", "The capital", 3, None)
        return ["The", "Ġcapital"], np.eye(2)

    monkeypatch.setattr(pf, "attention_maps", fake_maps)
    row = pd.Series({"tokens": ["The", "Ġcapital"], "prompt": "q", "response": "The capital"})
    tokens, attention, norms, label = pf.attention_inputs(
        fake_llm(weight), Tok(), row, layer=3, head=None
    )
    assert tokens == ["The", "Ġcapital"] and label == "block 3, mean of heads"
    np.testing.assert_allclose(norms, np.linalg.norm(weight[[7, 3]], axis=1), atol=EXACT)


def test_findings_table_one_row_per_figure():
    records = {"fig1-losses": {"finding": "It fell."}}
    table = pf.findings_table(records)
    assert (
        list(table.index) == ["fig1-losses"] and table.loc["fig1-losses", "finding"] == "It fell."
    )
    assert table.loc["fig1-losses", "caption"].endswith("…")


def test_drift_diffusion_along_is_float64():
    mu, sigma = drift_diffusion_along(linear_model(2).float(), np.zeros((3, 2)))
    assert mu.dtype == sigma.dtype == np.float64
