"""Paper App. B (figure 7) on a fake LLM whose embeddings are known: closed forms for the
averaged question state and the decoded tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_utils.analysis.app_b import (
    AnswerProcess,
    answer_overlap,
    answer_process,
    answer_table,
    figure7_record,
    heldout_first_answer,
    is_word,
    rank_table,
)
from sde_utils.models.baselines import LinearSDE
from sde_utils.models.features import FeatureMap

EXACT = 1e-12  # float64 arithmetic on O(1) numbers: only rounding separates the two sides


def test_answer_process_closed_form(fake_llm, fake_tokenizer, fake_vocab):
    D = 16
    weight = np.random.default_rng(5).normal(size=(len(fake_vocab), D))
    llm, tok = fake_llm(weight), fake_tokenizer(fake_vocab)
    features = FeatureMap(pca_dim=None, standardize=False).fit(weight)  # exact inverse
    sde = LinearSDE(D).double()  # zero drift: the drift path stays at Q_init
    proc = answer_process(llm, tok, features, sde, n_steps=6, n_samples=2, top_k=2, seed=3)
    assert proc.question_tokens == ["What", "Ġis", "Ġthe", "Ġcapital", "Ġof", "ĠFrance"]  # no "?"
    assert proc.answer_tokens == ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis", "ĠParis"]  # no "."
    q_init = weight[:6].mean(axis=0)
    np.testing.assert_allclose(proc.z_init, features.transform(q_init[None])[0], atol=EXACT)
    assert proc.drift.shape == (7, D) and proc.samples.shape == (7, 2, D)
    np.testing.assert_allclose(proc.drift, np.tile(proc.z_init, (7, 1)), atol=EXACT)
    assert len(proc.decoded_drift) == 7 and len(proc.decoded_samples) == 2
    # Q_init decodes to its nearest rows by cosine
    cos = weight @ q_init / (np.linalg.norm(weight, axis=1) * np.linalg.norm(q_init))
    assert [t for t, _ in proc.decoded_drift[0]] == [fake_vocab[i] for i in np.argsort(-cos)[:2]]

    stats = answer_overlap(proc)
    # the exact inverse keeps every answer token its own nearest neighbour (cosine 1)
    assert stats["roundtrip_hits"] == stats["n_answer_tokens"] == 6
    assert stats["answer_words"] == ["capital", "france", "is", "of", "paris", "the"]
    nearest = {fake_vocab[i].lstrip("Ġ").lower() for i in np.argsort(-cos)[:2]}
    expected = ["the", "capital", "of", "france", "is", "paris"]
    assert stats["step_hits"] == [s for s in range(1, 7) if expected[s - 1] in nearest]
    assert stats["drift_overlap"] == pytest.approx(len(nearest & set(expected)) / 6)
    with_words = FeatureMap(pca_dim=None, standardize=False).fit(weight[:, :8])
    with pytest.raises(ValueError, match="input'-kind store"):
        answer_process(llm, tok, with_words, sde)


def test_answer_overlap_counts():
    z = np.zeros((3, 2))
    proc = AnswerProcess(
        question="q",
        answer="a",
        question_tokens=["Ġis"],
        answer_tokens=["The", "ĠParis"],
        z_question=z[:1],
        z_init=np.array([1.0, 0.0]),
        z_answer=np.array([[1.0, 0.0], [0.0, 1.0]]),
        drift=np.array([[1.0, 0.0], [2.0, 0.0], [0.0, -3.0]]),
        samples=np.zeros((3, 1, 2)),
        decoded_drift=[[("x", 1.0)], [("Ġthe", 0.9), ("Ġis", 0.8)], [("ĠRome", 0.7)]],
        decoded_samples=[[[("x", 1.0)], [("Paris", 0.5)], [("y", 0.1)]]],
        decoded_roundtrip=[[("The", 1.0)], [("ĠLondon", 0.9)]],
        top_k=2,
        dt=1.0,
        seed=0,
    )
    stats = answer_overlap(proc)
    assert stats["step_hits"] == [1]  # "the" at step 1, not "paris" at step 2
    assert stats["drift_overlap"] == 0.5 and stats["sample_overlap"] == 0.5
    assert stats["roundtrip_hits"] == 1
    assert stats["question_word_share"] == pytest.approx(1 / 3)  # "is" of {the, is, rome}
    assert stats["cos_to_answer_drift"] == pytest.approx([1.0, -1.0])
    assert stats["cos_to_answer_init"] == pytest.approx([1.0, 0.0])


def test_is_word():
    assert is_word(" Paris") and is_word("42") and not is_word(" ?") and not is_word("  ")


def _two_step_process(decoded_drift) -> AnswerProcess:
    return AnswerProcess(
        question="q",
        answer="a",
        question_tokens=["Ġis"],
        answer_tokens=["The", "ĠParis"],
        z_question=np.zeros((1, 2)),
        z_init=np.array([1.0, 0.0]),
        z_answer=np.array([[1.0, 0.0], [0.0, 1.0]]),
        drift=np.zeros((3, 2)),
        samples=np.zeros((3, 1, 2)),
        decoded_drift=decoded_drift,
        decoded_samples=[[[("x", 1.0)], [("y", 0.5)], [("z", 0.1)]]],
        decoded_roundtrip=[[("The", 1.0)], [("ĠParis", 0.9)]],
        top_k=2,
        dt=1.0,
        seed=0,
    )


def test_answer_table_expected_against_decoded():
    proc = _two_step_process([[("x", 1.0)], [("Ġthe", 0.9), ("Ġa", 0.8)], [("ĠRome", 0.7)]])
    table = answer_table(proc, 6)
    assert list(table.index) == ["A_1", "A_2"]  # as many steps as answer tokens
    assert list(table["expected"]) == ["The", " Paris"]
    assert list(table["drift path"]) == [" the |  a", " Rome"]


def test_figure7_record_says_no_and_yes_from_the_numbers():
    missed = figure7_record(_two_step_process([[("x", 1.0)], [("Ġthe", 0.9)], [("ĠRome", 0.7)]]))
    assert missed["number"] == 7 and missed["finding"].startswith("No:")
    assert "2-dimensional PCA" in missed["finding"]  # the state dimension of z_init
    assert missed["numbers"]["n_step_hits"] == 1 and missed["numbers"]["decoded_q_init"] == ["x"]
    hit = figure7_record(_two_step_process([[("x", 1.0)], [("The", 0.9)], [("ĠParis", 0.7)]]))
    assert (
        hit["finding"] == "Yes: every step decodes to the expected answer token within the top 2."
    )
    none = figure7_record(None)
    assert none["numbers"] == {} and none["finding"].startswith("Not drawn")


def test_expected_word_ranks_closed_form(fake_llm, fake_tokenizer, fake_vocab):
    D = 16
    weight = np.random.default_rng(5).normal(size=(len(fake_vocab), D))
    llm, tok = fake_llm(weight), fake_tokenizer(fake_vocab)
    features = FeatureMap(pca_dim=None, standardize=False).fit(weight)  # exact inverse
    sde = LinearSDE(D).double()
    sde.sigma_diag.zero_()  # no drift, no noise: every state is Q_init
    proc = answer_process(llm, tok, features, sde, n_steps=6, n_samples=2, t0=-1.0)
    q_init = weight[:6].mean(axis=0)
    cos = weight @ q_init / (np.linalg.norm(weight, axis=1) * np.linalg.norm(q_init))
    answer_ids = [7, 3, 4, 5, 1, 8]  # The capital of France is Paris
    # "The" (id 7) and "Ġthe" (id 2) are one word: the better of the two counts
    expected = []
    for a in answer_ids:
        best = max(cos[j] for j in (7, 2)) if a in (7, 2) else cos[a]
        expected.append(int((cos > best).sum()) + 1)
    assert proc.rank_drift.tolist() == expected and proc.t0 == -1.0
    np.testing.assert_array_equal(proc.rank_samples, [expected, expected])  # sigma = 0
    assert proc.rank_roundtrip.tolist() == [1] * 6  # exact inverse: cosine 1 with itself
    table = rank_table({"still": proc, "again": proc})
    assert list(table.index) == [f"A_{s}" for s in range(1, 7)]
    assert table["still: rank"].tolist() == expected == table["again: rank"].tolist()
    record = figure7_record(proc, {"again": proc})
    assert record["numbers"]["controls"]["again"]["rank_drift"] == expected
    assert f"this model {expected}" in record["finding"]


def test_heldout_first_answer_ranks_and_paired_differences(fake_llm, fake_vocab):
    D = 6
    weight = np.random.default_rng(6).normal(size=(len(fake_vocab), D))
    features = FeatureMap(pca_dim=None, standardize=False).fit(weight)
    still = LinearSDE(D).double()
    targets = np.array([1, 2, 3, 4])
    # each question sits on another row (states are centred: through the feature map)
    z0 = torch.as_tensor(features.transform(weight[[5, 6, 7, 8]]))
    z1 = torch.as_tensor(features.transform(weight[targets]))
    word_of = np.arange(len(fake_vocab))
    table = heldout_first_answer(
        {"still": still, "same": still},
        (z0, torch.full((4,), -1.0, dtype=torch.float64), z1),
        np.array(["a", "a", "b", "c"]),
        targets,
        features,
        weight,
        word_of,
        dt=1.0,
        n_boot=50,
        reference="still",
        fixed={"on target 1": features.transform(weight[[1]])[0]},
    ).set_index(["model", "score"])
    # a still model stays on row 5..8, so the target's rank is its cosine rank there
    cos = (weight[[5, 6, 7, 8]] / np.linalg.norm(weight[[5, 6, 7, 8]], axis=1)[:, None]) @ (
        weight / np.linalg.norm(weight, axis=1)[:, None]
    ).T
    ranks = [int((c > c[t]).sum()) + 1 for c, t in zip(cos, targets, strict=True)]
    assert min(ranks) > 1  # control: the question's own row, not the answer, ranks first
    est = table.loc[("still", "log10_rank"), "estimate"]
    assert est == pytest.approx(np.mean(np.log10(ranks)))
    assert table.loc[("round trip", "log10_rank"), "estimate"] == 0.0  # exact inverse
    assert table.loc[("same", "log10_rank"), "diff"] == 0.0  # same model, same numbers
    assert table.loc[("round trip", "log10_rank"), "diff"] == pytest.approx(-est)
    # a fixed guess is scored for every question: exactly right for the first (rank 1),
    # and for the others the cosine rank of their target seen from row 1
    c1 = cos_from(weight, 1)
    fixed_ranks = [1] + [int((c1 > c1[t]).sum()) + 1 for t in targets[1:]]
    assert table.loc[("on target 1", "log10_rank"), "estimate"] == pytest.approx(
        np.mean(np.log10(fixed_ranks))
    )


def cos_from(weight, row):
    """Cosine similarity of every row of ``weight`` to row ``row``."""
    unit = weight / np.linalg.norm(weight, axis=1)[:, None]
    return unit @ unit[row]
